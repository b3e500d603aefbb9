"""A Godot game as an RLlib (old API stack) MultiAgentEnv; agents are named by their index in the game.

Godot's agents all act every step, report `done` per step and are reset by the game itself.
- `env_is_multiagent: true`: all agents share an episode. A done agent waits (it is sent a no-op
  action and leaves the observation dict) until every agent is done; then the episode ends and the
  next `reset()` resets the game.
- `false`: each agent has its own episodes. A done agent's episode ends and the agent continues under
  a new id (`"<index>#<n>"`, mapped to the same policy); the env-level episode ends, without resetting
  the game, once every agent has finished an episode, so episode statistics are reported.
Observations are the game's keys flattened and concatenated in the order the game sends them.
With `max_env_restarts: N` in the YAML's env_config, a game that crashes or hangs is relaunched (at most N
times per env instance): the episode in progress ends truncated at its last observation, and training goes on.
"""

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np
from gymnasium import spaces
from ray.rllib.env.multi_agent_env import MultiAgentEnv

from godot_rl_cli.game import GameError, GameSettings, RobustGodotEnv
from godot_rl_cli.game.restarts import RESTARTABLE_ERRORS, RestartBudget
from godot_rl_cli.game.spaces import ActionEncoder, flat_action_space, flatten_observation
from godot_rl_cli.rllib.runners import report_game_error

AgentId = Union[int, str]


def agent_index(agent_id: AgentId) -> int:
    """The agent's index in the game, whatever episode generation its id carries."""
    return agent_id if isinstance(agent_id, int) else int(str(agent_id).split("#")[0])


ENV_CONFIG_KEY = "godot"  # RLlib's env_config holds one GodotEnvConfig under this key


@dataclass(frozen=True)
class GodotEnvConfig:
    """What every GodotMultiAgentEnv of a run is made from: the game settings whole, the episode shape, and
    where an env's game stands among the run's games (RLlib tells each env its runner and vector index)."""

    game: GameSettings
    shared_episode: bool = True  # the YAML's env_is_multiagent
    envs_per_runner: int = 1
    first_runner: int = 0  # whose first env shows the window: 1 with remote env runners, else 0
    game_offset: int = 0  # the evaluation games': numbered after every training game

    @property
    def evaluates(self) -> bool:
        return self.game_offset > 0

    def as_env_config(self) -> Dict[str, "GodotEnvConfig"]:
        return {ENV_CONFIG_KEY: self}

    def game_settings(self, runner: int, vector: int) -> GameSettings:
        """Game `offset + runner * envs per runner + vector` of the run (GameSettings.for_game: its port and
        seed); only the first env of the first runner shows its window."""
        index = self.game_offset + runner * self.envs_per_runner + vector
        show_window = self.game.show_window and runner == self.first_runner and vector == 0
        return dataclasses.replace(self.game.for_game(index), show_window=show_window)


def godot_env_config(env_config: Mapping[str, Any]) -> Optional[GodotEnvConfig]:
    """The GodotEnvConfig in an RLlib env_config, if it holds one."""
    return env_config.get(ENV_CONFIG_KEY)


def flat_observation_space(game: RobustGodotEnv, index: int) -> spaces.Box:
    size = sum(int(np.prod(game.observation_spaces[index][key].shape)) for key in game.observation_key_order)
    return spaces.Box(-np.inf, np.inf, (size,), np.float32)


class GodotMultiAgentEnv(MultiAgentEnv):
    def __init__(self, env_config: Any):
        """`env_config`: RLlib's EnvContext holding the run's GodotEnvConfig, and this env's runner and vector
        index."""
        super().__init__()
        config = godot_env_config(env_config)
        runner = getattr(env_config, "worker_index", 0)
        settings = config.game_settings(runner, getattr(env_config, "vector_index", 0))
        self.launch_game = functools.partial(RobustGodotEnv, settings)
        self.game = self.launch_game()
        self.runner = None if config.evaluates else runner  # a training env runner's index
        report_game_error(self.runner, None)  # this runner's games run again: an earlier error is history
        self.restarts = RestartBudget(settings.max_env_restarts, "max_env_restarts")
        self.shared_episode = config.shared_episode
        count = self.game.num_envs
        self.encoder = ActionEncoder(self.game.action_spaces[0])
        self.action_spaces_by_index = [flat_action_space(self.game.action_spaces[i]) for i in range(count)]
        self.observation_spaces_by_index = [flat_observation_space(self.game, i) for i in range(count)]
        self.noop = [np.zeros(space.shape, dtype=space.dtype) for space in self.action_spaces_by_index]
        self.possible_agents = list(range(count))
        self.agents = list(self.possible_agents)
        self.observation_space = spaces.Dict({i: self.observation_spaces_by_index[i] for i in range(count)})
        self.action_space = spaces.Dict({i: self.action_spaces_by_index[i] for i in range(count)})
        self.ids: List[AgentId] = list(range(count))
        self.generation = [0] * count
        self.finished = [False] * count
        self.last_obs: List[np.ndarray] = []
        self.game_was_reset = False

    def _flatten(self, observation: Dict[str, Any]) -> np.ndarray:
        return flatten_observation(observation, self.game.observation_key_order)

    def reset(self, *, seed=None, options=None) -> Tuple[dict, dict]:
        if self.shared_episode or not self.game_was_reset:
            try:
                observations, _ = self.game.reset()
            except GameError as error:
                report_game_error(self.runner, error)
                raise
            self.last_obs = [self._flatten(observation) for observation in observations]
            self.game_was_reset = True
        self.finished = [False] * len(self.ids)
        return {self.ids[i]: self.last_obs[i] for i in range(len(self.ids))}, {
            self.ids[i]: {} for i in range(len(self.ids))
        }

    def step(self, action_dict: Dict[AgentId, Any]):
        actions = np.stack(
            [
                np.asarray(action_dict.get(agent_id, self.noop[i])).reshape(self.noop[i].shape)
                for i, agent_id in enumerate(self.ids)
            ]
        )
        try:
            self.game.send_actions(self.encoder.encode(actions))
            observations, rewards, dones, _, infos = self.game.step_recv()
        except RESTARTABLE_ERRORS as error:
            return self._restart_game(error)
        self.last_obs = [self._flatten(observation) for observation in observations]
        obs, reward, terminated, info = {}, {}, {}, {}
        for i, agent_id in enumerate(self.ids):
            if self.shared_episode and self.finished[i]:
                continue
            obs[agent_id], reward[agent_id], terminated[agent_id], info[agent_id] = (
                self.last_obs[i],
                float(rewards[i]),
                bool(dones[i]),
                infos[i],
            )
            if dones[i]:
                self.finished[i] = True
                if not self.shared_episode:
                    self.generation[i] += 1
                    self.ids[i] = f"{i}#{self.generation[i]}"
                    obs[self.ids[i]] = self.last_obs[i]
        everyone_done = all(self.finished)
        terminated["__all__"] = everyone_done and self.shared_episode
        truncated = {"__all__": everyone_done and not self.shared_episode}
        return obs, reward, terminated, truncated, info

    def _restart_game(self, error: GameError):
        """Relaunch a crashed or hung game; the episode in progress ends, truncated at its last
        observation."""
        try:
            self.restarts.spend(error)
            self.game.close()
            self.game = self.launch_game()
        except GameError as fatal:
            report_game_error(self.runner, fatal)
            raise
        self.game_was_reset = False
        active = [i for i in range(len(self.ids)) if not (self.shared_episode and self.finished[i])]
        obs = {self.ids[i]: self.last_obs[i] for i in active}
        reward = {self.ids[i]: 0.0 for i in active}
        return obs, reward, {"__all__": False}, {"__all__": True}, {}

    def close(self) -> None:
        self.game.close()
