"""`--inference`: run a saved policy deterministically, report its episodes, train nothing, save nothing."""

import time
from typing import Callable, Dict

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecEnv

from godot_rl_cli import metrics
from godot_rl_cli.sb3.callbacks import IterationStats, human_summary, iteration_payload

INFERENCE_ITERATION_STEPS = 1000


def run_inference(
    model: BaseAlgorithm,
    env: VecEnv,
    timesteps: int,
    policy_name: str,
    should_stop: Callable[[], bool],
    restarts: Callable[[], int],
    identity: Dict[str, str],
) -> int:
    """Step the deterministic policy for `timesteps` env steps; one iteration line per 1000 steps. Returns
    episodes run."""
    started = time.monotonic()
    iteration_started, iteration_steps = started, 0
    stats, steps, iteration, episodes = IterationStats(), 0, 0, 0
    observations = env.reset()
    while steps < timesteps and not should_stop():
        actions, _ = model.predict(observations, deterministic=True)
        observations, _, dones, infos = env.step(actions)
        steps += env.num_envs
        iteration_steps += env.num_envs
        for index in np.flatnonzero(dones):
            if "episode" in infos[index]:
                stats.add_episode(infos[index])
        if iteration_steps >= INFERENCE_ITERATION_STEPS or steps >= timesteps:
            iteration += 1
            episodes += len(stats.rewards)
            now = time.monotonic()
            payload = iteration_payload(
                stats,
                policy_name=policy_name,
                training_iteration=iteration,
                timesteps_total=steps,
                episodes_total=episodes,
                env_steps_this_iter=iteration_steps,
                time_this_iter_s=now - iteration_started,
                time_total_s=now - started,
                learner={},
                checkpoints=0,
                env_restarts=restarts(),
                identity=identity,
            )
            metrics.emit_metric({**payload, "mode": "inference"})
            print(human_summary(payload, stats), flush=True)
            stats, iteration_started, iteration_steps = IterationStats(), now, 0
    return episodes
