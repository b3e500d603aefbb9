"""RobustGodotEnv: godot-rl's GodotEnv that never hangs, never leaks a game process and says what went wrong.

A subclass of godot-rl's `GodotEnv` (same attributes and methods; built from one `GameSettings`) that
fixes the weak spots of godot-rl 0.8.2, by delegating to the game layer's parts:
- `process`: the game's command line is an argv list (paths with spaces work), games die with the
  process that started them, and their output goes to stderr;
- `protocol`: the trainer listens before the game starts (a busy port fails at once), framing counts
  UTF-8 bytes, every wait is bounded, and malformed messages or non-finite rewards and observations
  raise `GameProtocolError` instead of corrupting training;
- `close()` always ends the game.
"""

import atexit
from typing import Any, Dict, List, Optional

from godot_rl.core.godot_env import GodotEnv
from godot_rl.core.utils import ActionSpaceProcessor
from gymnasium import spaces

from godot_rl_cli.game import protocol
from godot_rl_cli.game.errors import GameError, GameProtocolError
from godot_rl_cli.game.process import GameProcess, game_command, validate_env_path
from godot_rl_cli.game.settings import GameSettings


class RobustGodotEnv(GodotEnv):
    """godot-rl's GodotEnv with bounded waits, clear errors and guaranteed game shutdown."""

    def __init__(self, settings: GameSettings, convert_action_space: bool = False):
        """Launch the game `settings` describe (or wait for the editor's), then read its spaces."""
        self.process: Optional[GameProcess] = None
        self.connection: Optional[protocol.Connection] = None
        port = self.port = settings.port
        self.step_timeout = settings.step_timeout
        self.env_path = validate_env_path(settings.env_path) if settings.env_path else None
        self._closed = False
        self.num_envs = None
        self.action_spaces: List[spaces.Dict] = []
        self.observation_spaces: List[spaces.Dict] = []

        listener = protocol.bind_listener(port)
        atexit.register(self.close)
        try:
            if self.env_path:
                self.process = GameProcess(game_command(settings, self.env_path), port)
            else:
                print(
                    f"No game binary given: press Play in the Godot editor (waiting on port {port})",
                    flush=True,
                )
            game_exited = self.process.has_exited if self.process else None
            sock = protocol.accept(listener, settings.connect_timeout, game_exited, self._game_error, port)
            self.connection = protocol.Connection(
                sock, settings.step_timeout, game_exited or (lambda: False), self._game_error
            )
        except BaseException:
            self.close()
            raise
        finally:
            listener.close()

        try:
            self._handshake()
            self._get_env_info()
        except (KeyError, TypeError, ValueError, AssertionError, IndexError) as error:
            self.close()
            raise self._game_error(GameProtocolError, f"sent an invalid env_info message ({error})") from None
        except BaseException:
            self.close()
            raise
        self.observation_space = self.observation_spaces[0]
        self.tuple_action_spaces = [spaces.Tuple(list(space.values())) for space in self.action_spaces]
        self.action_space_processor = ActionSpaceProcessor(self.tuple_action_spaces[0], convert_action_space)

    @property
    def proc(self):
        """The game's Popen (None in the editor), as godot-rl's GodotEnv names it."""
        return self.process.popen if self.process else None

    # --- the messages -------------------------------------------------------------------------------

    def send_actions(self, actions: List[Dict[str, Any]]) -> None:
        """Send one `{head: value}` action per agent; the reply is read with `step_recv()`."""
        self._send_as_json({"type": "action", "action": actions})

    def _send_string(self, string: str) -> None:
        self.connection.send(string)

    def _get_json_dict(self, expected_type: Optional[str] = None) -> dict:
        return self.connection.receive_message(expected_type)

    def _get_env_info(self) -> None:
        self._send_as_json({"type": "env_info"})
        info = self._get_json_dict("env_info")
        self.num_envs = int(info["n_agents"])
        if self.num_envs < 1:
            raise ValueError("n_agents must be at least 1")
        action_spaces = info["action_space"]
        if isinstance(action_spaces, dict):
            action_spaces = [action_spaces] * self.num_envs
        observation_spaces = info["observation_space"]
        if isinstance(observation_spaces, dict):
            observation_spaces = [observation_spaces] * self.num_envs
        self.action_spaces = [protocol.action_space(space) for space in action_spaces]
        self.observation_spaces = [protocol.observation_space(space) for space in observation_spaces]
        self.observation_key_order = list(
            observation_spaces[0]
        )  # the game's order (gymnasium's Dict sorts keys)
        if len(self.action_spaces) != self.num_envs or len(self.observation_spaces) != self.num_envs:
            raise ValueError(f"{self.num_envs} agents but {len(self.action_spaces)} action spaces")
        self.agent_policy_names = list(info.get("agent_policy_names") or ["shared_policy"] * self.num_envs)

    def reset(self, seed=None):
        self._send_as_json({"type": "reset"})
        message = self._get_json_dict("reset")
        obs = self._checked_per_agent(message, "obs")
        return self._process_obs(obs), [{} for _ in range(self.num_envs)]

    def step_recv(self):
        message = self._get_json_dict("step")
        obs = self._process_obs(self._checked_per_agent(message, "obs"))
        reward = self._checked_per_agent(message, "reward")
        done = [bool(flag) for flag in self._checked_per_agent(message, "done")]
        if not message.get("info"):
            return obs, reward, done, list(done), [{} for _ in range(self.num_envs)]
        info = self._checked_per_agent(message, "info")
        if not all(type(item) is dict for item in info):
            raise self._game_error(GameProtocolError, "sent an 'info' entry that is not a JSON object")
        return obs, reward, done, list(done), info

    def call(self, method: str):
        self._send_as_json({"type": "call", "method": method})
        return self._get_json_dict("call").get("returns")

    def _checked_per_agent(self, message: dict, field: str) -> list:
        values = message.get(field)
        if not isinstance(values, list) or len(values) != self.num_envs:
            raise self._game_error(
                GameProtocolError, f"sent {field!r} that is not a list of {self.num_envs} values"
            )
        return values

    def _process_obs(self, response_obs: list) -> list:
        try:
            return super()._process_obs(response_obs)
        except (ValueError, KeyError, TypeError) as error:
            raise self._game_error(
                GameProtocolError, f"sent an observation that does not match its space ({error})"
            ) from None

    # --- shutdown -----------------------------------------------------------------------------------

    def close(self) -> None:
        """Ask the game to quit, wait for it, then make sure it is gone. Idempotent; never raises."""
        if self._closed:
            return
        self._closed = True
        if self.connection is not None:
            self.connection.close()
        if self.process is not None:
            self.process.wait_or_kill()
        atexit.unregister(self.close)

    def _close(self) -> None:
        self.close()

    def kill_game(self) -> None:
        """End the game process now (no socket I/O)."""
        if self.process is not None:
            self.process.kill()

    # --- errors -------------------------------------------------------------------------------------

    def describe(self) -> str:
        return f"game {self.env_path or '(Godot editor)'} on port {self.port}"

    def _game_error(self, error_class: type, what: str) -> GameError:
        """An error naming the game, its exit code (waiting briefly for it) and its last output."""
        details = self.process.failure_details() if self.process is not None else []
        suffix = f" ({'; '.join(details)})" if details else ""
        return error_class(f"{self.describe()} {what}{suffix}")
