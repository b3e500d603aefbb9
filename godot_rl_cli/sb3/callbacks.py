"""Stable-Baselines3 callbacks: `@METRIC` iterations, atomic checkpoints and stopping on request.

SB3 records an iteration's `train/*` values during `train()`, which runs after the rollout
callbacks of that iteration have fired; so an on-policy iteration is reported when the next
rollout starts (and at the end of training), when its training numbers exist.
"""

import os
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.vec_env import VecMonitor, unwrap_vec_wrapper

from godot_rl_cli import metrics
from godot_rl_cli.progress import RUNNING_EPISODES, Progress, ProgressDisplay

OFF_POLICY_ITERATION_STEPS = 1000
HUMAN_SUMMARY_INTERVAL_S = 2.0
_NOT_CUSTOM = {"episode", "terminal_observation", "TimeLimit.truncated", "env_restart"}
_LEARNER_NAMES = {
    "policy_gradient_loss": "policy_loss",
    "value_loss": "vf_loss",
    "approx_kl": "kl",
    "learning_rate": "learning_rate",
    "loss": "total_loss",
}


def save_model_atomically(model: BaseAlgorithm, path: Path) -> Path:
    """Save to a temporary file in the same directory, then rename: a reader never sees half a zip."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.stem}.{os.getpid()}.tmp.zip")
    try:
        model.save(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def learner_stats(name_to_value: Dict[str, Any]) -> Dict[str, float]:
    """The `train/*` numbers SB3 recorded, under the controller's names (entropy as a positive number)."""
    stats: Dict[str, float] = {}
    for key, value in name_to_value.items():
        if not key.startswith("train/"):
            continue
        name = key[len("train/") :]
        if name == "entropy_loss":
            stats["entropy"] = -float(value)
        else:
            stats[_LEARNER_NAMES.get(name, name)] = float(value)
    return stats


class IterationStats:
    """What happened since the last reported iteration: finished episodes and their info values."""

    def __init__(self) -> None:
        self.started_at = time.monotonic()
        self.rewards: List[float] = []
        self.lengths: List[int] = []
        self.custom: Dict[str, List[float]] = {}

    def add_episode(self, info: Dict[str, Any]) -> None:
        self.rewards.append(float(info["episode"]["r"]))
        self.lengths.append(int(info["episode"]["l"]))
        for key, value in info.items():
            if key not in _NOT_CUSTOM and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.custom.setdefault(key, []).append(float(value))

    def custom_means(self) -> Dict[str, float]:
        return {key: sum(values) / len(values) for key, values in self.custom.items()}


class ControllerMetricsCallback(BaseCallback):
    """Reports each training iteration as an `@METRIC` line, and its progress on stdout: a bar with the mean
    reward of the last RUNNING_EPISODES episodes on a terminal, else a human summary every
    HUMAN_SUMMARY_INTERVAL_S (the only display: the trainer builds the model with SB3's verbose=0).

    An iteration is one rollout and update for PPO/A2C, and `OFF_POLICY_ITERATION_STEPS` env
    steps for off-policy algorithms. Counters continue across resumes: the episode count is kept
    on the model (`controller_episodes_total`), so it is saved with it. The env must be wrapped in
    a VecMonitor: its episode counter tells, at the cost of one attribute read per step, when
    finished episodes are to be collected.
    """

    def __init__(
        self,
        policy_name: str,
        checkpoint_counter: "AtomicCheckpointCallback | None" = None,
        restarts: Callable[[], int] = lambda: 0,
        identity: Optional[Dict[str, str]] = None,
        extra_fields: Callable[[], Dict[str, float]] = dict,
    ):
        super().__init__()
        self.extra_fields = extra_fields
        self.restarts = restarts
        self.identity = identity or metrics.run_identity("sb3")
        self.policy_name = policy_name
        self.checkpoint_counter = checkpoint_counter
        self.stats = IterationStats()
        self.iteration = 0
        self.steps_at_iteration_start = 0
        self.pending = False
        self.on_policy = True
        self.training_started_at = time.monotonic()
        self.last_summary_at = 0.0
        self.since_summary = IterationStats()
        self.monitor: Optional[VecMonitor] = None
        self.episodes_seen = 0
        self.learner: Dict[str, float] = {}  # an off-policy algorithm's latest learner numbers
        self.running_rewards: deque = deque(maxlen=RUNNING_EPISODES)
        self.display: Optional[ProgressDisplay] = None
        self.budget = (0, 0)  # steps at the start of learn(), steps it trains to

    def _steps_per_iteration(self) -> int:
        if isinstance(self.model, OnPolicyAlgorithm):
            return self.model.n_steps * self.model.n_envs
        return OFF_POLICY_ITERATION_STEPS

    def _on_training_start(self) -> None:
        self.on_policy = isinstance(self.model, OnPolicyAlgorithm)
        self.monitor = unwrap_vec_wrapper(self.training_env, VecMonitor)
        if self.monitor is None:
            raise ValueError("ControllerMetricsCallback needs the training env wrapped in a VecMonitor")
        self.episodes_seen = self.monitor.episode_count
        self.iteration = self.model.num_timesteps // self._steps_per_iteration()
        self.steps_at_iteration_start = self.model.num_timesteps
        if not hasattr(self.model, "controller_episodes_total"):
            self.model.controller_episodes_total = 0
        self.training_started_at = time.monotonic()
        self.stats = IterationStats()
        self.budget = (self.model.num_timesteps, int(self.locals.get("total_timesteps") or 0))
        print(f"Using {self.model.device} device", flush=True)  # as SB3 says it with verbose=1
        self.display = ProgressDisplay()

    def _on_rollout_start(self) -> None:
        if self.pending:
            self._report()

    def _on_rollout_end(self) -> None:
        if self.on_policy:
            self.pending = True

    def _on_step(self) -> bool:
        if self.monitor.episode_count != self.episodes_seen:
            self.episodes_seen = self.monitor.episode_count
            self._collect_finished_episodes()
        if not self.on_policy:
            # SB3's logger forgets its numbers at every dump, and an EvalCallback dumps within a step
            self.learner = learner_stats(self.model.logger.name_to_value) or self.learner
            if self.model.num_timesteps - self.steps_at_iteration_start >= OFF_POLICY_ITERATION_STEPS:
                self._report()
        return True

    def _collect_finished_episodes(self) -> None:
        infos = self.locals["infos"]
        for index in np.flatnonzero(self.locals["dones"]):
            if "episode" in infos[index]:
                self.stats.add_episode(infos[index])
                self.since_summary.add_episode(infos[index])
                self.running_rewards.append(self.stats.rewards[-1])
                self.model.controller_episodes_total += 1

    def _on_training_end(self) -> None:
        if self.pending or self.model.num_timesteps > self.steps_at_iteration_start:
            self._report()
        if self.display is not None:
            self.display.close()

    def _report(self) -> None:
        self.pending = False
        now = time.monotonic()
        steps = self.model.num_timesteps - self.steps_at_iteration_start
        self.iteration += 1
        payload = self._payload(steps, now - self.stats.started_at, now - self.training_started_at)
        extra = self.extra_fields()  # e.g. an evaluation's numbers: top level, and charted as custom metrics
        payload.update(extra)
        payload["custom_metrics"].update(extra)
        metrics.emit_metric(payload)
        if self.display is not None and self.display.live:
            self.display.show(self._progress(payload))
        elif now - self.last_summary_at >= HUMAN_SUMMARY_INTERVAL_S:
            self.last_summary_at = now
            print(human_summary(payload, self.since_summary), flush=True)
            self.since_summary = IterationStats()
        self.steps_at_iteration_start = self.model.num_timesteps
        self.stats = IterationStats()

    def _progress(self, payload: Dict[str, Any]) -> Progress:
        start, end = self.budget
        rewards = self.running_rewards
        return Progress(
            iteration=self.iteration,
            steps=self.model.num_timesteps,
            reward=sum(rewards) / len(rewards) if rewards else None,
            steps_per_s=payload["env_throughput"],
            done=(self.model.num_timesteps - start) / (end - start) if end > start else None,
        )

    def _payload(self, steps: int, iteration_seconds: float, total_seconds: float) -> Dict[str, Any]:
        return iteration_payload(
            self.stats,
            policy_name=self.policy_name,
            training_iteration=self.iteration,
            timesteps_total=self.model.num_timesteps,
            episodes_total=self.model.controller_episodes_total,
            env_steps_this_iter=steps,
            time_this_iter_s=iteration_seconds,
            time_total_s=total_seconds,
            learner=learner_stats(self.model.logger.name_to_value) if self.on_policy else self.learner,
            checkpoints=self.checkpoint_counter.saved if self.checkpoint_counter else 0,
            env_restarts=self.restarts(),
            identity=self.identity,
        )


def iteration_payload(
    stats: IterationStats,
    *,
    policy_name: str,
    training_iteration: int,
    timesteps_total: int,
    episodes_total: int,
    env_steps_this_iter: int,
    time_this_iter_s: float,
    time_total_s: float,
    learner: Dict[str, float],
    checkpoints: int,
    env_restarts: int,
    identity: Dict[str, str],
) -> Dict[str, Any]:
    """The iteration payload for the episodes in `stats` (reward statistics are None when none ended), with
    the games relaunched so far and the run's identity (`metrics.run_identity`)."""
    custom = stats.custom_means()
    policy = metrics.policy_metrics(
        **metrics.episode_statistics(stats.rewards, stats.lengths),
        completed_episodes=len(stats.rewards),
        learner_stats=learner,
        custom_metrics=custom,
    )
    return metrics.iteration_payload(
        training_iteration=training_iteration,
        timesteps_total=timesteps_total,
        episodes_total=episodes_total,
        episodes_this_iter=len(stats.rewards),
        time_this_iter_s=time_this_iter_s,
        time_total_s=time_total_s,
        env_steps_this_iter=env_steps_this_iter,
        custom_metrics=custom,
        policies={policy_name: policy},
        checkpoints=checkpoints,
        env_restarts=env_restarts,
        **identity,
        **metrics.run_episode_fields(policy),
    )


def human_summary(payload: Dict[str, Any], recent: IterationStats) -> str:
    """One progress line: counters from `payload`, episode statistics of `recent` (the episodes since the last
    line)."""

    def number(values: List[float], digits: int = 2) -> str:
        return f"{np.mean(values):.{digits}f}" if values else "-"

    rewards = recent.rewards
    spread = f" [{min(rewards):.2f}, {max(rewards):.2f}]" if rewards else ""
    return (
        f"iteration {payload['training_iteration']} | steps {payload['timesteps_total']} | episodes "
        f"{payload['episodes_total']} | last {len(rewards)} episodes: reward mean {number(rewards)}{spread}, "
        f"length {number(recent.lengths, 1)} | {payload['env_throughput'] or 0:.0f} steps/s"
    )


class AtomicCheckpointCallback(BaseCallback):
    """Saves `<directory>/rl_model_<steps>_steps.zip` each time the step count crosses a multiple of
    `frequency`, then calls `after_save(model, path)` (the manifest)."""

    def __init__(
        self,
        directory: Path,
        frequency: int,
        prefix: str = "rl_model",
        after_save: Callable[[BaseAlgorithm, Path], Any] = lambda model, path: None,
    ):
        super().__init__()
        self.after_save = after_save
        self.directory = Path(directory)
        self.frequency = frequency
        self.prefix = prefix
        self.saved = 0
        self.last_path: Optional[Path] = None

    def _on_training_start(self) -> None:
        self.next_save_at = (self.model.num_timesteps // self.frequency + 1) * self.frequency

    def _on_step(self) -> bool:
        if self.model.num_timesteps >= self.next_save_at:
            path = self.directory / f"{self.prefix}_{self.model.num_timesteps}_steps.zip"
            self.last_path = save_model_atomically(self.model, path)
            self.after_save(self.model, path)
            self.saved += 1
            self.next_save_at = (self.model.num_timesteps // self.frequency + 1) * self.frequency
            print(f"Saved checkpoint {path}", flush=True)
        return True


class StopWhenRequested(BaseCallback):
    """Ends `learn()` cleanly at the next step once `requested` is set (by the SIGINT handler)."""

    def __init__(self) -> None:
        super().__init__()
        self.requested = False

    def _on_step(self) -> bool:
        return not self.requested
