"""The command-line flags shared by simulator.py and the interface scripts, and what they mean.

Every flag the controller passes is accepted in both forms (`--step-delay=0.0500` and `--step-delay 0`),
multi-word flags also with underscores as the trainers spell them (`--env_path`, `--action_repeat`).
No ML imports here: `--help` and a bad flag answer at once. The game flags are GameSettings'.
"""

import argparse
import dataclasses
import textwrap
from pathlib import Path
from typing import Any, Dict, Optional

from godot_rl_cli.algorithms import SB3_ALGORITHMS
from godot_rl_cli.cli_types import (
    HelpFormatter,
    add_flag,
    non_negative_float,
    seed_value,
)
from godot_rl_cli.errors import UserError
from godot_rl_cli.game.settings import GameSettings, add_game_arguments
from godot_rl_cli.play.lines import ACTION_LINES_PER_S

MODES = ("single", "multi", "auto")

PLAYBACK_EPILOG = f"""\
modes: 'single' treats the game's agents as one vectorised env (rows agent_0, agent_1, ...); 'multi' names
agents by their index in the game ("0", "1", ...) next to the policy name the game gives each; 'auto' picks
multi when the game reports more than one policy name.

output: one line per event and per step on stdout, '@<TAB>_EVENT {{json}}' and '@<TAB>_ACTION {{json}}'.
At most {ACTION_LINES_PER_S} action lines are written a second: when steps come faster, the steps in between
are skipped (each line says how many, 'skipped_steps'), but a step where an episode ends is always
written and events are never dropped. Game output and diagnostics go to stderr.

stopping: Ctrl+C (SIGINT) or SIGTERM closes the game and exits 0 within a second.
exit codes: 0 finished, or stopped by a signal; 1 a bad model or path, or a failure with
--no-auto-restart; 2 a bad command line."""


def mode_name(text: str) -> str:
    return text.strip().lower()


def add_playback_arguments(parser: argparse.ArgumentParser) -> None:
    """The game and playback flags every playback script takes (multi-word ones in both spellings)."""
    game = add_game_arguments(parser, restarts=False)
    add_flag(game, "show-window", action="store_true", help="show the game's window")
    add_flag(
        game,
        "headless",
        action="store_true",
        help="hide the game's window (the default; wins over --show-window)",
    )
    add_flag(
        game,
        "seed",
        type=seed_value,
        default=0,
        help="seed of the game (--env_seed) and of sampled actions, 0 to 2**32-1",
    )

    run = parser.add_argument_group("playback")
    add_flag(
        run,
        "mode",
        type=mode_name,
        choices=MODES,
        default="auto",
        help="how agents are named and grouped (see below)",
    )
    add_flag(run, "step-delay", type=non_negative_float, default=0.0, help="seconds to wait after each step")
    add_flag(
        run,
        "restart-delay",
        type=non_negative_float,
        default=2.0,
        help="seconds to wait before restarting after the game crashed, hung or failed",
    )
    add_flag(
        run,
        "max-steps",
        type=int,
        default=0,
        help="end an episode after this many steps (the game is reset); 0 or less: no limit",
    )
    add_flag(
        run, "max-episodes", type=int, default=0, help="exit after this many episodes; 0 or less: no limit"
    )
    add_flag(
        run,
        "no-auto-restart",
        dest="auto_restart",
        action="store_false",
        help="exit with code 1 on the first failure instead of restarting",
    )
    add_flag(
        run,
        "log-tracebacks",
        action="store_true",
        help="add the Python traceback to error events (and print it on stderr)",
    )


def model_path(text: str) -> Path:
    """The agent path; the controller passes it untrimmed, so one that exists only trimmed is trimmed."""
    path = Path(text).expanduser()
    return path if path.exists() or not text.strip() else Path(text.strip()).expanduser()


def trimmed_or_none(text: str) -> Optional[str]:
    """The controller passes --policy and --algo untrimmed; blank means not given."""
    return text.strip() or None


def require_agent_path(path: Path, how: str) -> Path:
    """The agent path, checked before any framework is imported (so a typo is reported at once)."""
    if not path.exists():
        raise UserError(f"agent path {path} does not exist", how)
    return path


def sb3_algorithm(text: str) -> Optional[str]:
    """--algo in any case, trimmed; blank means read it from the model."""
    name = text.strip().lower()
    if name and name not in SB3_ALGORITHMS:
        raise argparse.ArgumentTypeError(
            f"invalid choice {text!r} (choose from {', '.join(SB3_ALGORITHMS)}, any case)"
        )
    return name or None


def add_interface_arguments(parser: argparse.ArgumentParser, path_help: str) -> None:
    """The flags both interface scripts take besides the playback ones."""
    parser.add_argument("agent_path", type=model_path, help=path_help)
    parser.add_argument(
        "--stochastic",
        action="store_true",
        help="sample actions from the policy's distribution (default: deterministic, the action the game's "
        "ONNX runner would take); not for ONNX files",
    )


def interface_settings(args: argparse.Namespace, agent_type: str, **fields: Any) -> Dict[str, Any]:
    """The interface's `settings` event fields."""
    return {
        **settings_of(args),
        "agent_type": agent_type,
        "agent_path": str(args.agent_path.absolute()),
        "deterministic": not args.stochastic,
        **fields,
    }


class PlaybackHelpFormatter(HelpFormatter, argparse.RawDescriptionHelpFormatter):
    """The suite's help (each flag's default), with no default shown for on/off flags and the description
    and the epilog kept as written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        return action.help or "" if action.nargs == 0 else super()._get_help_string(action)


def new_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """A parser with the suite's conventions: no prefix matching, defaults in --help, the shared epilog."""
    return argparse.ArgumentParser(
        prog=prog,
        description=textwrap.fill(description, 100),
        epilog=PLAYBACK_EPILOG,
        allow_abbrev=False,
        formatter_class=PlaybackHelpFormatter,
    )


# The game settings the `settings` event shows at its top level; the others go under its `env_config`.
TOP_LEVEL_GAME_SETTINGS = ("env_path", "show_window", "port", "seed")


def settings_of(args: argparse.Namespace) -> Dict[str, Any]:
    """The `settings` event's fields: every playback setting in effect."""
    game = dataclasses.asdict(game_settings(args, args.env_path))
    return {
        "mode": args.mode,
        **{name: game.pop(name) for name in TOP_LEVEL_GAME_SETTINGS},
        "env_config": game,
        "step_delay": args.step_delay,
        "restart_delay": args.restart_delay,
        "max_steps": args.max_steps if args.max_steps > 0 else None,
        "max_episodes": args.max_episodes if args.max_episodes > 0 else None,
        "auto_restart": args.auto_restart,
        "log_tracebacks": args.log_tracebacks,
        "action_lines_per_s": ACTION_LINES_PER_S,
    }


def game_settings(args: argparse.Namespace, env_path: Optional[str]) -> GameSettings:
    """The game to launch (or wait for), from the flags; the window shows only with --show-window alone."""
    return GameSettings.from_args(args, env_path=env_path, show_window=args.show_window and not args.headless)
