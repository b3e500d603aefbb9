"""Convert a Stable-Baselines3 model (.zip) to an ONNX file the Godot RL Agents plugin runs (see --help)."""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from godot_rl_cli.errors import UserError, exit_with_error  # noqa: E402
from godot_rl_cli.onnx_export import VerificationError  # noqa: E402
from godot_rl_cli.sb3_onnx import ALGORITHMS, convert_sb3_file  # noqa: E402
from godot_rl_cli.sb3_options import int_in_range  # noqa: E402

parser = argparse.ArgumentParser(
    description="Export a Stable-Baselines3 model to ONNX with the names the Godot plugin expects "
    "(inputs: one per observation key, normally 'obs', plus 'state_ins'; outputs: 'output', 'state_outs') "
    "and check it against the SB3 policy with onnxruntime.",
    formatter_class=argparse.ArgumentDefaultsHelpFormatter,
)
parser.add_argument("model_path", help="the model .zip saved by stable_baselines3_training_script.py or SB3")
parser.add_argument("-o", "--output", default=None, help="output .onnx file (default: beside the model, .onnx suffix)")
parser.add_argument("--algo", type=str.lower, choices=sorted(ALGORITHMS), default=None, help="algorithm (auto-detected if omitted)")
parser.add_argument("--opset", type=int_in_range(9, 17), default=13, help="ONNX opset version")
parser.add_argument("--ir-version", dest="ir_version", type=int_in_range(3, 10), default=9, help="ONNX IR version (the Godot plugin loads up to 9)")
parser.add_argument("--no-verify", dest="verify", action="store_false", help="skip the onnxruntime comparison with the SB3 policy")
parser.add_argument("--use-obs-array", dest="use_obs_array", action="store_true", help="one 'obs' input holding every observation key, flattened and concatenated")
args = parser.parse_args()

try:
    summary = convert_sb3_file(
        Path(args.model_path).expanduser().absolute(),
        Path(args.output).expanduser().absolute() if args.output else None,
        algo=args.algo,
        opset=args.opset,
        ir_version=args.ir_version,
        use_obs_array=args.use_obs_array,
        verify_export=args.verify,
    )
except UserError as error:
    exit_with_error(error.what, error.how)
except VerificationError as error:
    exit_with_error(f"verification failed, no file written: {error}", "report this model; --no-verify skips the check")
print(summary.path)
print(summary)
