"""Watch a trained Stable-Baselines3 policy play a Godot RL Agents game.

The Training Controller's Interface tab runs this script for SB3 agents; it works the same from a
shell. The agent is a model .zip, or the ONNX file exported from it (run with onnxruntime exactly as
the Godot plugin would run it). Each lifecycle event is one `@INTERFACE_EVENT {json}` line and each
step (at most 20 a second) one `@INTERFACE_ACTION {json}` line on stdout; see --help and README.md.
"""

import sys
from typing import List, Optional

from godot_rl_cli.cli_types import add_flag
from godot_rl_cli.play.options import (
    SB3_ALGORITHMS,
    add_interface_arguments,
    add_playback_arguments,
    new_parser,
    sb3_algorithm,
)


def build_parser():
    parser = new_parser(
        "interface_sb3_raw.py",
        "Play a trained Stable-Baselines3 model in a Godot RL Agents game and stream what it observes "
        "and does, "
        "step by step, with each episode's reward per agent. Every agent of the game acts through the model. "
        "Launches the exported game given by --env-path, or waits for the Godot editor (press Play).",
    )
    add_interface_arguments(
        parser,
        "the model .zip saved by stable_baselines3_training_script.py or SB3's save(), "
        "or an .onnx file exported from it by convert_sb3_to_onnx.py",
    )
    algo_help = "the algorithm that trained the model, any case (default: read from the model)"
    choices = "{" + ",".join(SB3_ALGORITHMS) + "}"
    add_flag(parser, "algo", type=sb3_algorithm, default=None, metavar=choices, help=algo_help)
    add_playback_arguments(parser)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)

    from godot_rl_cli.play.loop import run_interface

    def open_model():
        from godot_rl_cli.play.sb3_source import SB3Actions

        return SB3Actions(args.agent_path, args.algo, deterministic=not args.stochastic)

    return run_interface(
        args, "sb3-raw", open_model, "pass the model .zip or its .onnx export", algo=args.algo
    )


if __name__ == "__main__":
    sys.exit(main())
