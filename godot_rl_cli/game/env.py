"""A GodotEnv that never hangs, never leaks a game process and says what went wrong.

`RobustGodotEnv` is a drop-in subclass of godot-rl's `GodotEnv` (same constructor arguments,
attributes and methods) that fixes the weak spots of godot-rl 0.8.2:

- the game's command line is an argv list, so paths with spaces work;
- the trainer listens on 127.0.0.1 before the game starts, so a busy port fails at once;
- message framing counts UTF-8 bytes, as Godot's `put_utf8_string` does;
- every wait is bounded: a game that dies is noticed within a poll interval, a silent one after
  `step_timeout`, one that never connects after `connect_timeout`;
- malformed messages and non-finite rewards or observations raise `GameProtocolError` instead of
  corrupting training;
- game output goes to stderr (stdout stays clean for `@METRIC` lines) and its last lines are kept
  for error messages;
- games die with the process that started them, and `close()` always ends them.
"""

import atexit
import collections
import ctypes
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Deque, Dict, List, Optional

from gymnasium import spaces
from godot_rl.core.godot_env import GodotEnv
from godot_rl.core.utils import ActionSpaceProcessor

from godot_rl_cli.errors import UserError, print_warning

GAME_SUFFIX = ".x86_64"
POLL_INTERVAL_S = 0.2
MAX_MESSAGE_BYTES = 256 * 1024 * 1024
RECEIVE_CHUNK_BYTES = 1024 * 1024
GAME_OUTPUT_LINES_KEPT = 20
GAME_EXIT_GRACE_S = 3.0

_running_envs: "weakref.WeakSet[RobustGodotEnv]" = weakref.WeakSet()
_stop_requested = threading.Event()


class GameError(RuntimeError):
    """The game failed; `str()` is one line naming the game, its port, exit code and last output."""


class GameConnectError(GameError):
    """The game did not connect in time."""


class GameDiedError(GameError):
    """The game process exited or its connection dropped."""


class GameHungError(GameError):
    """The game stopped answering for longer than `step_timeout`."""


class GameProtocolError(GameError):
    """The game sent something that breaks the protocol (bad framing, bad JSON, NaN reward...)."""


class RestartBudget:
    """How many crashed or hung games may still be relaunched; each relaunch is announced on stderr."""

    def __init__(self, limit: int, setting: str):
        self.limit = limit
        self.setting = setting
        self.used = 0

    def spend(self, error: GameError) -> None:
        """Count one relaunch for `error`, or raise it when the budget is used up."""
        if self.used >= self.limit:
            raise error
        self.used += 1
        print_warning(f"{error}; restarting it ({self.used} of {self.setting} {self.limit})")


class StopRequested(Exception):
    """A wait for the game was abandoned because `request_stop()` was called (e.g. on SIGINT)."""


def request_stop() -> None:
    """Make every pending and future wait for a game raise `StopRequested` (safe in a signal handler)."""
    _stop_requested.set()


def clear_stop_request() -> None:
    _stop_requested.clear()


def stop_all_games() -> None:
    """End every game process this Python process started (safe in a signal handler: no socket I/O)."""
    for env in list(_running_envs):
        env.kill_game()


def validate_env_path(env_path: str) -> str:
    """Return the absolute path of an exported Linux game, or raise `UserError` saying what is wrong."""
    path = Path(env_path).expanduser().absolute()
    if not path.exists():
        raise UserError(f"env_path {env_path} does not exist", "pass the exported game, e.g. --env_path=./MyGame.x86_64")
    if path.is_dir():
        raise UserError(f"env_path {env_path} is a directory", f"pass the exported {GAME_SUFFIX} file inside it")
    if path.suffix != GAME_SUFFIX:
        raise UserError(
            f"env_path {env_path} does not end in {GAME_SUFFIX}", "export the game for Linux and pass the .x86_64 file"
        )
    if not os.access(path, os.X_OK):
        raise UserError(f"env_path {env_path} is not executable", f"run: chmod +x '{path}'")
    return str(path)


def _bind_listener(port: int) -> socket.socket:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("127.0.0.1", port))
    except OSError:
        listener.close()
        raise UserError(
            f"port {port} on 127.0.0.1 is already in use",
            "another run or game holds it: stop it or pass a free base port with --port",
        ) from None
    listener.listen(1)
    return listener


_PR_SET_PDEATHSIG = 1
_prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here: loading libraries after fork can deadlock


def _die_with_parent() -> None:
    """Runs in the game's child process before exec: the kernel kills the game when its launching thread dies."""
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _parse_constant(name: str) -> float:
    raise ValueError(f"non-finite number {name}")


class RobustGodotEnv(GodotEnv):
    """godot-rl's GodotEnv with bounded waits, clear errors and guaranteed game shutdown."""

    def __init__(
        self,
        env_path: Optional[str] = None,
        port: int = GodotEnv.DEFAULT_PORT,
        show_window: bool = False,
        seed: int = 0,
        framerate: Optional[int] = None,
        action_repeat: Optional[int] = None,
        speedup: Optional[int] = None,
        convert_action_space: bool = False,
        connect_timeout: float = 60.0,
        step_timeout: float = 60.0,
        game_args: Optional[Dict[str, Any]] = None,
        **kwargs: Any,
    ):
        self.proc: Optional[subprocess.Popen] = None
        self.connection: Optional[socket.socket] = None
        self._received = bytearray()
        self._chunk = memoryview(bytearray(RECEIVE_CHUNK_BYTES))
        self.port = port
        self.step_timeout = step_timeout
        self.env_path = validate_env_path(env_path) if env_path else None
        self.game_output: Deque[str] = collections.deque(maxlen=GAME_OUTPUT_LINES_KEPT)
        self._closed = False
        self.num_envs = None
        self.action_spaces: List[spaces.Dict] = []
        self.observation_spaces: List[spaces.Dict] = []

        listener = _bind_listener(port)
        _running_envs.add(self)
        atexit.register(self.close)
        try:
            if self.env_path:
                args = {**(game_args or {}), **kwargs}
                self._launch_game(show_window, framerate, seed, action_repeat, speedup, args)
            else:
                print(f"No game binary given: press Play in the Godot editor (waiting on port {port})", flush=True)
            self.connection = self._accept(listener, connect_timeout)
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

    # --- launching and connecting -------------------------------------------------------------

    def game_command(
        self,
        show_window: bool,
        framerate: Optional[int],
        seed: int,
        action_repeat: Optional[int],
        speedup: Optional[int],
        game_args: Dict[str, Any],
    ) -> List[str]:
        """The game's argv, as the Godot RL Agents plugin expects it."""
        command = [self.env_path, f"--port={self.port}", f"--env_seed={seed}"]
        if not show_window:
            command += ["--disable-render-loop", "--headless"]
        if framerate is not None:
            command += ["--fixed-fps", str(framerate)]
        if action_repeat is not None:
            command.append(f"--action_repeat={action_repeat}")
        if speedup is not None:
            command.append(f"--speedup={speedup}")
        command += [f"--{key}={value}" for key, value in game_args.items()]
        return command

    def _launch_game(self, show_window, framerate, seed, action_repeat, speedup, game_args) -> None:
        command = self.game_command(show_window, framerate, seed, action_repeat, speedup, game_args)
        try:
            self.proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        except OSError as error:
            raise UserError(f"cannot start the game {self.env_path}: {error.strerror}", "check the file is a Linux executable") from None
        threading.Thread(target=self._relay_game_output, name=f"game-output-{self.port}", daemon=True).start()

    def _relay_game_output(self) -> None:
        """Copy the game's output to stderr with a prefix, keeping its last lines for error messages."""
        assert self.proc is not None and self.proc.stdout is not None
        for raw_line in self.proc.stdout:
            line = raw_line.decode("utf-8", "replace").rstrip()
            self.game_output.append(line)
            try:
                sys.stderr.write(f"[game:{self.port}] {line}\n")
            except (OSError, ValueError):
                pass

    def _accept(self, listener: socket.socket, connect_timeout: float) -> socket.socket:
        listener.settimeout(POLL_INTERVAL_S)
        deadline = time.monotonic() + connect_timeout
        while True:
            self._raise_if_stop_requested()
            try:
                connection, _ = listener.accept()
                break
            except socket.timeout:
                pass
            if self.proc is not None and self.proc.poll() is not None:
                raise self._game_error(GameDiedError, "exited before connecting")
            if time.monotonic() > deadline:
                if self.proc is None:
                    raise GameConnectError(
                        f"no game connected on port {self.port} within {connect_timeout:g} s "
                        "(press Play in the Godot editor, or pass --env_path)"
                    )
                raise self._game_error(GameConnectError, f"did not connect within {connect_timeout:g} s")
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection.settimeout(self.step_timeout)
        return connection

    # --- framing --------------------------------------------------------------------------------

    def _send_string(self, string: str) -> None:
        self._raise_if_unsolicited_data()
        try:
            self.connection.sendall(_frame(string))
        except socket.timeout:
            raise self._game_error(GameHungError, f"accepted no data for {self.step_timeout:g} s") from None
        except OSError as error:
            raise self._game_error(GameDiedError, f"connection lost while sending ({error.strerror or error})") from None

    def _raise_if_unsolicited_data(self) -> None:
        """The game only ever answers; bytes left after a reply are a duplicate or out-of-order message."""
        if self._received:
            raise self._game_error(GameProtocolError, "sent a message nobody asked for (a duplicate or out-of-order reply)")

    def _receive_more(self) -> None:
        """Append what the socket has to the receive buffer, waiting in short polls so that a dead game,
        a silent game (`step_timeout`) and a stop request are all noticed."""
        waited_since = time.monotonic()
        while True:
            readable, _, _ = select.select([self.connection], [], [], POLL_INTERVAL_S)
            if readable:
                break
            self._raise_if_stop_requested()
            if self.proc is not None and self.proc.poll() is not None:
                raise self._game_error(GameDiedError, "exited")
            if time.monotonic() - waited_since > self.step_timeout:
                raise self._game_error(GameHungError, f"sent nothing for {self.step_timeout:g} s")
        try:
            count = self.connection.recv_into(self._chunk)
        except OSError as error:
            raise self._game_error(GameDiedError, f"connection lost ({error.strerror or error})") from None
        if not count:
            raise self._game_error(GameDiedError, "closed the connection")
        self._received += self._chunk[:count]

    def _get_data(self) -> str:
        while len(self._received) < 4:
            self._receive_more()
        size = int.from_bytes(self._received[:4], "little")
        if size > MAX_MESSAGE_BYTES:
            raise self._game_error(GameProtocolError, f"announced a {size}-byte message (limit {MAX_MESSAGE_BYTES})")
        while len(self._received) < 4 + size:
            self._receive_more()
        body = bytes(self._received[4 : 4 + size])
        del self._received[: 4 + size]
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            raise self._game_error(GameProtocolError, "sent a message that is not UTF-8") from None

    def _get_json_dict(self, expected_type: Optional[str] = None) -> dict:
        text = self._get_data()
        try:
            message = json.loads(text, parse_constant=_parse_constant)
        except ValueError as error:
            if "non-finite" in str(error):
                message = self._finite_message_or_raise(text)
            else:
                raise self._game_error(GameProtocolError, f"sent invalid JSON ({error}): {text[:80]!r}") from None
        if not isinstance(message, dict):
            raise self._game_error(GameProtocolError, f"sent a message that is not a JSON object: {text[:80]!r}")
        if expected_type is not None and message.get("type") != expected_type:
            raise self._game_error(
                GameProtocolError, f"sent a {message.get('type')!r} message where {expected_type!r} was expected"
            )
        return message

    def _finite_message_or_raise(self, text: str) -> dict:
        """NaN or infinity is tolerated in `info` only: in observations or rewards it would poison training."""
        message = json.loads(text)
        for field in ("obs", "reward"):
            if field in message and _contains_non_finite(message[field]):
                raise self._game_error(GameProtocolError, f"sent a non-finite number (NaN or infinity) in {field!r}")
        return message

    # --- protocol -------------------------------------------------------------------------------

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
        self.action_spaces = [_action_space(space) for space in action_spaces]
        self.observation_spaces = [_observation_space(space) for space in observation_spaces]
        self.observation_key_order = list(observation_spaces[0])  # the game's order (gymnasium's Dict sorts keys)
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
        info = message.get("info") or [{} for _ in range(self.num_envs)]
        return obs, reward, done, list(done), info

    def call(self, method: str):
        self._send_as_json({"type": "call", "method": method})
        return self._get_json_dict("call").get("returns")

    def _checked_per_agent(self, message: dict, field: str) -> list:
        values = message.get(field)
        if not isinstance(values, list) or len(values) != self.num_envs:
            raise self._game_error(GameProtocolError, f"sent {field!r} that is not a list of {self.num_envs} values")
        return values

    def _process_obs(self, response_obs: list) -> list:
        try:
            return super()._process_obs(response_obs)
        except (ValueError, KeyError, TypeError) as error:
            raise self._game_error(GameProtocolError, f"sent an observation that does not match its space ({error})") from None

    # --- shutdown -------------------------------------------------------------------------------

    def close(self) -> None:
        """Ask the game to quit, wait for it, then make sure it is gone. Idempotent; never raises."""
        if self._closed:
            return
        self._closed = True
        if self.connection is not None:
            try:
                self.connection.settimeout(1.0)
                self.connection.sendall(_frame(json.dumps({"type": "close"})))
            except OSError:
                pass
            self.connection.close()
        if self.proc is not None:
            try:
                self.proc.wait(timeout=GAME_EXIT_GRACE_S)
            except subprocess.TimeoutExpired:
                self.kill_game()
        _running_envs.discard(self)
        atexit.unregister(self.close)

    def _close(self) -> None:
        self.close()

    def kill_game(self) -> None:
        """End the game process now: SIGTERM, then SIGKILL. Does no socket I/O."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    # --- errors -----------------------------------------------------------------------------------

    def describe(self) -> str:
        return f"game {self.env_path or '(Godot editor)'} on port {self.port}"

    def _game_error(self, error_class: type, what: str) -> GameError:
        """Build an error naming the game, its exit code (waiting briefly for it) and its last output."""
        details = []
        if self.proc is not None:
            try:
                details.append(describe_exit(self.proc.wait(timeout=1.0)))
            except subprocess.TimeoutExpired:
                details.append("still running")
            time.sleep(0.05)  # let the output relay catch the last lines
            last_lines = [line for line in self.game_output if line.strip()][-5:]
            if last_lines:
                details.append("last output: " + " | ".join(last_lines))
        suffix = f" ({'; '.join(details)})" if details else ""
        return error_class(f"{self.describe()} {what}{suffix}")

    @staticmethod
    def _raise_if_stop_requested() -> None:
        if _stop_requested.is_set():
            raise StopRequested()


def describe_exit(code: int) -> str:
    """`exit code N`, or the signal that killed the process (Popen reports it as -N)."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _frame(string: str) -> bytes:
    """The plugin's framing: a 4-byte little-endian count of UTF-8 bytes, then the bytes."""
    data = string.encode("utf-8")
    return len(data).to_bytes(4, "little") + data


def _contains_non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return value != value or value in (float("inf"), float("-inf"))
    if isinstance(value, dict):
        return any(_contains_non_finite(item) for item in value.values())
    if isinstance(value, list):
        return any(_contains_non_finite(item) for item in value)
    return False


def _action_space(space_info: dict) -> spaces.Dict:
    heads = {}
    for name, head in space_info.items():
        if head["action_type"] == "discrete":
            heads[name] = spaces.Discrete(int(head["size"]))
        elif head["action_type"] == "continuous":
            heads[name] = spaces.Box(low=-1.0, high=1.0, shape=(int(head["size"]),))
        else:
            raise ValueError(f"action type {head['action_type']!r} of {name!r} is not supported")
    return spaces.Dict(heads)


def _observation_space(space_info: dict) -> spaces.Dict:
    observations = {}
    for key, entry in space_info.items():
        if entry["space"] == "box":
            shape = tuple(int(size) for size in entry["size"])
            if "2d" in key:
                observations[key] = spaces.Box(low=0, high=255, shape=shape, dtype="uint8")
            else:
                observations[key] = spaces.Box(low=-1.0, high=1.0, shape=shape, dtype="float32")
        elif entry["space"] == "discrete":
            observations[key] = spaces.Discrete(int(entry["size"]))
        else:
            raise ValueError(f"observation space {entry['space']!r} of {key!r} is not supported")
    return spaces.Dict(observations)
