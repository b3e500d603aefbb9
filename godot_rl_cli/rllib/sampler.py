"""A batched sampler for RLlib's PPO on Godot games, in place of RLlib's per-agent one (EnvRunnerV2).

RLlib's old-stack sampler runs every agent's observation and action through connectors, collectors and
episode objects of its own; on a Godot game, where every agent acts every step, that costs more per agent
step than the game and the learner together (bench/rllib_breakdown.py). This one steps the worker's games
with one forward of each policy's model for all the agents mapped to it, keeps each agent's trajectory as
plain lists, and hands each finished or cut trajectory to the policy's own `postprocess_trajectory` (PPO's
GAE, bootstrapped at a cut). Its batches hold the columns RLlib's sampler gives, and its episode metrics are
RLlib's RolloutMetrics, after the callbacks' `on_episode_end` on its episode (the agents' info values as
custom metrics, self-play's outcomes); the mapping function gets its episode too (self-play draws an opponent
per episode). So results, the `@METRIC` line, restarts and the learner are unchanged.

`BatchedRolloutWorker` uses it where it gives what RLlib's sampler gives: PPO policies with feed-forward
models (RLlib's, or the controller's `tui_cnn`/`tui_grn`), RLlib's stochastic exploration, `batch_mode:
truncate_episodes`, no observation filter, preprocessor, reward clipping or observation function. Elsewhere
(the evaluation runner, which samples complete episodes, or a YAML that needs one of those) RLlib's own
sampler runs, as it does with `sampler: rllib` in the YAML.
"""

import itertools
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from ray.rllib.algorithms.ppo.ppo_torch_policy import PPOTorchPolicy
from ray.rllib.evaluation.metrics import RolloutMetrics
from ray.rllib.evaluation.rollout_worker import RolloutWorker
from ray.rllib.evaluation.sampler import SamplerInput
from ray.rllib.policy.sample_batch import MultiAgentBatch, SampleBatch, concat_samples
from ray.rllib.utils.exploration.stochastic_sampling import StochasticSampling
from ray.rllib.utils.filter import NoFilter
from ray.rllib.utils.spaces.space_utils import clip_action, unsquash_action

from godot_rl_cli.errors import print_warning
from godot_rl_cli.rllib.config import CONTROLLER_MODEL_KEYS
from godot_rl_cli.rllib.env import AgentId, agent_index

STEP_COLUMNS = (
    SampleBatch.OBS,
    SampleBatch.NEXT_OBS,
    SampleBatch.ACTIONS,
    SampleBatch.REWARDS,
    SampleBatch.INFOS,
    SampleBatch.VF_PREDS,
    SampleBatch.ACTION_DIST_INPUTS,
    SampleBatch.ACTION_LOGP,
)
# What a PPO policy's view requirements may ask for: the step columns, the ones built per trajectory and
# the ones its postprocessing adds. A policy that asks for more (previous actions, states): RLlib samples it.
SUPPORTED_COLUMNS = {
    *STEP_COLUMNS,
    SampleBatch.TERMINATEDS,
    SampleBatch.TRUNCATEDS,
    SampleBatch.EPS_ID,
    SampleBatch.UNROLL_ID,
    SampleBatch.AGENT_INDEX,
    SampleBatch.T,
    SampleBatch.VALUES_BOOTSTRAPPED,
    "advantages",
    "value_targets",
}
Key = Tuple[int, AgentId]  # (the game's index among this worker's envs, the agent's id in it)


def unsupported_settings(config: Any) -> Optional[str]:
    """Why the batched sampler cannot stand in for RLlib's under this AlgorithmConfig, or None."""
    model = config.model or {}
    reasons = {
        "batch_mode: complete_episodes": config.batch_mode != "truncate_episodes",
        "a recurrent or attention model": model.get("use_lstm") or model.get("use_attention"),
        "a custom model or preprocessor": model.get("custom_model") not in (None, *CONTROLLER_MODEL_KEYS)
        or model.get("custom_preprocessor"),
        "an observation filter": config.observation_filter != "NoFilter",
        "reward clipping": bool(config.clip_rewards),
        "an observation function": config.observation_fn is not None,
        "an exploration other than StochasticSampling": (config.exploration_config or {}).get("type")
        not in (None, "StochasticSampling", StochasticSampling),
    }
    return next((reason for reason, applies in reasons.items() if applies), None)


def unsupported_policy(policy: Any, worker: Any, policy_id: str) -> Optional[str]:
    """Why the batched sampler cannot sample for this built policy, or None."""
    if not isinstance(policy, PPOTorchPolicy):
        return f"policy {policy_id} is a {type(policy).__name__}, not PPO's"
    if policy.is_recurrent():
        return f"policy {policy_id} is recurrent"
    if worker.preprocessors.get(policy_id) is not None or not isinstance(
        worker.filters.get(policy_id, NoFilter()), NoFilter
    ):
        return f"policy {policy_id} preprocesses or filters observations"
    exploration = policy.exploration
    if not isinstance(exploration, StochasticSampling) or exploration.random_timesteps > 0:
        return f"policy {policy_id} explores with {type(exploration).__name__}"
    extra = set(policy.view_requirements) - SUPPORTED_COLUMNS
    if extra:
        return f"policy {policy_id} needs {', '.join(sorted(extra))}"
    return None


@dataclass
class Trajectory:
    """One agent's steps in one episode since the last batch."""

    eps_id: int
    policy_id: str
    agent_index: int
    t: int  # the episode's step at the first row (as RLlib's: an agent that joins later starts later)
    columns: Dict[str, list] = field(default_factory=lambda: {name: [] for name in STEP_COLUMNS})


@dataclass
class Episode:
    """One game's episode: what RLlib reports of it. It answers what the mapping function and the callbacks'
    `on_episode_end` ask of RLlib's episode (`episode_id`, `get_agents`, `policy_for`, `last_info_for`,
    `agent_rewards`, `custom_metrics`, `hist_data`)."""

    eps_id: int
    length: int = 0
    reward: float = 0.0
    policy_of: Dict[AgentId, str] = field(default_factory=dict)
    agent_rewards: Dict[Tuple[AgentId, str], float] = field(default_factory=lambda: defaultdict(float))
    last_info: Dict[AgentId, dict] = field(default_factory=dict)
    custom_metrics: Dict[str, float] = field(default_factory=dict)
    hist_data: Dict[str, list] = field(default_factory=dict)

    @property
    def episode_id(self) -> int:
        return self.eps_id

    def get_agents(self) -> List[AgentId]:
        return list(self.policy_of)

    def policy_for(self, agent_id: AgentId) -> str:
        return self.policy_of[agent_id]

    def last_info_for(self, agent_id: AgentId) -> Optional[dict]:
        return self.last_info.get(agent_id)

    def metrics(self) -> RolloutMetrics:
        return RolloutMetrics(
            episode_length=self.length,
            episode_reward=self.reward,
            agent_rewards=dict(self.agent_rewards),
            custom_metrics=dict(self.custom_metrics),
            hist_data=dict(self.hist_data),
        )


class BatchedSampler(SamplerInput):
    """Samples `worker.total_rollout_fragment_length` steps (agent or env steps, as `count_steps_by` says)
    from all of the worker's games per `next()`; episodes and trajectories carry over between calls."""

    def __init__(self, worker: RolloutWorker):
        self.worker = worker
        self.envs = worker.foreach_env(lambda env: env)
        config = worker.config
        self.count_agent_steps = config.count_steps_by == "agent_steps"
        self.normalize_actions, self.clip_actions = config.normalize_actions, config.clip_actions
        # Episode and unroll ids, unique per runner.
        self.ids = itertools.count((worker.worker_index << 40) + 1)
        self.obs: List[Optional[Dict[AgentId, np.ndarray]]] = [None] * len(self.envs)  # None: to reset
        self.episodes = [Episode(0) for _ in self.envs]  # replaced at each reset
        self.trajectories: Dict[Key, Trajectory] = {}
        self.finished: List[RolloutMetrics] = []

    def get_data(self) -> MultiAgentBatch:
        batches: Dict[str, List[SampleBatch]] = defaultdict(list)
        env_steps = agent_steps = 0
        target = self.worker.total_rollout_fragment_length
        while (agent_steps if self.count_agent_steps else env_steps) < target:
            agent_steps += self._step(batches)
            env_steps += len(self.envs)
        for key in list(self.trajectories):  # cut here; the episodes go on in the next batch
            batches[self.trajectories[key].policy_id].append(self._postprocess(key, terminated=False))
        unroll_id = next(self.ids)
        policy_batches = {}
        for policy_id, trajectories in batches.items():
            batch = concat_samples(trajectories)
            batch[SampleBatch.UNROLL_ID] = np.full(batch.count, unroll_id)
            policy_batches[policy_id] = batch
        return MultiAgentBatch(policy_batches, env_steps)

    def get_metrics(self) -> List[RolloutMetrics]:
        finished, self.finished = self.finished, []
        return finished

    def get_extra_batches(self) -> List[SampleBatch]:
        return []

    def _step(self, batches: Dict[str, List[SampleBatch]]) -> int:
        """One step of every game; returns the agent steps taken."""
        for index, env in enumerate(self.envs):
            if self.obs[index] is None:
                self.obs[index], _ = env.reset()
                self.episodes[index] = Episode(next(self.ids))
        acting: Dict[str, List[Key]] = defaultdict(list)
        mapping = self.worker.policy_mapping_fn
        for index, observations in enumerate(self.obs):
            episode = self.episodes[index]
            for agent_id in observations:
                if agent_id not in episode.policy_of:  # mapped once per episode, as RLlib does
                    episode.policy_of[agent_id] = mapping(agent_id, episode, worker=self.worker)
                acting[episode.policy_of[agent_id]].append((index, agent_id))
        outputs: Dict[Key, tuple] = {}
        env_actions: List[Dict[AgentId, Any]] = [{} for _ in self.envs]
        for policy_id, keys in acting.items():
            obs = np.stack([self.obs[index][agent_id] for index, agent_id in keys])
            actions, logp, values, inputs, for_env = self._forward(policy_id, obs)
            for row, (index, agent_id) in enumerate(keys):
                outputs[(index, agent_id)] = (obs[row], actions[row], logp[row], values[row], inputs[row])
                env_actions[index][agent_id] = for_env[row]
        for index, env in enumerate(self.envs):
            self._record(index, env.step(env_actions[index]), outputs, batches)
        return len(outputs)

    def _forward(self, policy_id: str, obs: np.ndarray) -> tuple:
        """The policy's actions for a batch of observations, with what PPO keeps of the forward, and the
        actions as the game gets them (unsquashed and clipped as RLlib's `normalize_actions`/`clip_actions`
        say)."""
        policy = self.worker.policy_map[policy_id]
        with torch.no_grad():
            inputs, _ = policy.model({SampleBatch.OBS: torch.from_numpy(obs)})
            values = policy.model.value_function()
            distribution = policy.dist_class(inputs, policy.model)
            actions = (
                distribution.sample() if policy.config["explore"] else distribution.deterministic_sample()
            )
            logp = distribution.logp(actions)
        policy.global_timestep += len(obs)
        actions = actions.numpy()
        for_env = actions  # RLlib's action connectors: unsquash, then clip, each when configured
        if self.normalize_actions:
            for_env = unsquash_action(for_env, policy.action_space_struct)
        if self.clip_actions:
            for_env = clip_action(for_env, policy.action_space_struct)
        return actions, logp.numpy(), values.numpy(), inputs.numpy(), for_env

    def _record(
        self, index: int, step: tuple, outputs: Dict[Key, tuple], batches: Dict[str, List[SampleBatch]]
    ) -> None:
        """Adds game `index`'s step to its agents' trajectories and its episode; hands on the trajectories
        that ended."""
        obs, rewards, terminateds, truncateds, infos = step
        episode = self.episodes[index]
        episode_over = bool(terminateds.get("__all__") or truncateds.get("__all__"))
        for agent_id in self.obs[index]:
            key = (index, agent_id)
            policy_id = episode.policy_of[agent_id]
            trajectory = self.trajectories.get(key)
            if trajectory is None:
                trajectory = self.trajectories[key] = Trajectory(
                    episode.eps_id, policy_id, agent_index(agent_id), t=episode.length
                )
            reward = float(rewards.get(agent_id, 0.0))
            info = infos.get(agent_id) or {}
            episode.reward += reward
            episode.agent_rewards[(agent_id, policy_id)] += reward
            episode.last_info[agent_id] = info
            agent_obs, action, logp, value, inputs = outputs[key]
            row = (agent_obs, obs.get(agent_id, agent_obs), action, reward, info, value, inputs, logp)
            for column, value_of_step in zip(trajectory.columns.values(), row, strict=True):
                column.append(value_of_step)
            terminated = bool(terminateds.get(agent_id) or terminateds.get("__all__"))
            truncated = bool(truncateds.get(agent_id) or truncateds.get("__all__"))  # both, as RLlib's
            if terminated or truncated:
                batches[policy_id].append(self._postprocess(key, terminated, truncated))
        episode.length += 1
        if episode_over:  # every acting agent's trajectory ended above, terminated or truncated
            self.worker.callbacks.on_episode_end(  # the agents' info as custom metrics; self-play's outcome
                worker=self.worker,
                base_env=None,
                policies=self.worker.policy_map,
                episode=episode,
                env_index=index,
            )
            self.finished.append(episode.metrics())
            self.obs[index] = None
        else:
            self.obs[index] = {
                agent_id: agent_obs
                for agent_id, agent_obs in obs.items()
                if not (terminateds.get(agent_id) or truncateds.get(agent_id))
            }

    def _postprocess(self, key: Key, terminated: bool, truncated: bool = False) -> SampleBatch:
        """The trajectory as a SampleBatch after the policy's postprocessing (GAE: bootstrapped from the value
        of its last observation unless it `terminated`); an episode that goes on continues in a new one."""
        trajectory = self.trajectories.pop(key)
        columns = trajectory.columns
        length = len(columns[SampleBatch.REWARDS])
        ends = np.zeros(length, dtype=bool)
        ends[-1] = True
        data = {name: np.asarray(values) for name, values in columns.items() if name != SampleBatch.INFOS}
        data[SampleBatch.REWARDS] = data[SampleBatch.REWARDS].astype(np.float32)
        infos = np.empty(length, dtype=object)
        infos[:] = columns[SampleBatch.INFOS]
        batch = SampleBatch(
            {
                **data,
                SampleBatch.INFOS: infos,
                SampleBatch.TERMINATEDS: ends & terminated,
                SampleBatch.TRUNCATEDS: ends & truncated,
                SampleBatch.EPS_ID: np.full(length, trajectory.eps_id),
                SampleBatch.AGENT_INDEX: np.full(length, trajectory.agent_index),
                SampleBatch.T: np.arange(trajectory.t, trajectory.t + length),
            }
        )
        if not (terminated or truncated):
            self.trajectories[key] = Trajectory(
                trajectory.eps_id, trajectory.policy_id, trajectory.agent_index, trajectory.t + length
            )
        return self.worker.policy_map[trajectory.policy_id].postprocess_trajectory(batch)


class BatchedRolloutWorker(RolloutWorker):
    """RLlib's RolloutWorker, sampling with `BatchedSampler` when its settings and policies allow (see the
    module's docstring), else with RLlib's own sampler."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        if self.sampler is None:  # no env: the driver's worker when remote runners sample
            return
        if unsupported_settings(self.config):  # e.g. the evaluation runner's complete episodes: expected
            return
        reason = next(
            filter(None, (unsupported_policy(p, self, pid) for pid, p in self.policy_map.items())), None
        )
        if reason:
            print_warning(f"env runner {self.worker_index} samples with RLlib's sampler: {reason}")
            return
        self.sampler = self.input_reader = BatchedSampler(self)
