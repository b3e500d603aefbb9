"""Watch trained RLlib policies play a Godot RL Agents game.

The Training Controller's Interface tab runs this script for RLlib agents; it works the same from a
shell. The agent is a checkpoint written by rllib_training_script.py (a checkpoint_N directory, or the
trial or run directory holding them), or an ONNX file exported from one policy (run with onnxruntime
exactly as the Godot plugin would run it). Each lifecycle event is one `@INTERFACE_EVENT {json}` line
and each step (at most 20 a second) one `@INTERFACE_ACTION {json}` line on stdout; see --help and README.md.
"""

import sys
from typing import List, Optional

from godot_rl_cli.cli_types import add_flag, int_in_range
from godot_rl_cli.play.options import (
    add_interface_arguments,
    add_playback_arguments,
    new_parser,
    trimmed_or_none,
)


def build_parser():
    parser = new_parser(
        "interface_rllib_raw.py",
        "Play the policies of an RLlib checkpoint in a Godot RL Agents game and stream what each agent "
        "observes and does, step by step, with each episode's reward per agent. Each agent plays the "
        "policy its name maps to (the game's policy name for it, as in training; the only policy of a "
        "single-policy checkpoint), or the one --policy names. Launches the exported game given by "
        "--env-path, or waits for the Godot editor (press Play).",
    )
    add_interface_arguments(
        parser,
        "a checkpoint_N directory, a trial directory holding several (the latest is used), "
        "a run directory holding one trial, or an .onnx file exported by convert_rllib_to_onnx.py",
    )
    add_flag(
        parser,
        "checkpoint-number",
        type=int_in_range(0),
        metavar="N",
        help="play checkpoint N of the trial (default: the latest; ignored for a checkpoint_N path)",
    )
    policy_help = "play this policy for every agent (default: each agent's own policy)"
    add_flag(parser, "policy", type=trimmed_or_none, default=None, metavar="POLICY_ID", help=policy_help)
    add_playback_arguments(parser)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)

    from godot_rl_cli.play.loop import run_interface

    def open_model():
        from godot_rl_cli.rllib.layout import checkpoint_to_play

        # before Ray's import: a wrong path or checkpoint number is refused at once
        checkpoint = checkpoint_to_play(args.agent_path, args.checkpoint_number)
        from godot_rl_cli.play.rllib_source import RLlibActions

        return RLlibActions(checkpoint, args.policy, deterministic=not args.stochastic)

    path_help = "pass a checkpoint_N directory, the trial or run directory holding them, or an .onnx export"
    return run_interface(
        args, "rllib-raw", open_model, path_help, checkpoint_number=args.checkpoint_number, policy=args.policy
    )


if __name__ == "__main__":
    sys.exit(main())
