"""The ONNX version flags both converters take (no heavy imports: --help stays fast)."""

import argparse
from typing import Dict

# The converters' range; the Godot plugin (ONNX Runtime 1.15) loads opset <= 19, see recipe.GODOT_MAX_OPSET.
OPSETS = range(9, 18)
DEFAULT_OPSET = 13
DEFAULT_IR_VERSION = 9


def trainer_export_versions() -> Dict[str, int]:
    """What the trainers' own exports (best.onnx, --onnx_export_path) are written with, as manifest.json
    records it."""
    return {"opset": DEFAULT_OPSET, "ir_version": DEFAULT_IR_VERSION}


def add_version_arguments(parser: argparse.ArgumentParser, reference: str) -> None:
    """--opset, --ir-version and --no-verify; `reference` names what the written file is compared with."""
    parser.add_argument(
        "--opset",
        type=int,
        choices=OPSETS,
        default=DEFAULT_OPSET,
        metavar=f"{{{OPSETS[0]}..{OPSETS[-1]}}}",
        help=f"ONNX opset version (default: {DEFAULT_OPSET})",
    )
    parser.add_argument(
        "--ir-version",
        dest="ir_version",
        type=int,
        default=DEFAULT_IR_VERSION,
        metavar="N",
        help=f"ONNX IR version written in the file (default: {DEFAULT_IR_VERSION}, the newest the Godot "
        "plugin loads; opset 9 needs >= 4, 13 needs >= 7, 15-17 need >= 8)",
    )
    parser.add_argument(
        "--no-verify",
        dest="verify",
        action="store_false",
        help=f"skip the onnxruntime comparison with {reference}",
    )
