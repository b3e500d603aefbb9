"""Random-action stepping of one game through the trainers' own GodotVecEnv: the measuring loop the engine
speed benchmarks (godot3_speed.py, godot4_speed.py) share."""

import time
from typing import Any, Callable, Dict, Optional

import numpy as np

from godot_rl_cli.game.settings import GameSettings
from godot_rl_cli.sb3.vec_env import GodotVecEnv


def random_action_rates(
    settings: GameSettings,
    seconds: float,
    warmup_steps: int = 10,
    probe: Optional[Callable[[], Any]] = None,
) -> Dict[str, Any]:
    """Start the game, step it with random actions for `warmup_steps`, then for about `seconds`.

    Returns game steps/s (`steps`), agent steps/s (`agent_steps`, every agent's step counted), the
    seconds from launch to the game's env_info (`start`), and `probe()`'s result (`probe`), called while
    the game still runs (a reading of the live process)."""
    launched = time.perf_counter()
    env = GodotVecEnv(settings)
    start_s = time.perf_counter() - launched
    try:
        rng = np.random.default_rng(0)
        env.reset()
        actions = env.action_space.shape
        for _ in range(warmup_steps):
            env.step(rng.uniform(-1, 1, (env.num_envs, *actions)).astype(np.float32))
        calls = 0
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            env.step(rng.uniform(-1, 1, (env.num_envs, *actions)).astype(np.float32))
            calls += 1
        elapsed = time.perf_counter() - started
        probed = probe() if probe else None
    finally:
        env.close()
    return {
        "steps": calls / elapsed,
        "agent_steps": calls * env.num_envs / elapsed,
        "start": start_s,
        "probe": probed,
    }
