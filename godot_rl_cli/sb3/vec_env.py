"""A Stable-Baselines3 VecEnv over one or more Godot games (each possibly holding several agents).

Replaces godot-rl's `StableBaselinesGodotEnv`: it starts games through `RobustGodotEnv` (bounded
waits, clear errors, no leaked processes), implements `seed()` instead of raising, gives DQN a
plain `Discrete` space for a single discrete head, and converts whole batches with numpy.
"""

from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import VecEnv

from godot_rl_cli.errors import UserError
from godot_rl_cli.game import GameError, GameSettings, RobustGodotEnv
from godot_rl_cli.game.restarts import RESTARTABLE_ERRORS, RestartBudget
from godot_rl_cli.game.spaces import ActionEncoder, flat_action_space


class GodotVecEnv(VecEnv):
    """All agents of `n_parallel` game processes as one SB3 vectorised env (agent-major, game by game).
    `first_game` numbers the games (port, seed) after those of another env, e.g. the evaluation game. Several
    games need an env_path (the flags check it: in-editor training runs one game)."""

    def __init__(self, settings: GameSettings, n_parallel: int = 1, first_game: int = 0):
        self.restarts = RestartBudget(settings.max_env_restarts, "--max_env_restarts")
        self._game_settings = [settings.for_game(first_game + index) for index in range(n_parallel)]
        self.games: List[RobustGodotEnv] = []
        try:
            for game_settings in self._game_settings:
                self.games.append(RobustGodotEnv(game_settings))
        except BaseException:
            self.close()
            raise
        first = self.games[0]
        self.agents_per_game = first.num_envs
        self.action_heads = first.action_spaces[0]
        self.actions_to_game = ActionEncoder(self.action_heads)
        self.policy_name = first.agent_policy_names[0]
        self._check_games_match()
        super().__init__(
            self.agents_per_game * n_parallel, first.observation_space, flat_action_space(self.action_heads)
        )
        self._actions: Optional[np.ndarray] = None

    def _check_games_match(self) -> None:
        for game in self.games[1:]:
            if (
                game.num_envs != self.agents_per_game
                or game.observation_space != self.games[0].observation_space
            ):
                raise UserError(
                    f"{game.describe()} reports other spaces or agent counts than the first game",
                    "run copies of one game",
                )
        names = {name for game in self.games for name in game.agent_policy_names}
        if len(names) > 1:
            raise UserError(
                f"the game has several policies ({', '.join(sorted(names))}) but Stable-Baselines3 trains "
                "one",
                "train multi-policy games with rllib_training_script.py",
            )

    # --- VecEnv API -------------------------------------------------------------------------------

    def reset(self) -> Dict[str, np.ndarray]:
        observations: List[Dict[str, Any]] = []
        for game in self.games:
            obs, _ = game.reset()
            observations.extend(obs)
        self.reset_infos = [{} for _ in range(self.num_envs)]
        return self._stack_observations(observations)

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self):
        actions = self._actions
        per_game = self.agents_per_game
        failures: Dict[int, GameError] = {}
        for index, game in enumerate(self.games):
            try:
                game.send_actions(
                    self.actions_to_game.encode(actions[index * per_game : (index + 1) * per_game])
                )
            except RESTARTABLE_ERRORS as error:
                failures[index] = error
        observations: List[Dict[str, Any]] = []
        rewards: List[float] = []
        dones: List[bool] = []
        infos: List[Dict[str, Any]] = []
        for index, game in enumerate(self.games):
            try:
                if index in failures:
                    raise failures[index]
                obs, reward, done, _, info = game.step_recv()
            except RESTARTABLE_ERRORS as error:
                obs, reward, done, info = self._restart_game(index, error)
            observations.extend(obs)
            rewards.extend(reward)
            dones.extend(done)
            infos.extend(info)
        return (
            self._stack_observations(observations),
            np.asarray(rewards, dtype=np.float32),
            np.asarray(dones, dtype=bool),
            infos,
        )

    def _restart_game(self, index: int, error: GameError) -> tuple:
        """Relaunch a crashed or hung game (ML-Agents style): its agents' episodes end, training goes on."""
        self.restarts.spend(error)
        self.games[index].close()
        self.games[index] = RobustGodotEnv(self._game_settings[index])
        obs, _ = self.games[index].reset()
        count = self.agents_per_game
        return obs, [0.0] * count, [True] * count, [{"env_restart": 1} for _ in range(count)]

    def close(self) -> None:
        for game in self.games:
            game.close()

    def seed(self, seed: Optional[int] = None) -> Sequence[Optional[int]]:
        """Games are seeded when launched (`--env_seed`, seed + game index); nothing to do later."""
        return [None] * self.num_envs

    def get_attr(self, attr_name: str, indices=None) -> List[Any]:
        if attr_name == "render_mode":
            return [None] * len(self._get_indices(indices))
        raise AttributeError(f"GodotVecEnv has no per-env attribute {attr_name!r}")

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        raise AttributeError(f"GodotVecEnv cannot set {attr_name!r} on a game")

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs) -> List[Any]:
        """Calls `method_name` in every game through the protocol's `call` message."""
        returns: List[Any] = []
        for game in self.games:
            returns.extend(game.call(method_name) or [None] * self.agents_per_game)
        return [returns[index] for index in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class, indices=None) -> List[bool]:
        return [False] * len(self._get_indices(indices))

    # --- conversions --------------------------------------------------------------------------------

    def _stack_observations(self, observations: List[Dict[str, Any]]) -> Dict[str, np.ndarray]:
        stacked = {}
        for key, space in self.observation_space.spaces.items():
            stacked[key] = np.asarray([obs[key] for obs in observations], dtype=space.dtype)
        return stacked

    @property
    def agent_policy_names(self) -> List[str]:
        return [name for game in self.games for name in game.agent_policy_names]
