"""Behaviour cloning: supervised learning of the expert's actions by the policy that RL then continues.

Pomerleau's behaviour cloning (ALVINN, 1989) in its maximum-likelihood form, as the `imitation` library
defines it: minimise the negative log-likelihood of the expert's action under the policy's own action
distribution, minus a small entropy bonus that keeps the distribution from collapsing before RL,

    loss = -E[log pi(a_expert | s)] - ent_coef * E[H(pi(. | s))],

over shuffled minibatches of the demo steps, for a number of epochs. A held-out share of the steps is never
trained on; its loss and accuracy (the policy's most likely action equals the expert's, within
ACTION_TOLERANCE per value for continuous actions) tell whether the policy generalises or memorises.

The trainer works on any policy through a `PolicyAdapter` (SB3's actor-critic policy here, an RLlib torch
policy in `rllib_bc.py`), so both trainers clone the same way.
"""

import time
from dataclasses import dataclass
from typing import Callable, Iterable, List, Optional, Protocol, Tuple

import numpy as np
import torch

from godot_rl_cli.demos.files import OBS_KEY, Demonstrations

ACTION_TOLERANCE = 0.1  # a continuous action counts as right when every value is this close to the expert's


class PolicyAdapter(Protocol):
    """What behaviour cloning needs from a policy."""

    def parameters(self) -> Iterable[torch.nn.Parameter]: ...

    def evaluate(self, obs: torch.Tensor, actions: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """Log-likelihood of `actions`, entropy and most likely action, one row per observation."""

    def set_training(self, training: bool) -> None: ...


class SB3PolicyAdapter:
    """SB3's ActorCriticPolicy (PPO, A2C) over the game's Dict observation `{"obs": ...}`."""

    def __init__(self, policy) -> None:
        self.policy = policy
        self.device = policy.device

    def parameters(self) -> Iterable[torch.nn.Parameter]:
        return self.policy.parameters()

    def evaluate(self, obs: torch.Tensor, actions: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        distribution = self.policy.get_distribution({OBS_KEY: obs})
        return distribution.log_prob(actions), distribution.entropy(), distribution.mode()

    def set_training(self, training: bool) -> None:
        self.policy.set_training_mode(training)


@dataclass(frozen=True)
class BCSettings:
    epochs: int
    batch_size: int = 64
    learning_rate: float = 1e-3
    ent_coef: float = 1e-3
    validation_share: float = 0.1
    seed: int = 0


@dataclass
class EpochStats:
    """One epoch's numbers: training-set means over its minibatches, validation numbers over the held-out
    steps (None when too few steps to hold any out), `action_error` (mean absolute) for continuous actions."""

    epoch: int
    loss: float
    log_likelihood: float
    entropy: float
    accuracy: float
    validation_loss: Optional[float]
    validation_accuracy: Optional[float]
    action_error: Optional[float]
    train_steps: int
    validation_steps: int
    seconds: float

    def learner(self) -> dict:
        """The numbers as the controller's learner stats (charted per policy)."""
        values = {
            "bc_loss": self.loss,
            "bc_log_likelihood": self.log_likelihood,
            "bc_accuracy": self.accuracy,
            "entropy": self.entropy,
            "bc_validation_loss": self.validation_loss,
            "bc_validation_accuracy": self.validation_accuracy,
            "bc_action_error": self.action_error,
        }
        return {key: value for key, value in values.items() if value is not None}


def split(steps: int, share: float, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """Shuffled indices of the training and held-out steps (at least one training step)."""
    order = np.random.default_rng(seed).permutation(steps)
    held_out = min(int(round(steps * share)), steps - 1)
    return order[held_out:], order[:held_out]


def _correct(mode: torch.Tensor, actions: torch.Tensor, discrete: bool) -> torch.Tensor:
    if discrete:
        same = mode.long() == actions
        return same if same.dim() == 1 else same.all(dim=-1)
    return ((mode.clamp(-1.0, 1.0) - actions).abs() <= ACTION_TOLERANCE).all(dim=-1)


class BehaviourCloning:
    """Trains `adapter` on `demos`; `run()` calls `on_epoch` after each epoch and stops early (after the
    minibatch in progress) once `should_stop()` is true."""

    def __init__(self, adapter: PolicyAdapter, demos: Demonstrations, settings: BCSettings, device="cpu"):
        self.adapter = adapter
        self.settings = settings
        self.discrete = demos.spaces.discrete
        self.obs = torch.as_tensor(demos.observations, device=device)
        self.actions = torch.as_tensor(demos.actions, device=device)
        self.train_index, self.validation_index = split(
            len(self.obs), settings.validation_share, settings.seed
        )
        self.optimizer = torch.optim.Adam(adapter.parameters(), lr=settings.learning_rate)
        self.rng = np.random.default_rng(settings.seed + 1)

    def _loss(self, index: np.ndarray) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        actions = self.actions[index]
        log_prob, entropy, mode = self.adapter.evaluate(self.obs[index], actions)
        loss = -log_prob.mean() - self.settings.ent_coef * entropy.mean()
        return loss, log_prob.mean(), entropy.mean(), _correct(mode, actions, self.discrete)

    def _epoch(self, epoch: int, should_stop: Callable[[], bool]) -> EpochStats:
        started = time.monotonic()
        self.adapter.set_training(True)
        sums = np.zeros(4)
        batches = 0
        order = self.rng.permutation(self.train_index)
        for start in range(0, len(order), self.settings.batch_size):
            loss, log_likelihood, entropy, correct = self._loss(
                order[start : start + self.settings.batch_size]
            )
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            sums += [loss.item(), log_likelihood.item(), entropy.item(), correct.float().mean().item()]
            batches += 1
            if should_stop():
                break
        self.adapter.set_training(False)
        loss, log_likelihood, entropy, accuracy = sums / max(1, batches)
        validation_loss = validation_accuracy = action_error = None
        with torch.no_grad():
            if len(self.validation_index):
                held_loss, _, _, held_correct = self._loss(self.validation_index)
                validation_loss, validation_accuracy = held_loss.item(), held_correct.float().mean().item()
            if not self.discrete:
                measured = self.validation_index if len(self.validation_index) else self.train_index
                _, _, mode = self.adapter.evaluate(self.obs[measured], self.actions[measured])
                action_error = (mode.clamp(-1.0, 1.0) - self.actions[measured]).abs().mean().item()
        return EpochStats(
            epoch=epoch,
            loss=loss,
            log_likelihood=log_likelihood,
            entropy=entropy,
            accuracy=accuracy,
            validation_loss=validation_loss,
            validation_accuracy=validation_accuracy,
            action_error=action_error,
            train_steps=len(self.train_index),
            validation_steps=len(self.validation_index),
            seconds=time.monotonic() - started,
        )

    def run(
        self, on_epoch: Callable[[EpochStats], None], should_stop: Callable[[], bool] = lambda: False
    ) -> List[EpochStats]:
        history: List[EpochStats] = []
        for epoch in range(1, self.settings.epochs + 1):
            if should_stop():
                break
            history.append(self._epoch(epoch, should_stop))
            on_epoch(history[-1])
        return history


def epoch_line(stats: EpochStats, epochs: int) -> str:
    """The human progress line of one epoch."""
    held_out = (
        f", held-out loss {stats.validation_loss:.3f} accuracy {stats.validation_accuracy:.3f}"
        if stats.validation_loss is not None
        else ""
    )
    error = f", action error {stats.action_error:.3f}" if stats.action_error is not None else ""
    return (
        f"behaviour cloning epoch {stats.epoch}/{epochs} | loss {stats.loss:.3f} "
        f"accuracy {stats.accuracy:.3f}"
        f"{held_out}{error} | {stats.train_steps} training steps, {stats.validation_steps} held out"
    )
