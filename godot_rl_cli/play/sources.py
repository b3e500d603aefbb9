"""Where a playback's actions come from: random samples (the simulator) or a trained policy (the interfaces).

An `ActionSource` is bound to each game it plays (after every connect, so a restarted or different
game is checked again): `bind()` checks that its spaces fit the game's, raising `PlaybackError` with
both shapes when they do not, and returns the policy name shown for each agent. `act()` turns the
game's per-agent observations into per-agent actions in the game's own keys (`{"move": [0.1, -0.4]}`).
Model sources decode actions the way training does (`ActionEncoder`); their framework code lives in
`sb3_source`, `rllib_source` and `onnx_source`, imported only when used.
"""

from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from gymnasium import spaces

from godot_rl_cli.errors import UserError, format_error
from godot_rl_cli.game.spaces import ActionEncoder, flat_action_space


class PlaybackError(Exception):
    """The model and the game do not fit (spaces, policy names); `str()` is one line."""

    def __init__(self, what: str, how: Optional[str] = None):
        super().__init__(format_error(what, how))


class ActionSource:
    """Base class: `kind` and `describe()` go into events; subclasses implement `bind` and `act`."""

    kind = "source"

    def describe(self) -> str:
        return self.kind

    def bind(self, game) -> List[str]:
        raise NotImplementedError

    def act(self, observations: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        raise NotImplementedError


class RandomActions(ActionSource):
    """Uniform random actions from each agent's own action space (discrete and continuous heads alike)."""

    kind = "random"

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.spaces: List[spaces.Dict] = []

    def describe(self) -> str:
        return "random actions"

    def bind(self, game) -> List[str]:
        self.spaces = list(game.action_spaces)
        for space in self.spaces:
            space.seed(int(self.rng.integers(2**31)))
        return list(game.agent_policy_names)

    def act(self, observations: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        return [
            {name: np.asarray(value).tolist() for name, value in space.sample().items()}
            for space in self.spaces
        ]


class ModelActions(ActionSource):
    """A trained policy: `predict()` gives one flat action per agent (discrete heads as ints, then
    continuous values, in the game's head order), encoded into the game's keys as training does."""

    deterministic = True

    def bind(self, game) -> List[str]:
        self.encoders = [ActionEncoder(heads) for heads in game.action_spaces]
        self.key_order = list(game.observation_key_order)
        return self.check(game)

    def check(self, game) -> List[str]:
        """Raise PlaybackError unless the model fits `game`; return each agent's policy name."""
        raise NotImplementedError

    def predict(self, observations: List[Dict[str, Any]]) -> Sequence[Any]:
        raise NotImplementedError

    def act(self, observations: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        actions = self.predict(observations)
        return [
            encoder.encode(np.asarray(action)[None])[0] for encoder, action in zip(self.encoders, actions)
        ]


# --- helpers shared by the model sources -----------------------------------------------------------


def game_action_space(game, index: int) -> Optional[spaces.Space]:
    """The flat action space trainers use for agent `index`; None for mixed discrete and continuous heads."""
    try:
        return flat_action_space(game.action_spaces[index])
    except UserError:
        return None


def describe_space(space: Optional[spaces.Space]) -> str:
    """Short text for a space: `Box(4,)`, `Discrete(3)`, `MultiDiscrete([3, 2])`, `{obs: (4,)}`."""
    if space is None:
        return "mixed discrete and continuous heads"
    if isinstance(space, spaces.Dict):
        return (
            "{"
            + ", ".join(
                f"{key}: {tuple(sub.shape) if sub.shape else describe_space(sub)}"
                for key, sub in space.spaces.items()
            )
            + "}"
        )
    if isinstance(space, spaces.Box):
        return f"Box{tuple(space.shape)}"
    if isinstance(space, spaces.Discrete):
        return f"Discrete({int(space.n)})"
    if isinstance(space, spaces.MultiDiscrete):
        return f"MultiDiscrete({[int(size) for size in space.nvec]})"
    return type(space).__name__


def describe_game_observations(game, index: int = 0) -> str:
    """The game's observation keys in its own order, with their shapes."""
    space = game.observation_spaces[index]
    return (
        "{"
        + ", ".join(
            f"{key}: {tuple(space[key].shape) or describe_space(space[key])}"
            for key in game.observation_key_order
        )
        + "}"
    )


def same_action_space(model_space: spaces.Space, game_space: Optional[spaces.Space]) -> bool:
    """Same kind and size; bounds are not compared (a Godot game's continuous actions are always [-1, 1])."""
    if game_space is None or type(model_space) is not type(game_space):
        return False
    if isinstance(model_space, spaces.Discrete):
        return int(model_space.n) == int(game_space.n)
    if isinstance(model_space, spaces.MultiDiscrete):
        return list(model_space.nvec) == list(game_space.nvec)
    return tuple(model_space.shape) == tuple(game_space.shape)


def mismatch(model: str, model_observations: str, model_actions: str, game, index: int = 0) -> PlaybackError:
    """The one error for a model that does not fit the game, naming both sides' shapes."""
    return PlaybackError(
        f"{model} does not fit the game: the model takes observations {model_observations} "
        f"and gives actions {model_actions}, "
        f"the game sends observations {describe_game_observations(game, index)} and takes actions "
        f"{describe_space(game_action_space(game, index))}",
        "play the model with the game it was trained on",
    )


def map_agents_to_policies(
    agent_policy_names: Sequence[str], available: Sequence[str], forced: Optional[str] = None
) -> List[str]:
    """Each agent's policy: `forced`; else the one named as the game names the agent's; else the only one."""
    if forced is not None:
        return [forced] * len(agent_policy_names)
    chosen = []
    for name in agent_policy_names:
        if name in available:
            chosen.append(name)
        elif len(available) == 1:
            chosen.append(available[0])
        else:
            raise PlaybackError(
                f"the game's agents use the policies {', '.join(sorted(set(agent_policy_names)))} "
                f"but the checkpoint holds {', '.join(available)}",
                "pass --policy ID to play one of them for every agent",
            )
    return chosen
