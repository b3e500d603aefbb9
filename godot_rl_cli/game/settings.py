"""GameSettings: how to launch and talk to a game, one field per fact, with its flag and its YAML key.

The SB3 trainer (and the controller-tab scripts) read these from flags, the RLlib trainer from the YAML's
`env_config` (same names), and every game layer takes a GameSettings. Game i of several runs on
`port + i` with seed `seed + i`, and only game 0 shows its window.
"""

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional

from godot_rl_cli.cli_types import add_flag, int_in_range, key_value, positive_float

DEFAULT_PORT = 11008  # godot-rl's GodotEnv.DEFAULT_PORT, where the editor's plugin connects
DEFAULT_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class GameSettings:
    env_path: Optional[str] = None
    port: int = DEFAULT_PORT
    seed: int = 0
    show_window: bool = False
    speedup: Optional[int] = None
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
        """From an RLlib `env_config` (keys are the field names; missing or null keys keep their defaults)."""
        values = {name: env_config[name] for name in FIELD_NAMES if env_config.get(name) is not None}
        values["game_args"] = dict(values.get("game_args") or {})
        for name in ("port", "seed", "max_env_restarts"):
            if name in values:
                values[name] = int(values[name])
        if "show_window" in values:
            values["show_window"] = bool(values["show_window"])
        return cls(**values)

    def for_game(self, index: int) -> "GameSettings":
        """The settings of game `index` of several side by side."""
        return dataclasses.replace(
            self, port=self.port + index, seed=self.seed + index, show_window=self.show_window and index == 0
        )


FIELD_NAMES = tuple(item.name for item in dataclasses.fields(GameSettings))


def add_game_arguments(parser: argparse.ArgumentParser, *, restarts: bool = True) -> argparse._ArgumentGroup:
    """The game flags, in both spellings (`--env_path` and `--env-path`, ...), as the trainers and tabs take
    them."""
    game = parser.add_argument_group("game")

    def flag(name: str, **kwargs: Any) -> None:
        add_flag(game, name, **kwargs)

    flag("env_path", default=None, help="exported game (.x86_64); omit to use the Godot editor (press Play)")
    flag("speedup", type=int_in_range(1, 100), default=1, help="physics speed multiplier passed to the game")
    flag("port", type=int_in_range(1024, 65535), default=DEFAULT_PORT, help="base TCP port on 127.0.0.1")
    flag(
        "action_repeat",
        type=int_in_range(1),
        default=None,
        help="physics frames per action (game default if omitted)",
    )
    flag(
        "framerate",
        type=int_in_range(1),
        default=None,
        help="pass --fixed-fps N so a real Godot game runs as fast as it can",
    )
    flag(
        "connect_timeout",
        type=positive_float,
        default=DEFAULT_TIMEOUT_S,
        help="seconds to wait for the game to connect",
    )
    flag(
        "step_timeout",
        type=positive_float,
        default=DEFAULT_TIMEOUT_S,
        help="seconds of silence after which a game counts as hung",
    )
    if restarts:
        flag(
            "max_env_restarts",
            type=int_in_range(0),
            default=0,
            help="relaunch a crashed or hung game up to N times and keep training",
        )
    game.add_argument(
        "--game_arg",
        "--game-arg",
        dest="game_args",
        type=key_value,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra --KEY=VALUE argument for the game (repeatable)",
    )
    return game
