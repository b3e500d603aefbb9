"""The game's per-agent spaces as the flat spaces trainers use, and actions back to the game's
`{head: value}`."""

from typing import Any, Dict, List, Sequence

import numpy as np
from gymnasium import spaces

from godot_rl_cli.errors import UserError


def flat_action_space(heads: spaces.Dict) -> spaces.Space:
    """One action space for the game's action heads: Discrete, MultiDiscrete or a concatenated Box in
    [-1, 1]."""
    kinds = {type(head) for head in heads.values()}
    if kinds == {spaces.Discrete}:
        sizes = [int(head.n) for head in heads.values()]
        return spaces.Discrete(sizes[0]) if len(sizes) == 1 else spaces.MultiDiscrete(sizes)
    if kinds == {spaces.Box}:
        size = sum(int(head.shape[0]) for head in heads.values())
        return spaces.Box(low=-1.0, high=1.0, shape=(size,), dtype=np.float32)
    raise UserError(
        "the game mixes discrete and continuous action heads, which these trainers cannot train",
        "use only discrete or only continuous action heads",
    )


def continuous_for_game(values: Any) -> np.ndarray:
    """Continuous action values as the game gets them from any playback path (ONNX, SB3, RLlib): inside the
    game's [-1, 1] boxes. A policy's raw sample or mean can lie outside (a Gaussian's); RLlib's unsquashing
    of a [-1, 1] box is the identity, so clipping is the whole rule."""
    return np.clip(np.asarray(values, dtype=np.float64), -1.0, 1.0)


class ActionEncoder:
    """Turns rows of flat actions into the plugin's per-agent `{head: value}` dicts."""

    def __init__(self, heads: spaces.Dict):
        self.heads = [
            (
                name,
                1 if isinstance(head, spaces.Discrete) else int(head.shape[0]),
                isinstance(head, spaces.Discrete),
            )
            for name, head in heads.items()
        ]

    def encode(self, actions: np.ndarray) -> List[Dict[str, Any]]:
        rows = np.asarray(actions).reshape(len(actions), -1).tolist()
        if len(self.heads) == 1:  # the common case, once per step: one comprehension
            name, _, discrete = self.heads[0]
            return [{name: int(row[0])} for row in rows] if discrete else [{name: row} for row in rows]
        encoded = []
        for row in rows:
            action, start = {}, 0
            for name, width, discrete in self.heads:
                action[name] = int(row[start]) if discrete else row[start : start + width]
                start += width
            encoded.append(action)
        return encoded


def flatten_observation(observation: Dict[str, Any], key_order: Sequence[str]) -> np.ndarray:
    """One agent's observation as RLlib trains on it and its ONNX export takes it: every key flattened and
    concatenated in the game's order (gymnasium's Dict sorts keys, so the order is the game's env_info's)."""
    return np.concatenate([np.asarray(observation[key], dtype=np.float32).ravel() for key in key_order])
