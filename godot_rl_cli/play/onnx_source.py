"""An exported ONNX policy as an action source, run with onnxruntime the way the Godot plugin runs it.

Inputs are read from the file: one input per observation key (named by the key, as convert_sb3_to_onnx.py
writes them; images as the game sends them, pixel values as floats), or one `obs` input that gets the
game's observation keys flattened in the game's order (convert_rllib_to_onnx.py; for a game whose only
key is `obs` this is exactly the plugin's `obs["obs"]`). `state_ins` is zeros. `output` is decoded as the
plugin's `_extract_action_dict` does: per action key in the game's order, the argmax of a discrete key's
logits, or a continuous key's values clamped to [-1, 1]; when the output is wider than the continuous
actions (RLlib's `[mean, log_std]`), each continuous key's log_std part is skipped.
"""

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from gymnasium import spaces

from godot_rl_cli.errors import UserError
from godot_rl_cli.game.spaces import continuous_for_game, flatten_observation
from godot_rl_cli.onnx.recipe import ACTION_OUTPUT, STATE_INPUT
from godot_rl_cli.play.sources import (
    ModelActions,
    PlaybackError,
    mismatch,
)
from godot_rl_cli.threads import thread_count


def _static(dims: Sequence[Any]) -> List[Optional[int]]:
    """ONNX dims with symbolic ones (batch_size, ...) as None."""
    return [dim if isinstance(dim, int) else None for dim in dims]


def _fits(dims: Sequence[Optional[int]], shape: Sequence[int]) -> bool:
    return len(dims) == len(shape) and all(dim is None or dim == size for dim, size in zip(dims, shape))


class OnnxActions(ModelActions):
    kind = "onnx"

    def __init__(self, path: Path, label: Optional[str] = None, deterministic: bool = True):
        import onnxruntime

        self.path = Path(path)
        if not deterministic:
            raise UserError(
                "--stochastic does not apply to an ONNX file",
                "the Godot plugin takes the argmax and the means: omit --stochastic",
            )
        if not self.path.is_file():
            raise UserError(
                f"ONNX file {self.path} does not exist",
                "pass the .onnx file written by convert_sb3_to_onnx.py or convert_rllib_to_onnx.py",
            )
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = thread_count()
        options.log_severity_level = 3
        try:
            self.session = onnxruntime.InferenceSession(
                str(self.path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # onnxruntime raises its own exception types for unreadable files
            detail = (str(error).strip().splitlines() or [""])[0]
            raise UserError(
                f"{self.path} is not a valid ONNX model ({detail})",
                "export it again with convert_sb3_to_onnx.py or convert_rllib_to_onnx.py",
            ) from None
        inputs = {item.name: _static(item.shape) for item in self.session.get_inputs()}
        outputs = {item.name: _static(item.shape) for item in self.session.get_outputs()}
        if STATE_INPUT not in inputs or ACTION_OUTPUT not in outputs or len(inputs) < 2:
            raise UserError(
                f"{self.path} is not a policy the Godot plugin runs: inputs {', '.join(inputs)}, "
                f"outputs {', '.join(outputs)}",
                f"the plugin needs an observation input, '{STATE_INPUT}' and the output '{ACTION_OUTPUT}'; "
                "export with this suite's converters",
            )
        self.inputs = {name: dims for name, dims in inputs.items() if name != STATE_INPUT}
        self.output_width = (outputs[ACTION_OUTPUT] + [None, None])[1]
        self.one_at_a_time = any(dims and dims[0] == 1 for dims in inputs.values())  # a fixed batch of 1
        self.label = label or self.path.stem
        self.flat = False
        self.heads: List[tuple] = []

    def describe(self) -> str:
        shown = ", ".join(
            f"{name}{['batch' if dim is None else dim for dim in dims]}" for name, dims in self.inputs.items()
        )
        width = self.output_width or "?"
        return f"ONNX model {self.path.name}: inputs {shown}, {STATE_INPUT}; {ACTION_OUTPUT}[batch, {width}]"

    def _model_text(self) -> tuple:
        observations = (
            "{" + ", ".join(f"{name}: {tuple(dims[1:])}" for name, dims in self.inputs.items()) + "}"
        )
        return observations, f"as an {ACTION_OUTPUT} of {self.output_width or 'unknown'} values"

    def check(self, game) -> List[str]:
        space = game.observation_spaces[0]
        shapes = {key: tuple(space[key].shape) for key in game.observation_key_order}
        total = sum(int(np.prod(shape)) if shape else 1 for shape in shapes.values())
        if all(name in shapes and _fits(dims[1:], shapes[name]) for name, dims in self.inputs.items()):
            self.flat = False
        elif len(self.inputs) == 1 and _fits(next(iter(self.inputs.values()))[1:], (total,)):
            self.flat = True
        else:
            raise mismatch(f"the ONNX model {self.path.name}", *self._model_text(), game)
        if self.output_width is None:  # a symbolic width: run the model once to read it
            zeros = {key: np.zeros(space[key].shape, np.float32) for key in game.observation_key_order}
            self.output_width = int(
                self.session.run([ACTION_OUTPUT], self._feeds([zeros]))[0].reshape(1, -1).shape[1]
            )
        self.heads = [self._decoding(game, index) for index in range(game.num_envs)]
        return [self.label] * game.num_envs

    def _decoding(self, game, index: int) -> tuple:
        """(heads as (is_discrete, size), whether `output` holds continuous means only), as the plugin
        decides: means only when every head is continuous and `output` is exactly that wide."""
        heads = [
            (
                isinstance(head, spaces.Discrete),
                int(head.n) if isinstance(head, spaces.Discrete) else int(head.shape[0]),
            )
            for head in game.action_spaces[index].values()
        ]
        continuous = sum(size for discrete, size in heads if not discrete)
        means_only = not any(discrete for discrete, _ in heads) and self.output_width == continuous
        needed = sum(size if discrete or means_only else 2 * size for discrete, size in heads)
        if self.output_width is not None and self.output_width != needed:
            raise mismatch(f"the ONNX model {self.path.name}", *self._model_text(), game, index)
        return heads, means_only

    def _feeds(self, observations: List[Dict[str, Any]]) -> Dict[str, np.ndarray]:
        if self.flat:
            name = next(iter(self.inputs))
            feeds = {
                name: np.stack(
                    [flatten_observation(observation, self.key_order) for observation in observations]
                )
            }
        else:
            feeds = {
                name: np.stack([np.asarray(obs[name], np.float32) for obs in observations])
                for name in self.inputs
            }
        feeds[STATE_INPUT] = np.zeros(len(observations), np.float32)
        return feeds

    def predict(self, observations: List[Dict[str, Any]]) -> Sequence[Any]:
        batches = [[observation] for observation in observations] if self.one_at_a_time else [observations]
        outputs = np.concatenate(
            [
                self.session.run([ACTION_OUTPUT], self._feeds(batch))[0].reshape(len(batch), -1)
                for batch in batches
            ]
        )
        return [self._decode(row, *self.heads[index]) for index, row in enumerate(outputs)]

    @staticmethod
    def _decode(row: np.ndarray, heads: List[tuple], means_only: bool) -> np.ndarray:
        values: List[float] = []
        start = 0
        for discrete, size in heads:
            if start + size > len(row):
                raise PlaybackError(
                    f"the ONNX output has {len(row)} values per agent, fewer than the game's actions need"
                )
            if discrete:
                values.append(int(np.argmax(row[start : start + size])))
                start += size
            else:
                values.extend(continuous_for_game(row[start : start + size]).tolist())
                start += size if means_only else 2 * size
        return np.asarray(values, dtype=np.float64)
