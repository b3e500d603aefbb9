"""Command-line flags of rllib_training_script.py (imports nothing heavy: --help stays fast)."""

import argparse
import os

from godot_rl_cli.cli_types import (
    HelpFormatter,
    add_flag,
    directory_path,
    int_in_range,
    key_value,
    seed_value,
)
from godot_rl_cli.rllib.layout import DEFAULT_EXPERIMENT_DIR
from godot_rl_cli.threads import add_thread_argument


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Train one or more policies for a Godot RL Agents game with Ray RLlib, configured by a "
        "YAML file. With CONTROLLER_METRICS set, one '@METRIC {json}' line per iteration goes to stdout. "
        "Ctrl+C (SIGINT) saves a final checkpoint, closes the games and shuts Ray down; a second Ctrl+C "
        "skips the checkpoint.",
        formatter_class=HelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument(
        "--config_file",
        default="rllib_config.yaml",
        help="RLlib YAML file (controller projects: .rlcontroller/rllib_config.yaml)",
    )
    parser.add_argument(
        "--experiment_dir",
        type=directory_path,
        default=DEFAULT_EXPERIMENT_DIR,
        help="directory for results and checkpoints",
    )
    parser.add_argument(
        "--resume",
        "--restore",
        dest="resume",
        default=None,
        help="continue from this checkpoint directory (checkpoint_NNNNNN)",
    )
    parser.add_argument(
        "--ray_address",
        default=os.environ.get("RAY_ADDRESS"),
        help="join this Ray cluster instead of starting a local one (also RAY_ADDRESS)",
    )
    add_flag(parser, "env_path", default=None, help="exported game (.x86_64); overrides env_config.env_path")
    seed_help = "seed for RLlib and the games (game i gets seed + i), 0 to 2**32-1; overrides the YAML"
    add_flag(parser, "seed", type=seed_value, default=None, help=seed_help)
    workers_help = "number of env runner processes; overrides the YAML (0: sample in this process)"
    add_flag(parser, "num_workers", type=int_in_range(0), default=None, help=workers_help)
    game_arg_help = "extra --KEY=VALUE argument for the games (repeatable)"
    add_flag(
        parser,
        "game_arg",
        type=key_value,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=game_arg_help,
    )
    onnx_help = (
        "with evaluation on (evaluation_interval in the YAML): write DIR/best_<policy>.onnx at each new best"
    )
    add_flag(parser, "onnx_export_dir", default=None, metavar="DIR", help=onnx_help)
    panel_help = "before training, print what the game sends for one real reset and one real step"
    add_flag(parser, "debug_panel", action="store_true", help=panel_help)
    add_thread_argument(parser)
    return parser
