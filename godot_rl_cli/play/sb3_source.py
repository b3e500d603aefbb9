"""A Stable-Baselines3 model (.zip) as an action source: every agent of the game through the one model.

Observations go to `model.predict` as the trainer's VecEnv gives them: a dict of per-key batches, images
as the game sends them (uint8 height x width x channels; SB3 transposes them for its CNN itself).
"""

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from gymnasium import spaces

from godot_rl_cli.errors import UserError
from godot_rl_cli.onnx.sb3 import ObservationInput, load_sb3_model, with_zip_suffix
from godot_rl_cli.play.sources import (
    ModelActions,
    describe_space,
    game_action_space,
    mismatch,
    same_action_space,
)
from godot_rl_cli.threads import configure_torch_threads


def observation_shapes(space: spaces.Space) -> Dict[Optional[str], tuple]:
    """{key: shape as the game sends it} of a model's observation space (images back to channels-last)."""
    parts = space.spaces.items() if isinstance(space, spaces.Dict) else [(None, space)]
    shapes = {}
    for key, subspace in parts:
        try:
            shapes[key] = ObservationInput(key, subspace).shape
        except UserError:  # a Discrete observation: no shape to convert
            shapes[key] = tuple(subspace.shape)
    return shapes


class SB3Actions(ModelActions):
    kind = "sb3-raw"

    def __init__(self, model_path: Path, algo: Optional[str] = None, deterministic: bool = True):
        configure_torch_threads(None)
        self.path = with_zip_suffix(Path(model_path))
        self.model, self.algo = load_sb3_model(self.path, algo)
        self.deterministic = deterministic
        self.shapes = observation_shapes(self.model.observation_space)
        self.feed_key: Optional[str] = None

    def describe(self) -> str:
        return (
            f"{self.algo.upper()} model {self.path.name}: observations {self._observations_text()}, "
            f"actions {describe_space(self.model.action_space)}"
        )

    def _observations_text(self) -> str:
        return "{" + ", ".join(f"{key or 'obs'}: {shape}" for key, shape in self.shapes.items()) + "}"

    def check(self, game) -> List[str]:
        game_shapes = {
            key: tuple(game.observation_spaces[0][key].shape) for key in game.observation_key_order
        }
        if None in self.shapes:  # a flat Box model: the game's single key of that shape
            fits = len(game_shapes) == 1 and next(iter(game_shapes.values())) == self.shapes[None]
            self.feed_key = next(iter(game_shapes)) if fits else None
        else:
            fits = game_shapes == self.shapes
        fits = fits and all(
            same_action_space(self.model.action_space, game_action_space(game, i))
            for i in range(game.num_envs)
        )
        fits = fits and all(space == game.observation_spaces[0] for space in game.observation_spaces)
        if not fits:
            raise mismatch(
                f"the {self.algo.upper()} model {self.path.name}",
                self._observations_text(),
                describe_space(self.model.action_space),
                game,
            )
        return list(game.agent_policy_names)

    def predict(self, observations: List[Dict[str, Any]]) -> Sequence[Any]:
        if self.feed_key is not None:
            batch: Any = np.stack([np.asarray(observation[self.feed_key]) for observation in observations])
        else:
            batch = {
                key: np.stack([np.asarray(observation[key]) for observation in observations])
                for key in self.shapes
            }
        actions, _ = self.model.predict(batch, deterministic=self.deterministic)
        return list(actions)
