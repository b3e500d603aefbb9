"""Convert a Stable-Baselines3 model (.zip) to an ONNX file the Godot RL Agents plugin runs (see --help)."""

import argparse
import sys
from pathlib import Path
from typing import List, Optional

from godot_rl_cli.algorithms import SB3_ALGORITHMS
from godot_rl_cli.errors import UserError, exit_with_error
from godot_rl_cli.onnx.options import add_version_arguments


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Export a Stable-Baselines3 model to ONNX with the names the Godot plugin expects "
        "(inputs: one per observation key, normally 'obs', plus 'state_ins'; outputs: 'output', "
        "'state_outs'; dynamic batch axis) and check the written file against the SB3 policy with "
        "onnxruntime. 'output' holds discrete logits or Q-values (argmax is the action), or continuous "
        "actions/means. Image observation keys take [batch, height, width, channels] pixel values 0-255 as "
        "floats. Prints the output path and a one-line summary on success.",
        allow_abbrev=False,
    )
    parser.add_argument(
        "model_path",
        help="the model .zip saved by stable_baselines3_training_script.py or SB3's model.save()",
    )
    parser.add_argument(
        "-o",
        "--output",
        default=None,
        help="output .onnx file (default: beside the model, with the .onnx suffix)",
    )
    parser.add_argument(
        "--algo",
        type=lambda text: text.strip().lower(),
        choices=list(SB3_ALGORITHMS),
        default=None,
        help="algorithm that trained the model, any case (default: auto-detected from the file)",
    )
    add_version_arguments(parser, "the SB3 policy")
    parser.add_argument(
        "--use-obs-array",
        dest="use_obs_array",
        action="store_true",
        help="a single 'obs' input: for dict observations, every key flattened and concatenated in the "
        "model's (sorted) key order",
    )
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)

    from godot_rl_cli.onnx.recipe import VerificationError, describe_failure
    from godot_rl_cli.onnx.sb3 import convert_sb3_file

    try:
        summary = convert_sb3_file(
            Path(args.model_path).expanduser().absolute(),
            Path(args.output).expanduser().absolute() if args.output else None,
            algo=args.algo,
            opset=args.opset,
            ir_version=args.ir_version,
            use_obs_array=args.use_obs_array,
            verify=args.verify,
        )
    # torch.onnx and onnx raise RuntimeError and ValueError for layers they cannot export
    except (UserError, VerificationError, OSError, RuntimeError, ValueError) as error:
        exit_with_error(*describe_failure(error))
    print(summary.path)
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
