"""ONNX export pieces shared by both converters: versions, checker, atomic write, onnxruntime parity.

Godot's plugin runs models with ONNX Runtime 1.15 from C#: IR version <= 9, opset <= 19, inputs
`obs` (or one per observation key) and `state_ins`, outputs `output` and `state_outs`.
torch >= 2.9 defaults to the dynamo exporter, which needs onnxscript; the legacy exporter
(`dynamo=False`) is used with explicit names and a dynamic batch axis.
"""

import io
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np
import onnx
import onnx.checker
import onnx.helper
import onnx.version_converter
import torch

from godot_rl_cli.errors import UserError

STATE_INPUT = "state_ins"
STATE_OUTPUT = "state_outs"
ACTION_OUTPUT = "output"
GODOT_MAX_IR_VERSION = 9
GODOT_MAX_OPSET = 19
CONTINUOUS_TOLERANCE = 1e-5


class VerificationError(Exception):
    """The exported model does not compute what the trained policy computes."""


@dataclass
class ExportSummary:
    """What was written, for the one-line report."""

    path: Path
    algorithm: str
    inputs: Dict[str, List] = field(default_factory=dict)
    outputs: Dict[str, List] = field(default_factory=dict)
    opset: int = 0
    ir_version: int = 0
    max_error: float = float("nan")
    verified: bool = False

    def __str__(self) -> str:
        def shapes(tensors: Dict[str, List]) -> str:
            return ", ".join(f"{name}{list(shape)}" for name, shape in tensors.items())

        check = f"max verification error {self.max_error:.2e}" if self.verified else "not verified"
        return (
            f"{self.path}: {self.algorithm}; inputs {shapes(self.inputs)}; outputs {shapes(self.outputs)}; "
            f"opset {self.opset}, IR version {self.ir_version}; {check}"
        )


def check_versions(opset: int, ir_version: int) -> None:
    """Refuse version pairs ONNX cannot represent; warn beyond what the Godot plugin loads."""
    needed = onnx.helper.find_min_ir_version_for([onnx.helper.make_opsetid("", opset)])
    if ir_version < needed:
        raise UserError(f"IR version {ir_version} is too old for opset {opset} (it needs IR version {needed} or newer)", f"pass --ir-version {needed} or a lower --opset")
    if ir_version > onnx.IR_VERSION:
        raise UserError(f"IR version {ir_version} is newer than this onnx package supports ({onnx.IR_VERSION})", f"pass --ir-version {GODOT_MAX_IR_VERSION}")
    if ir_version > GODOT_MAX_IR_VERSION or opset > GODOT_MAX_OPSET:
        warnings.warn(f"the Godot plugin (ONNX Runtime 1.15) loads IR <= {GODOT_MAX_IR_VERSION} and opset <= {GODOT_MAX_OPSET}")


def export_module(
    module: torch.nn.Module,
    example_inputs: Sequence[torch.Tensor],
    input_names: List[str],
    opset: int,
    ir_version: int,
) -> onnx.ModelProto:
    """Export `module(*inputs) -> (output, state_outs)` with a dynamic batch axis, at exactly `opset` and `ir_version`."""
    check_versions(opset, ir_version)
    output_names = [ACTION_OUTPUT, STATE_OUTPUT]
    buffer = io.BytesIO()
    module.eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            tuple(example_inputs),
            buffer,
            dynamo=False,
            opset_version=opset,
            input_names=input_names,
            output_names=output_names,
            dynamic_axes={name: {0: "batch_size"} for name in input_names + output_names},
        )
    model = onnx.load_from_string(buffer.getvalue())
    if default_opset(model) != opset:
        model = onnx.version_converter.convert_version(model, opset)
    model.ir_version = ir_version
    onnx.checker.check_model(model, full_check=True)
    return model


def default_opset(model: onnx.ModelProto) -> int:
    return next(entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx"))


def tensor_shapes(values) -> Dict[str, List]:
    """{name: [dims]} with symbolic dims as their names."""
    return {
        value.name: [dim.dim_param or dim.dim_value for dim in value.type.tensor_type.shape.dim] for value in values
    }


def run_onnx(model: onnx.ModelProto, inputs: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    import onnxruntime

    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(names, inputs)))


def max_abs_error(actual: np.ndarray, expected: np.ndarray) -> float:
    actual = np.asarray(actual, dtype=np.float64).reshape(len(expected), -1)
    expected = np.asarray(expected, dtype=np.float64).reshape(len(expected), -1)
    if actual.shape != expected.shape:
        raise VerificationError(f"ONNX output has shape {actual.shape}, the policy gives {expected.shape}")
    return float(np.max(np.abs(actual - expected))) if actual.size else 0.0


def check_continuous(actual: np.ndarray, expected: np.ndarray, tolerance: float = CONTINUOUS_TOLERANCE) -> float:
    error = max_abs_error(actual, expected)
    if not error <= tolerance:
        raise VerificationError(f"ONNX actions differ from the policy's by up to {error:.3g} (tolerance {tolerance:g})")
    return error


def check_discrete(logits: np.ndarray, expected_actions: np.ndarray, head_sizes: Sequence[int]) -> float:
    """Argmax per action head of `logits` must equal the policy's actions; returns 0.0 on success."""
    logits = np.asarray(logits).reshape(len(expected_actions), -1)
    expected = np.asarray(expected_actions).reshape(len(expected_actions), -1)
    start = 0
    for head, size in enumerate(head_sizes):
        chosen = np.argmax(logits[:, start : start + size], axis=1)
        if not np.array_equal(chosen, expected[:, head]):
            mismatches = int(np.sum(chosen != expected[:, head]))
            raise VerificationError(f"ONNX argmax differs from the policy's action in {mismatches} of {len(chosen)} samples (head {head})")
        start += size
    return 0.0


def check_state_passthrough(outputs: Dict[str, np.ndarray], state: np.ndarray) -> None:
    if not np.array_equal(outputs[STATE_OUTPUT], state):
        raise VerificationError("state_outs is not state_ins passed through")


def save_atomically(model: onnx.ModelProto, path: Path) -> Path:
    """Write to a temporary file beside `path`, then rename, so no half-written model is ever seen."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        onnx.save(model, str(temporary))
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path
