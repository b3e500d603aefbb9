"""Checks on exported ONNX files that both converters' tests use: Godot's names, batch axis, versions."""

from pathlib import Path
from typing import Dict, List

import numpy as np
import onnx
import onnxruntime


def random_feeds(session: onnxruntime.InferenceSession, batch: int, seed: int = 1) -> Dict[str, np.ndarray]:
    """Uniform [-1, 1] float inputs for every input of `session`, with `batch` rows."""
    rng = np.random.default_rng(seed)
    return {
        item.name: rng.uniform(-1, 1, [batch, *item.shape[1:]]).astype(np.float32)
        for item in session.get_inputs()
    }


def assert_godot_interface(path: Path, observation_inputs: List[str]) -> onnxruntime.InferenceSession:
    """Inputs `observation_inputs` + state_ins, outputs output + state_outs, any batch size, state passed
    through."""
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [item.name for item in session.get_inputs()] == observation_inputs + ["state_ins"]
    assert [item.name for item in session.get_outputs()] == ["output", "state_outs"]
    assert all(isinstance(item.shape[0], str) for item in session.get_inputs() + session.get_outputs()), (
        "dynamic batch axis"
    )
    for batch in (1, 5):
        feeds = random_feeds(session, batch)
        output, state_outs = session.run(["output", "state_outs"], feeds)
        assert output.shape[0] == batch and output.dtype == np.float32
        np.testing.assert_array_equal(state_outs, feeds["state_ins"])
    return session


def assert_header(path: Path, opset: int, ir_version: int) -> onnx.ModelProto:
    """The file passes onnx.checker and declares exactly this IR version and default-domain opset."""
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert model.ir_version == ir_version
    assert [entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")] == [opset]
    return model
