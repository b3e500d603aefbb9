"""The one table of algorithms: what trains each, which action spaces it accepts, how its ONNX head is built.

Read by the SB3 options (`--algo`, hyperparameters), the RLlib YAML check and config builder, and both
ONNX exporters. Classes are named as import paths and resolved on use, so reading the table imports
neither Stable-Baselines3 nor Ray.
"""

import importlib
from dataclasses import dataclass, field
from typing import Any, Dict, FrozenSet, Optional, Tuple

DISCRETE = "discrete"  # one Discrete head
MULTI_DISCRETE = "multi-discrete"  # several Discrete heads
CONTINUOUS = "continuous"  # Box heads

# How `output` is computed in the exported graph.
DISTRIBUTION = "distribution inputs"  # logits per head, or the means of continuous actions
Q_VALUES = "q-values"  # argmax is the greedy action
SQUASHED_MEAN = "tanh-squashed mean"  # SAC's deterministic action
DETERMINISTIC_ACTOR = "deterministic actor"  # TD3 / DDPG

ALL_ACTIONS = frozenset({DISCRETE, MULTI_DISCRETE, CONTINUOUS})
ACTION_TEXT = {
    DISCRETE: "a single discrete action head",
    MULTI_DISCRETE: "several discrete action heads",
    CONTINUOUS: "continuous actions",
}


@dataclass(frozen=True)
class Algorithm:
    name: str
    onnx_output: str
    sb3_class: Optional[str] = None
    sb3_policy_class: Optional[str] = None
    sb3_actions: FrozenSet[str] = frozenset()
    sb3_hyperparameters: Tuple[str, ...] = ()
    sb3_defaults: Dict[str, Any] = field(default_factory=dict)
    rllib_config_class: Optional[str] = None


_ON_POLICY = ("learning_rate", "n_steps", "gamma", "gae_lambda", "ent_coef", "vf_coef", "max_grad_norm")
# Godot RL Agents' own SB3 example for PPO; SB3's defaults otherwise, with a replay buffer small enough
# for image observations.
_GODOT_ON_POLICY = {"learning_rate": 3e-4, "n_steps": 32, "ent_coef": 1e-4}
_SMALL_REPLAY = {"buffer_size": 100_000, "learning_starts": 100}

ALGORITHMS: Dict[str, Algorithm] = {
    algorithm.name: algorithm
    for algorithm in (
        Algorithm(
            "ppo",
            DISTRIBUTION,
            "stable_baselines3.PPO",
            "stable_baselines3.common.policies.ActorCriticPolicy",
            ALL_ACTIONS,
            _ON_POLICY + ("batch_size", "n_epochs", "clip_range"),
            _GODOT_ON_POLICY,
            "ray.rllib.algorithms.ppo.PPOConfig",
        ),
        Algorithm(
            "a2c",
            DISTRIBUTION,
            "stable_baselines3.A2C",
            "stable_baselines3.common.policies.ActorCriticPolicy",
            ALL_ACTIONS,
            _ON_POLICY,
            _GODOT_ON_POLICY,
        ),
        Algorithm(
            "dqn",
            Q_VALUES,
            "stable_baselines3.DQN",
            "stable_baselines3.dqn.policies.DQNPolicy",
            frozenset({DISCRETE}),
            ("learning_rate", "batch_size", "gamma", "max_grad_norm"),
            _SMALL_REPLAY,
            "ray.rllib.algorithms.dqn.DQNConfig",
        ),
        Algorithm(
            "sac",
            SQUASHED_MEAN,
            "stable_baselines3.SAC",
            "stable_baselines3.sac.policies.SACPolicy",
            frozenset({CONTINUOUS}),
            ("learning_rate", "batch_size", "gamma", "ent_coef"),
            _SMALL_REPLAY,
            "ray.rllib.algorithms.sac.SACConfig",
        ),
        Algorithm(
            "td3",
            DETERMINISTIC_ACTOR,
            "stable_baselines3.TD3",
            "stable_baselines3.td3.policies.TD3Policy",
            frozenset({CONTINUOUS}),
            ("learning_rate", "batch_size", "gamma"),
            _SMALL_REPLAY,
        ),
        Algorithm(
            "ddpg",
            DETERMINISTIC_ACTOR,
            "stable_baselines3.DDPG",
            "stable_baselines3.td3.policies.TD3Policy",
            frozenset({CONTINUOUS}),
            ("learning_rate", "batch_size", "gamma"),
            _SMALL_REPLAY,
        ),
        Algorithm("appo", DISTRIBUTION, rllib_config_class="ray.rllib.algorithms.appo.APPOConfig"),
        Algorithm("impala", DISTRIBUTION, rllib_config_class="ray.rllib.algorithms.impala.IMPALAConfig"),
    )
}

SB3_ALGORITHMS = tuple(name for name, algorithm in ALGORITHMS.items() if algorithm.sb3_class)
RLLIB_ALGORITHMS = tuple(
    name.upper() for name, algorithm in ALGORITHMS.items() if algorithm.rllib_config_class
)
SB3_HYPERPARAMETERS = tuple(
    dict.fromkeys(name for algorithm in ALGORITHMS.values() for name in algorithm.sb3_hyperparameters)
)


def resolve(path: str) -> Any:
    """The class named by a dotted import path."""
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def sb3_class(name: str) -> type:
    return resolve(ALGORITHMS[name].sb3_class)


def sb3_policy_class(name: str) -> type:
    return resolve(ALGORITHMS[name].sb3_policy_class)


def rllib_config_class(name: str) -> type:
    return resolve(ALGORITHMS[name.lower()].rllib_config_class)
