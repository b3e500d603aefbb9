"""Command-line flags of rllib_training_script.py (imports nothing heavy: --help stays fast)."""

import argparse
import os
from typing import List

from godot_rl_cli.cli_types import (
    HelpFormatter,
    add_flag,
    seed_value,
)
from godot_rl_cli.game.process import game_file
from godot_rl_cli.game.settings import add_game_arg_flag
from godot_rl_cli.memory import worker_count
from godot_rl_cli.path_types import input_directory, no_special_file, output_directory, output_folder
from godot_rl_cli.rllib.config import choose_resume
from godot_rl_cli.rllib.layout import DEFAULT_EXPERIMENT_DIR
from godot_rl_cli.threads import add_thread_argument

CHECKPOINT_HOW = "pass a checkpoint_NNNNNN directory, or the trial directory holding them"


def parse_args(argv: List[str]) -> argparse.Namespace:
    """The flags; --resume wins over --restore (a warning says so when they differ)."""
    args = build_parser().parse_args(argv)
    args.resume = choose_resume(args.resume, args.restore)
    return args


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Train one or more policies for a Godot RL Agents game with Ray RLlib, configured by a "
        "YAML file. With CONTROLLER_METRICS set, one '@METRIC {json}' line per iteration goes to stdout. "
        "Ctrl+C (SIGINT) saves a final checkpoint, closes the games and shuts Ray down; a second Ctrl+C "
        "skips the checkpoint.",
        formatter_class=HelpFormatter,
        allow_abbrev=False,
    )
    config_check = no_special_file("config file", "pass --config_file with the path of your RLlib YAML file")
    config_help = "RLlib YAML file (controller projects: .rlcontroller/rllib_config.yaml)"
    add_flag(parser, "config_file", type=config_check, default="rllib_config.yaml", help=config_help)
    experiment_help = "directory for results and checkpoints"
    folder_check = output_folder("--experiment_dir")
    add_flag(
        parser, "experiment_dir", type=folder_check, default=DEFAULT_EXPERIMENT_DIR, help=experiment_help
    )
    for name, text in (
        ("resume", "continue from this checkpoint directory (checkpoint_NNNNNN)"),
        ("restore", "the same as --resume (the reference script's name); when both are given --resume wins"),
    ):
        add_flag(parser, name, type=input_directory(f"--{name}", CHECKPOINT_HOW), default=None, help=text)
    parser.add_argument(
        "--ray_address",
        default=os.environ.get("RAY_ADDRESS"),
        help="join this Ray cluster instead of starting a local one (also RAY_ADDRESS)",
    )
    add_flag(
        parser,
        "env_path",
        type=game_file,
        default=None,
        help="exported game (.x86_64); overrides env_config.env_path",
    )
    seed_help = "seed for RLlib and the games (game i gets seed + i), 0 to 2**32-1; overrides the YAML"
    add_flag(parser, "seed", type=seed_value, default=None, help=seed_help)
    workers_help = "number of env runner processes; overrides the YAML (0: sample in this process)"
    add_flag(parser, "num_workers", type=worker_count, default=None, help=workers_help)
    add_game_arg_flag(parser, "extra --KEY=VALUE argument for the games (repeatable)", dest="game_arg")
    onnx_help = (
        "with evaluation on (evaluation_interval in the YAML): write DIR/best_<policy>.onnx at each new best"
    )
    add_flag(
        parser,
        "onnx_export_dir",
        type=output_directory("--onnx_export_dir"),
        default=None,
        metavar="DIR",
        help=onnx_help,
    )
    panel_help = "before training, print what the game sends for one real reset and one real step"
    add_flag(parser, "debug_panel", action="store_true", help=panel_help)
    add_thread_argument(parser)
    return parser
