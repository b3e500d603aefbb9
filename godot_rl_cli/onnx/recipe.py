"""ONNX export pieces shared by both converters: versions, checker, atomic write, onnxruntime parity.

Godot's plugin runs models with ONNX Runtime 1.15 from C#: IR version <= 9, opset <= 19, inputs
`obs` (or one per observation key) and `state_ins`, outputs `output` and `state_outs`.
torch >= 2.9 defaults to the dynamo exporter, which needs onnxscript; the legacy exporter
(`dynamo=False`) is used with explicit names and a dynamic batch axis.
Nothing here knows about Stable-Baselines3 or RLlib. The recipe both converters follow:
    summary = export_verified(graph, example_inputs, input_names, path, label, opset, ir_version,
                              verify=lambda written: <check_graph_parity(written, graph, feeds), then the
                              framework's own action check with check_discrete / check_continuous>)
trace (legacy exporter) -> convert opset and set IR version -> onnx.checker -> atomic write ->
onnxruntime parity on the written file (the file is removed when it fails).
"""

import io
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import onnx
import onnx.checker
import onnx.helper
import onnx.version_converter
import torch

from godot_rl_cli.errors import UserError, print_warning

STATE_INPUT = "state_ins"
STATE_OUTPUT = "state_outs"
ACTION_OUTPUT = "output"
BATCH_AXIS = "batch_size"
GODOT_MAX_IR_VERSION = 9
GODOT_MAX_OPSET = 19
CONTINUOUS_TOLERANCE = 1e-5
VERIFY_SAMPLES = 32


class VerificationError(Exception):
    """The exported model does not compute what the trained policy computes."""


def describe_failure(error: Exception) -> Tuple[str, str]:
    """(what, how) of an ERROR line for any failure of an export: both converters report the same way."""
    if isinstance(error, UserError):
        return error.what, error.how
    if isinstance(error, VerificationError):
        return (
            f"verification failed, output file removed: {error}",
            "report this model; --no-verify skips the check",
        )
    if isinstance(error, OSError):
        return f"cannot write the ONNX file: {error}", "check the output path and its permissions"
    return (
        f"export failed: {type(error).__name__}: {error}",
        "this policy's layers may not be exportable to ONNX at this opset; try a higher --opset",
    )


@dataclass
class ExportSummary:
    """What was written, printed as one line: path, algorithm, inputs/outputs with shapes, versions, error."""

    path: Path
    algorithm: str
    inputs: Dict[str, List] = field(default_factory=dict)
    outputs: Dict[str, List] = field(default_factory=dict)
    opset: int = 0
    ir_version: int = 0
    max_error: float = float("nan")
    verified: bool = False

    @classmethod
    def of(cls, model: onnx.ModelProto, path: Path, algorithm: str) -> "ExportSummary":
        return cls(
            path=Path(path),
            algorithm=algorithm,
            inputs=tensor_shapes(model.graph.input),
            outputs=tensor_shapes(model.graph.output),
            opset=default_opset(model),
            ir_version=model.ir_version,
        )

    def __str__(self) -> str:
        def shapes(tensors: Dict[str, List]) -> str:
            return ", ".join(f"{name}{list(shape)}" for name, shape in tensors.items())

        check = f"max verification error {self.max_error:.2e}" if self.verified else "not verified"
        return (
            f"{self.path}: {self.algorithm}; inputs {shapes(self.inputs)}; outputs {shapes(self.outputs)}; "
            f"opset {self.opset}, IR version {self.ir_version}; {check}"
        )


# --- versions and export -------------------------------------------------------------------------


def min_ir_version(opset: int) -> int:
    """The oldest IR version that can hold `opset` (from onnx.helper.VERSION_TABLE)."""
    return onnx.helper.find_min_ir_version_for([onnx.helper.make_opsetid("", opset)])


def check_versions(opset: int, ir_version: int) -> None:
    """Refuse version pairs ONNX cannot represent; warn beyond what the Godot plugin loads."""
    needed = min_ir_version(opset)
    if ir_version < needed:
        raise UserError(
            f"IR version {ir_version} is too old for opset {opset} (it needs IR version {needed} or newer)",
            f"pass --ir-version {needed} or newer, or a lower --opset",
        )
    if ir_version > onnx.IR_VERSION:
        raise UserError(
            f"IR version {ir_version} is newer than this onnx package supports ({onnx.IR_VERSION})",
            f"pass --ir-version {GODOT_MAX_IR_VERSION}",
        )
    if ir_version > GODOT_MAX_IR_VERSION or opset > GODOT_MAX_OPSET:
        print_warning(
            f"the Godot plugin (ONNX Runtime 1.15) loads IR version <= {GODOT_MAX_IR_VERSION} and opset <= "
            f"{GODOT_MAX_OPSET} only"
        )


def export_module(
    module: torch.nn.Module,
    example_inputs: Sequence[torch.Tensor],
    input_names: List[str],
    opset: int,
    ir_version: int,
    output_names: Sequence[str] = (ACTION_OUTPUT, STATE_OUTPUT),
) -> onnx.ModelProto:
    """Export `module(*inputs) -> outputs` with a dynamic batch axis, at exactly `opset` and `ir_version`.

    The model is checked (`onnx.checker`, full) and must have exactly the given input and output names.
    """
    check_versions(opset, ir_version)
    output_names = list(output_names)
    buffer = io.BytesIO()
    module.eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter(
            "ignore"
        )  # the legacy exporter's deprecation and tracer notes are not for the user
        torch.onnx.export(
            module,
            tuple(example_inputs),
            buffer,
            dynamo=False,
            opset_version=opset,
            input_names=input_names,
            output_names=output_names,
            dynamic_axes={name: {0: BATCH_AXIS} for name in input_names + output_names},
        )
    model = onnx.load_from_string(buffer.getvalue())
    if default_opset(model) != opset:
        model = onnx.version_converter.convert_version(model, opset)
    model.ir_version = ir_version
    onnx.checker.check_model(model, full_check=True)
    found_inputs = [value.name for value in model.graph.input]
    found_outputs = [value.name for value in model.graph.output]
    if found_inputs != input_names or found_outputs != output_names:
        raise RuntimeError(
            f"the exported graph has inputs {found_inputs} and outputs {found_outputs}, expected "
            f"{input_names} and {output_names}"
        )
    return model


def default_opset(model: onnx.ModelProto) -> int:
    return next(entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx"))


def tensor_shapes(values) -> Dict[str, List]:
    """{name: [dims]} with symbolic dims as their names."""
    return {
        value.name: [dim.dim_param or dim.dim_value for dim in value.type.tensor_type.shape.dim]
        for value in values
    }


# --- writing -------------------------------------------------------------------------------------


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


def save_verified(model: onnx.ModelProto, path: Path, verify: Optional[Callable[[Path], float]]) -> float:
    """Save atomically, then run `verify(path)` on the written file; on any failure the file is removed.

    Returns verify's max error (NaN when `verify` is None).
    """
    save_atomically(model, path)
    if verify is None:
        return float("nan")
    try:
        return verify(Path(path))
    except BaseException:
        Path(path).unlink(missing_ok=True)
        raise


def export_verified(
    graph: torch.nn.Module,
    example_inputs: Sequence[torch.Tensor],
    input_names: List[str],
    path: Path,
    label: str,
    opset: int,
    ir_version: int,
    verify: Optional[Callable[[Path], float]],
) -> ExportSummary:
    """The whole recipe: export `graph(*inputs, state_ins)`, write it atomically, verify the written file.

    `example_inputs` and `input_names` are the observation inputs; `state_ins` is added to both.
    """
    model = export_module(
        graph, list(example_inputs) + [torch.zeros(1)], input_names + [STATE_INPUT], opset, ir_version
    )
    summary = ExportSummary.of(model, Path(path), label)
    summary.max_error = save_verified(model, Path(path), verify)
    summary.verified = verify is not None
    return summary


# --- verification with onnxruntime ---------------------------------------------------------------


def run_onnx(
    model: Union[onnx.ModelProto, Path, str], inputs: Dict[str, np.ndarray]
) -> Dict[str, np.ndarray]:
    """Run a model (in memory or a file) on CPU with onnxruntime: {output name: array}."""
    import onnxruntime

    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    session = onnxruntime.InferenceSession(source, providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(names, inputs), strict=False))


def max_abs_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """Largest absolute difference, per sample flattened; a shape mismatch is a VerificationError."""
    expected = np.asarray(expected, dtype=np.float64)
    actual = np.asarray(actual, dtype=np.float64)
    if actual.size != expected.size or len(actual) != len(expected):
        raise VerificationError(f"ONNX output has shape {actual.shape}, the reference has {expected.shape}")
    difference = actual.reshape(len(expected), -1) - expected.reshape(len(expected), -1)
    return float(np.max(np.abs(difference))) if difference.size else 0.0


def check_continuous(
    actual: np.ndarray, expected: np.ndarray, tolerance: float = CONTINUOUS_TOLERANCE, what: str = "outputs"
) -> float:
    """Max absolute error of `actual` against `expected`; raises VerificationError (with the error) beyond
    `tolerance`."""
    error = max_abs_error(actual, expected)
    if not error <= tolerance:
        raise VerificationError(
            f"ONNX {what} differ from the policy's by up to {error:.3g} (tolerance {tolerance:g})"
        )
    return error


def check_discrete(logits: np.ndarray, expected_actions: np.ndarray, head_sizes: Sequence[int]) -> None:
    """The argmax of each action head's slice of `logits` must equal the policy's action for that head."""
    logits = np.asarray(logits).reshape(len(expected_actions), -1)
    expected = np.asarray(expected_actions).reshape(len(expected_actions), -1)
    if logits.shape[1] != sum(head_sizes) or expected.shape[1] != len(head_sizes):
        raise VerificationError(
            f"ONNX output has {logits.shape[1]} values per sample, the action heads need {sum(head_sizes)}"
        )
    start = 0
    for head, size in enumerate(head_sizes):
        chosen = np.argmax(logits[:, start : start + size], axis=1)
        if not np.array_equal(chosen, expected[:, head]):
            mismatches = int(np.sum(chosen != expected[:, head]))
            raise VerificationError(
                f"ONNX argmax differs from the policy's action in {mismatches} of {len(chosen)} samples "
                f"(action head {head})"
            )
        start += size


def check_state_passthrough(outputs: Dict[str, np.ndarray], state: np.ndarray) -> None:
    if not np.array_equal(outputs[STATE_OUTPUT], state):
        raise VerificationError(f"{STATE_OUTPUT} is not {STATE_INPUT} passed through")


def check_batch_sizes(
    model_path: Path, feeds: Dict[str, np.ndarray], batch_sizes: Sequence[int] = (1, 5)
) -> float:
    """Run the file on the first `n` samples for each n: each row must equal the full batch's row (dynamic
    batch axis)."""
    full = run_onnx(model_path, feeds)
    error = 0.0
    for size in batch_sizes:
        part = run_onnx(model_path, {name: value[:size] for name, value in feeds.items()})
        for name, value in part.items():
            error = max(
                error,
                check_continuous(value, full[name][:size], what=f"'{name}' values at batch size {size}"),
            )
    return error


def sample_observations(space, count: int, seed: int = 0):
    """`count` seeded samples of a gymnasium space, stacked (a dict of stacked arrays for Dict spaces)."""
    from gymnasium import spaces

    space.seed(seed)
    samples = [space.sample() for _ in range(count)]
    if isinstance(space, spaces.Dict):
        return {key: np.stack([sample[key] for sample in samples]) for key in space.spaces}
    return np.stack(samples)


def head_sizes(action_space) -> List[int]:
    """Sizes of the discrete action heads of a Discrete or MultiDiscrete space."""
    if hasattr(action_space, "nvec"):
        return [int(size) for size in action_space.nvec]
    return [int(action_space.n)]


def check_graph_parity(
    model_path: Path, graph: torch.nn.Module, feeds: Dict[str, np.ndarray], graph_inputs: Sequence[str]
) -> tuple:
    """Run the written file on `feeds` and compare it with the torch graph it was traced from.

    Checks that `state_outs` is `state_ins`, that `output` equals the graph's (within 1e-5, relative for
    large values) and that rows do not depend on the batch size. Returns (`output`, max error).
    """
    outputs = run_onnx(model_path, feeds)
    check_state_passthrough(outputs, feeds[STATE_INPUT])
    actual = outputs[ACTION_OUTPUT]
    with torch.no_grad():
        tensors = [torch.from_numpy(feeds[name]) for name in graph_inputs]
        reference = graph(*tensors, torch.zeros(len(actual)))[0].numpy()
    tolerance = CONTINUOUS_TOLERANCE * max(1.0, float(np.max(np.abs(reference))))
    error = check_continuous(actual, reference, tolerance, what=f"'{ACTION_OUTPUT}' values")
    return actual, max(error, check_batch_sizes(model_path, feeds))
