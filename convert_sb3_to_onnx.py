"""Convert a Stable-Baselines3 model (.zip) to an ONNX file the Godot RL Agents plugin runs (see --help)."""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from godot_rl_cli.errors import UserError, exit_with_error  # noqa: E402
from godot_rl_cli.onnx.recipe import VerificationError  # noqa: E402
from godot_rl_cli.onnx.sb3 import ALGORITHMS, convert_sb3_file  # noqa: E402

parser = argparse.ArgumentParser(
    description="Export a Stable-Baselines3 model to ONNX with the names the Godot plugin expects "
    "(inputs: one per observation key, normally 'obs', plus 'state_ins'; outputs: 'output', 'state_outs'; "
    "dynamic batch axis) and check the written file against the SB3 policy with onnxruntime. "
    "'output' holds discrete logits or Q-values (argmax is the action), or continuous actions/means. "
    "Image observation keys take [batch, height, width, channels] pixel values 0-255 as floats. "
    "Prints the output path and a one-line summary on success.",
)
parser.add_argument("model_path", help="the model .zip saved by stable_baselines3_training_script.py or SB3's model.save()")
parser.add_argument("-o", "--output", default=None, help="output .onnx file (default: beside the model, with the .onnx suffix)")
parser.add_argument("--algo", type=str.lower, choices=list(ALGORITHMS), default=None, help="algorithm that trained the model, any case (default: auto-detected from the file)")
parser.add_argument("--opset", type=int, choices=range(9, 18), default=13, metavar="{9..17}", help="ONNX opset version (default: 13)")
parser.add_argument("--ir-version", dest="ir_version", type=int, default=9, metavar="N", help="ONNX IR version written in the file (default: 9, the newest the Godot plugin loads; opset 9 needs >= 4, 13 needs >= 7, 15-17 need >= 8)")
parser.add_argument("--no-verify", dest="verify", action="store_false", help="skip the onnxruntime comparison with the SB3 policy")
parser.add_argument("--use-obs-array", dest="use_obs_array", action="store_true", help="a single 'obs' input: for dict observations, every key flattened and concatenated in the model's (sorted) key order")
args = parser.parse_args()

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
except UserError as error:
    exit_with_error(error.what, error.how)
except VerificationError as error:
    exit_with_error(f"verification failed, output file removed: {error}", "report this model; --no-verify skips the check")
except OSError as error:
    exit_with_error(f"cannot write the ONNX file: {error}", "check the --output path and its permissions")
except (RuntimeError, ValueError) as error:
    exit_with_error(f"export failed: {type(error).__name__}: {error}", "this policy's layers may not be exportable to ONNX at this opset; try a higher --opset")
print(summary.path)
print(summary)
