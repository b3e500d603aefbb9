"""The plugin's wire protocol on one TCP connection: framing, bounded waits, strict messages, spaces.

Framing, both ways: a 4-byte little-endian count of UTF-8 bytes (as Godot's `put_utf8_string`), then
the bytes of one JSON object with a `type`. Every wait is bounded: a game that exits is noticed within
POLL_INTERVAL_S, a silent one after `step_timeout`, and a stop request at once.
"""

import json
import select
import socket
import time
from typing import Any, Callable, Optional

from gymnasium import spaces

from godot_rl_cli.errors import UserError
from godot_rl_cli.game.errors import (
    GameConnectError,
    GameDiedError,
    GameError,
    GameHungError,
    GameProtocolError,
)
from godot_rl_cli.game.process import raise_if_stop_requested

POLL_INTERVAL_S = 0.2
POLL_INTERVAL_MS = int(POLL_INTERVAL_S * 1000)
MAX_MESSAGE_BYTES = 256 * 1024 * 1024
RECEIVE_CHUNK_BYTES = 1024 * 1024

ErrorFactory = Callable[[type, str], GameError]


def frame(string: str) -> bytes:
    """The plugin's framing: a 4-byte little-endian count of UTF-8 bytes, then the bytes."""
    data = string.encode("utf-8")
    return len(data).to_bytes(4, "little") + data


def bind_listener(port: int) -> socket.socket:
    """Listen on 127.0.0.1:`port` before the game starts, so a busy port fails at once."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("127.0.0.1", port))
        listener.listen(1)  # fails too when another run bound the same port a moment before and listens first
    except OSError:
        listener.close()
        raise UserError(
            f"port {port} on 127.0.0.1 is already in use",
            "another run or game holds it: stop it or pass a free base port with --port",
        ) from None
    return listener


def accept(
    listener: socket.socket,
    connect_timeout: float,
    game_exited: Optional[Callable[[], bool]],
    error: ErrorFactory,
    port: int,
) -> socket.socket:
    """Wait for the game (or the editor, when `game_exited` is None) to connect, in short polls."""
    listener.settimeout(POLL_INTERVAL_S)
    deadline = time.monotonic() + connect_timeout
    while True:
        raise_if_stop_requested()
        try:
            connection, _ = listener.accept()
            break
        except TimeoutError:
            pass
        if game_exited is not None and game_exited():
            raise error(GameDiedError, "exited before connecting")
        if time.monotonic() > deadline:
            if game_exited is None:
                raise GameConnectError(
                    f"no game connected on port {port} within {connect_timeout:g} s "
                    "(press Play in the Godot editor, or pass --env_path)"
                )
            raise error(GameConnectError, f"did not connect within {connect_timeout:g} s")
    connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return connection


class Connection:
    """Messages to and from one game, each wait bounded; every failure is a GameError built by `error`."""

    def __init__(
        self, sock: socket.socket, step_timeout: float, game_exited: Callable[[], bool], error: ErrorFactory
    ):
        self.sock = sock
        self.step_timeout = step_timeout
        self.game_exited = game_exited
        self.error = error
        self._received = bytearray()
        self._chunk = memoryview(bytearray(RECEIVE_CHUNK_BYTES))
        # Non-blocking: every wait is one poll() in `_wait`, and recv and send make no poll of their own.
        sock.setblocking(False)
        self._readable = select.poll()
        self._readable.register(sock, select.POLLIN)
        self._writable = select.poll()
        self._writable.register(sock, select.POLLOUT)

    def send(self, string: str) -> None:
        self._raise_if_unsolicited_data()
        data = memoryview(frame(string))
        try:
            while data:
                try:
                    data = data[self.sock.send(data) :]
                except BlockingIOError:  # the game has not read what it was sent before
                    self._wait(self._writable, "accepted no data")
        except OSError as error:
            raise self.error(
                GameDiedError, f"connection lost while sending ({error.strerror or error})"
            ) from None

    def _raise_if_unsolicited_data(self) -> None:
        """The game only ever answers; bytes left after a reply are a duplicate or out-of-order message."""
        if self._received:
            raise self.error(
                GameProtocolError, "sent a message nobody asked for (a duplicate or out-of-order reply)"
            )

    def _wait(self, poller: Any, silence: str) -> None:
        """Wait until `poller` reports the socket ready, in short polls so that a dead game, a silent game
        (`step_timeout`) and a stop request are all noticed."""
        waited_since = time.monotonic()
        while not poller.poll(POLL_INTERVAL_MS):
            raise_if_stop_requested()
            if self.game_exited():
                raise self.error(GameDiedError, "exited")
            if time.monotonic() - waited_since > self.step_timeout:
                raise self.error(GameHungError, f"{silence} for {self.step_timeout:g} s")

    def _receive_more(self) -> None:
        """Append what the socket has to the receive buffer, once the game sent something."""
        while True:
            self._wait(self._readable, "sent nothing")
            try:
                count = self.sock.recv_into(self._chunk)
                break
            except BlockingIOError:  # a spurious wake-up: wait again
                continue
            except OSError as error:
                raise self.error(GameDiedError, f"connection lost ({error.strerror or error})") from None
        if not count:
            raise self.error(GameDiedError, "closed the connection")
        self._received += self._chunk[:count]

    def receive_text(self) -> str:
        while len(self._received) < 4:
            self._receive_more()
        size = int.from_bytes(self._received[:4], "little")
        if size > MAX_MESSAGE_BYTES:
            raise self.error(
                GameProtocolError, f"announced a {size}-byte message (limit {MAX_MESSAGE_BYTES})"
            )
        while len(self._received) < 4 + size:
            self._receive_more()
        body = self._received[4 : 4 + size]
        del self._received[: 4 + size]
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            raise self.error(GameProtocolError, "sent a message that is not UTF-8") from None

    def receive_message(self, expected_type: Optional[str] = None) -> dict:
        """The next message as a dict; NaN or infinity is tolerated in `info` only."""
        text = self.receive_text()
        try:
            message = _STRICT_DECODER.decode(text)
        except ValueError as error:
            if "non-finite" not in str(error):
                raise self.error(GameProtocolError, f"sent invalid JSON ({error}): {text[:80]!r}") from None
            message = self._finite_message_or_raise(text)
        if not isinstance(message, dict):
            raise self.error(GameProtocolError, f"sent a message that is not a JSON object: {text[:80]!r}")
        if expected_type is not None and message.get("type") != expected_type:
            raise self.error(
                GameProtocolError,
                f"sent a {message.get('type')!r} message where {expected_type!r} was expected",
            )
        return message

    def _finite_message_or_raise(self, text: str) -> dict:
        """NaN or infinity in observations or rewards would poison training."""
        message = json.loads(text)
        for field in ("obs", "reward"):
            if field in message and _contains_non_finite(message[field]):
                raise self.error(
                    GameProtocolError, f"sent a non-finite number (NaN or infinity) in {field!r}"
                )
        return message

    def close(self) -> None:
        """Ask the game to quit (best effort, no reply expected) and close the socket."""
        try:
            self.sock.settimeout(1.0)
            self.sock.sendall(frame(json.dumps({"type": "close"})))
        except OSError:
            pass
        self.sock.close()


def _reject_constant(name: str) -> float:
    raise ValueError(f"non-finite number {name}")


# Built once: json.loads with keyword arguments builds a decoder at every call.
_STRICT_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def _contains_non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return value != value or value in (float("inf"), float("-inf"))
    if isinstance(value, dict):
        return any(_contains_non_finite(item) for item in value.values())
    if isinstance(value, list):
        return any(_contains_non_finite(item) for item in value)
    return False


def action_space(space_info: dict) -> spaces.Dict:
    """A game's action space message (`{name: {size, action_type}}`) as a gymnasium Dict of heads."""
    heads = {}
    for name, head in space_info.items():
        if head["action_type"] == "discrete":
            heads[name] = spaces.Discrete(int(head["size"]))
        elif head["action_type"] == "continuous":
            heads[name] = spaces.Box(low=-1.0, high=1.0, shape=(int(head["size"]),))
        else:
            raise ValueError(f"action type {head['action_type']!r} of {name!r} is not supported")
    return spaces.Dict(heads)


def is_image_key(key: str) -> bool:
    """Whether an observation key is a camera image (uint8), as the plugin names them: it contains `2d`."""
    return "2d" in key


def observation_space(space_info: dict) -> spaces.Dict:
    """A game's observation space message (`{key: {size, space}}`); keys containing `2d` are uint8 images."""
    observations = {}
    for key, entry in space_info.items():
        if entry["space"] == "box":
            shape = tuple(int(size) for size in entry["size"])
            if is_image_key(key):
                observations[key] = spaces.Box(low=0, high=255, shape=shape, dtype="uint8")
            else:
                observations[key] = spaces.Box(low=-1.0, high=1.0, shape=shape, dtype="float32")
        elif entry["space"] == "discrete":
            observations[key] = spaces.Discrete(int(entry["size"]))
        else:
            raise ValueError(f"observation space {entry['space']!r} of {key!r} is not supported")
    return spaces.Dict(observations)
