"""Prototype, not part of the suite: how fast our RLlib PPO would be with an SB3-like sampler of our own.

    .venv/bin/python bench/rllib_batched_sampler.py                # 30 iterations on section 5's game

Section 5's game and settings (bench/rllib_breakdown.py's `section5_config`, our script's AlgorithmConfig),
the same RLlib policy and learner; only RLlib's sampler (EnvRunnerV2: connectors, collectors, per-agent
episodes) is replaced by a loop that steps the game with one batched forward of the policy's torch model for
all agents, keeps numpy lists, and hands each finished (or cut) trajectory to RLlib's own
`postprocess_trajectory` (PPO's GAE) and the batch to `train_one_step`. It assumes one policy and shared
episodes (BallChase's agents all end together). Prints agent steps per second, the time per agent step by
phase and the mean episode return (random play about 2, learnt about 60), to compare the learning with
rllib_training_script.py's.
"""

import argparse
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Dict, List

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rllib_breakdown import N_AGENTS, section5_config  # noqa: E402

COLUMNS = ("obs", "actions", "rewards", "logp", "vf_preds", "dist_inputs")


class BatchedSampler:
    """Steps one game for one policy: a forward for all agents per step, trajectories built at episode end."""

    def __init__(self, algo, env, timings: Dict[str, float]):
        self.policy_id = next(iter(algo.config.policies))
        self.policy = algo.get_policy(self.policy_id)
        self.env = env
        self.timings = timings
        self.returns: deque = deque(maxlen=100)
        self.episode = 0
        self.obs = self._stack(env.reset()[0])
        self.trajectories = self._empty()

    @staticmethod
    def _stack(by_agent: Dict[int, np.ndarray]) -> np.ndarray:
        return np.stack([by_agent[index] for index in range(N_AGENTS)])

    @staticmethod
    def _empty() -> Dict[str, List[list]]:
        return {column: [[] for _ in range(N_AGENTS)] for column in COLUMNS}

    def _forward(self, obs: np.ndarray):
        import torch

        model = self.policy.model
        with torch.no_grad():
            inputs, _ = model({"obs": torch.from_numpy(obs)})
            values = model.value_function()
            distribution = self.policy.dist_class(inputs, model)
            actions = distribution.sample()
            return actions.numpy(), distribution.logp(actions).numpy(), values.numpy(), inputs.numpy()

    def sample(self, env_steps: int):
        """A MultiAgentBatch of `env_steps` game steps, postprocessed by RLlib."""
        from ray.rllib.policy.sample_batch import MultiAgentBatch, concat_samples

        batches = []
        for _ in range(env_steps):
            started = time.perf_counter()
            actions, logp, values, inputs = self._forward(self.obs)
            stepped = time.perf_counter()
            obs, rewards, terminated, _, _ = self.env.step({i: actions[i] for i in range(N_AGENTS)})
            self.timings["game and env"] += time.perf_counter() - stepped
            self.timings["forward"] += stepped - started
            row = (self.obs, actions, [rewards[i] for i in range(N_AGENTS)], logp, values, inputs)
            for column, values_by_agent in zip(COLUMNS, row, strict=True):
                for index in range(N_AGENTS):
                    self.trajectories[column][index].append(values_by_agent[index])
            if terminated["__all__"]:
                batches += self._postprocess(self._stack(obs), terminated=True)
                self.obs = self._stack(self.env.reset()[0])
            else:
                self.obs = self._stack(obs)
        if self.trajectories["rewards"][0]:
            batches += self._postprocess(self.obs, terminated=False)
        return MultiAgentBatch({self.policy_id: concat_samples(batches)}, env_steps)

    def _postprocess(self, last_obs: np.ndarray, terminated: bool) -> list:
        from ray.rllib.policy.sample_batch import SampleBatch

        started = time.perf_counter()
        batches = []
        for index in range(N_AGENTS):
            column = {name: np.asarray(self.trajectories[name][index]) for name in COLUMNS}
            length = len(column["rewards"])
            ends = np.zeros(length, dtype=bool)
            ends[-1] = True
            if terminated:
                self.returns.append(float(column["rewards"].sum()))
            batch = SampleBatch(
                {
                    SampleBatch.OBS: column["obs"],
                    SampleBatch.NEXT_OBS: np.concatenate([column["obs"][1:], last_obs[index][None]]),
                    SampleBatch.ACTIONS: column["actions"],
                    SampleBatch.REWARDS: column["rewards"].astype(np.float32),
                    SampleBatch.TERMINATEDS: ends & terminated,
                    SampleBatch.TRUNCATEDS: ends & (not terminated),
                    SampleBatch.ACTION_LOGP: column["logp"],
                    SampleBatch.ACTION_PROB: np.exp(column["logp"]),
                    SampleBatch.VF_PREDS: column["vf_preds"],
                    SampleBatch.ACTION_DIST_INPUTS: column["dist_inputs"],
                    SampleBatch.EPS_ID: np.full(length, self.episode * N_AGENTS + index),
                    SampleBatch.AGENT_INDEX: np.full(length, index),
                    SampleBatch.T: np.arange(length),
                }
            )
            batches.append(self.policy.postprocess_trajectory(batch))
        self.episode += 1
        self.trajectories = self._empty()
        self.timings["postprocessing (GAE)"] += time.perf_counter() - started
        return batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=30, help="iterations after one warm-up")
    args = parser.parse_args()
    import ray
    from ray.rllib.execution.train_ops import train_one_step
    from ray.tune.logger import UnifiedLogger

    from godot_rl_cli.rllib.env import GodotMultiAgentEnv
    from godot_rl_cli.threads import configure_torch_threads

    configure_torch_threads(None)
    config = section5_config({})
    env_steps = int(config.train_batch_size)
    env_config = dict(config.env_config, port=int(config.env_config["port"]) + 4)
    config.env_runners(create_local_env_runner=False)  # our sampler's game replaces RLlib's
    ray.init(address="local", include_dashboard=False, num_cpus=2, configure_logging=False)
    timings = dict.fromkeys(("forward", "game and env", "postprocessing (GAE)", "learning"), 0.0)
    env = GodotMultiAgentEnv(env_config)
    try:
        with tempfile.TemporaryDirectory(prefix="batched-") as directory:
            algo = config.build_algo(logger_creator=lambda c: UnifiedLogger(c, directory, loggers=None))
            sampler = BatchedSampler(algo, env, timings)
            train_one_step(algo, sampler.sample(env_steps))  # warm-up
            timings.update(dict.fromkeys(timings, 0.0))
            started = time.perf_counter()
            for iteration in range(1, args.iterations + 1):
                batch = sampler.sample(env_steps)
                learning = time.perf_counter()
                train_one_step(algo, batch)
                timings["learning"] += time.perf_counter() - learning
                if iteration % 5 == 0 and sampler.returns:
                    mean = sum(sampler.returns) / len(sampler.returns)
                    print(
                        f"iteration {iteration}: mean return of the last 100 episodes {mean:.1f}", flush=True
                    )
            wall = time.perf_counter() - started
            algo.stop()
    finally:
        env.close()
        ray.shutdown()
    agent_steps = args.iterations * env_steps * N_AGENTS
    phases = ", ".join(f"{name} {seconds / agent_steps * 1e6:.0f}" for name, seconds in timings.items())
    print(f"{agent_steps / wall:.0f} agent steps/s; µs per agent step: {phases}")


if __name__ == "__main__":
    main()
