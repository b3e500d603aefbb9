"""A Godot game as an RLlib (old API stack) MultiAgentEnv; agents are named by their index in the game.

Godot's agents all act every step, report `done` per step and are reset by the game itself.
- `env_is_multiagent: true`: all agents share an episode. A done agent waits (it is sent a no-op
  action and leaves the observation dict) until every agent is done; then the episode ends and the
  next `reset()` resets the game.
- `false`: each agent has its own episodes. A done agent's episode ends and the agent continues under
  a new id (`"<index>#<n>"`, mapped to the same policy); the env-level episode ends, without resetting
  the game, once every agent has finished an episode, so episode statistics are reported.
Observations are the game's keys flattened and concatenated in the order the game sends them.
With `max_env_restarts: N` in env_config, a game that crashes or hangs is relaunched (at most N times
per env instance): the episode in progress ends truncated at its last observation, and training goes on.
"""

import dataclasses
import functools
from typing import Any, Dict, List, Tuple, Union

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


def game_index(env_config: Any) -> int:
    """This env's game among all games of the run: worker index * envs per worker + vector index (0 for the
    probe game and a local env runner's first env)."""
    worker = getattr(env_config, "worker_index", 0)
    vector = getattr(env_config, "vector_index", 0)
    offset = int(env_config.get("_game_offset", 0))  # the evaluation game's: after every training game
    return offset + worker * int(env_config.get("_envs_per_worker", 1)) + vector


def flat_observation_space(game: RobustGodotEnv, index: int) -> spaces.Box:
    size = sum(int(np.prod(game.observation_spaces[index][key].shape)) for key in game.observation_key_order)
    return spaces.Box(-np.inf, np.inf, (size,), np.float32)


def start_game(env_config: Any, index: int, show_window: bool) -> RobustGodotEnv:
    """Game `index` of the run: port `port + index` and seed `seed + index` (GameSettings.for_game), so the
    same seed gives the same games whatever the base port."""
    settings = GameSettings.from_env_config(env_config).for_game(index)
    return RobustGodotEnv.from_settings(dataclasses.replace(settings, show_window=show_window))


class GodotMultiAgentEnv(MultiAgentEnv):
    def __init__(self, env_config: Any):
        super().__init__()
        index = game_index(env_config)
        first = (
            getattr(env_config, "worker_index", 0) == int(env_config.get("_first_worker", 0))
            and getattr(env_config, "vector_index", 0) == 0
        )
        self.launch_game = functools.partial(
            start_game, env_config, index, bool(env_config.get("show_window")) and first
        )
        self.game = self.launch_game()
        # A training env runner's index (the evaluation runners' games are numbered after an offset).
        self.runner = None if "_game_offset" in env_config else getattr(env_config, "worker_index", 0)
        report_game_error(self.runner, None)  # this runner's games run again: an earlier error is history
        self.restarts = RestartBudget(int(env_config.get("max_env_restarts") or 0), "max_env_restarts")
        self.shared_episode = bool(env_config.get("_env_is_multiagent", True))
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
