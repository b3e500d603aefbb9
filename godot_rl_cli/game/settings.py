"""GameSettings: how to launch and talk to a game, one field per fact, with its flag and its YAML key.

The SB3 trainer (and the controller-tab scripts) read these from flags, the RLlib trainer from the YAML's
`env_config` (same names), and every game layer takes a GameSettings. Game i of several runs on
`port + i` with seed `seed + i`, and only game 0 shows its window.
"""

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional

from godot_rl_cli.cli_types import add_flag, int_in_range, key_value, positive_float, seed_value
from godot_rl_cli.errors import UserError
from godot_rl_cli.path_types import no_special_file

DEFAULT_PORT = 11008  # godot-rl's GodotEnv.DEFAULT_PORT, where the editor's plugin connects
DEFAULT_TIMEOUT_S = 60.0
PORT_MAX = 65535


@dataclass(frozen=True)
class GameSettings:
    env_path: Optional[str] = None
    port: int = DEFAULT_PORT
    seed: int = 0
    show_window: bool = False
    speedup: int = 1  # the plugin's own default, and what the controller's scripts pass
    action_repeat: Optional[int] = None
    framerate: Optional[int] = None
    connect_timeout: float = DEFAULT_TIMEOUT_S
    step_timeout: float = DEFAULT_TIMEOUT_S
    game_args: Dict[str, Any] = field(default_factory=dict)
    max_env_restarts: int = 0

    @classmethod
    def from_args(cls, args: argparse.Namespace, **overrides: Any) -> "GameSettings":
        """From flags added by `add_game_arguments` (and the script's own --seed)."""
        values = {name: getattr(args, name) for name in FIELD_NAMES if hasattr(args, name)}
        values["game_args"] = dict(values.get("game_args") or [])
        return cls(**{**values, **overrides})

    @classmethod
    def from_env_config(cls, env_config: Mapping[str, Any]) -> "GameSettings":
        """From an RLlib `env_config` (keys are the field names; missing or null keys keep their defaults;
        other keys are game arguments). A value of the wrong type or out of its flag's range is a UserError
        naming the key."""
        values = {name: env_config[name] for name in FIELD_NAMES if env_config.get(name) is not None}
        for name, value in values.items():
            values[name] = _checked_value(name, value)
        extra = {key: value for key, value in env_config.items() if key not in FIELD_NAMES}
        values["game_args"] = {**extra, **(values.get("game_args") or {})}
        return cls(**values)

    def for_game(self, index: int) -> "GameSettings":
        """The settings of game `index` of several side by side."""
        return dataclasses.replace(
            self, port=self.port + index, seed=self.seed + index, show_window=self.show_window and index == 0
        )


FIELD_NAMES = tuple(item.name for item in dataclasses.fields(GameSettings))
DEFAULTS = GameSettings()  # each setting's one default, which the flags show too

# The value of each numeric setting, as its flag and its env_config key take it.
VALUE_TYPES: Dict[str, Callable[[str], Any]] = {
    "port": int_in_range(1024, PORT_MAX),
    "seed": seed_value,
    "speedup": int_in_range(1, 100),
    "action_repeat": int_in_range(1),
    "framerate": int_in_range(1),
    "connect_timeout": positive_float,
    "step_timeout": positive_float,
    "max_env_restarts": int_in_range(0),
}


def _checked_value(name: str, value: Any) -> Any:
    """An env_config value checked as its flag checks it; UserError if it does not fit."""
    how = "fix env_config in the YAML file (see rllib_config.yaml)"
    if name in VALUE_TYPES:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                return VALUE_TYPES[name](str(value))
            except (ValueError, argparse.ArgumentTypeError) as error:
                raise UserError(f"env_config {name} {value!r} is not valid ({error})", how) from None
        raise UserError(f"env_config {name} must be a number, not {value!r}", how)
    expected = {"env_path": str, "show_window": bool, "game_args": dict}[name]
    if not isinstance(value, expected):
        kind = {str: "a path", bool: "true or false", dict: "a mapping of --key=value arguments"}[expected]
        raise UserError(f"env_config {name} must be {kind}, not {value!r}", how)
    return value


# The game flags with a value type (VALUE_TYPES): their help (their default is GameSettings').
GAME_FLAGS: Dict[str, str] = {
    "speedup": "physics speed multiplier passed to the game",
    "port": "base TCP port on 127.0.0.1",
    "action_repeat": "physics frames per action (game default if omitted)",
    "framerate": "pass --fixed-fps N so a real Godot game runs as fast as it can",
    "connect_timeout": "seconds to wait for the game to connect",
    "step_timeout": "seconds of silence after which a game counts as hung",
    "max_env_restarts": "relaunch a crashed or hung game up to N times and keep training",
}


ENV_PATH_HOW = "pass the exported game, e.g. --env_path=./MyGame.x86_64"


def add_game_arguments(
    parser: argparse.ArgumentParser,
    *,
    restarts: bool = True,
    env_path_type: Optional[Callable[[str], str]] = None,
) -> argparse._ArgumentGroup:
    """The game flags, in both spellings (`--env_path` and `--env-path`, ...), as the trainers and tabs take
    them. --env_path takes `env_path_type` (the trainers: process.game_file), else only what would block or
    loop is refused with the flags (the playback scripts report the rest as an event of their own)."""

    game = parser.add_argument_group("game")

    add_flag(
        game,
        "env_path",
        type=env_path_type or no_special_file("env_path", ENV_PATH_HOW),
        default=None,
        help="exported game (.x86_64); omit to use the Godot editor (press Play)",
    )
    for name, text in GAME_FLAGS.items():
        if name != "max_env_restarts" or restarts:
            add_flag(game, name, type=VALUE_TYPES[name], default=getattr(DEFAULTS, name), help=text)
    add_game_arg_flag(game, "extra --KEY=VALUE argument for the game (repeatable)")
    return game


def add_game_arg_flag(parser: Any, help: str, dest: str = "game_args") -> None:
    """The repeatable `--game_arg KEY=VALUE` flag (also `--game-arg`): an extra argument for the games."""
    add_flag(
        parser,
        "game_arg",
        dest=dest,
        type=key_value,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=help,
    )
