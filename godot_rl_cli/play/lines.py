"""The controller's line protocol for its Simulator and Interface tabs.

Each line on stdout is `@<TAB>_EVENT <json>` or `@<TAB>_ACTION <json>` (TAB: `SIM` or `INTERFACE`),
one strict JSON object (NaN and infinities written as null, which the controller's parser needs),
written whole and flushed at once whatever the buffering of stdout. Nothing else goes to stdout:
`claim_stdout()` points file descriptor 1 at stderr, so stray prints of libraries and games cannot
mix with the protocol.

Action rows are made for a 48-byte column: numbers rounded, long vectors cut with a marker, images
summarised as their shape. Strings in rows are ASCII (`\\u00fc` style escapes): the controller cuts
display strings at byte offsets and would panic inside a multi-byte character.
"""

import json
import os
import sys
import threading
import time
from typing import Any, Callable, Dict, Optional, TextIO

import numpy as np

from godot_rl_cli.metrics import to_strict_json_value

ACTION_LINES_PER_S = 20
OBSERVATION_DECIMALS = 3
ACTION_DECIMALS = 3
VALUES_SHOWN = 5


def strict_json(payload: Dict[str, Any]) -> str:
    """One-line JSON of `payload` with numpy values unwrapped and non-finite numbers as null."""
    return json.dumps(to_strict_json_value(payload), allow_nan=False, separators=(",", ":"))


def ascii_only(value: Any) -> Any:
    """`value` with every string (keys included) escaped to ASCII."""
    if isinstance(value, str):
        return value if value.isascii() else value.encode("ascii", "backslashreplace").decode("ascii")
    if isinstance(value, dict):
        return {ascii_only(key): ascii_only(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [ascii_only(item) for item in value]
    return value


def compact_values(value: Any, decimals: int) -> Any:
    """A number, or a short list of rounded numbers ('+N' marks N more), or 'dtype[HxWxC]' for an image."""
    array = np.asarray(value)
    if array.ndim == 0:
        number = array.item()
        return round(number, decimals) + 0.0 if isinstance(number, float) else number
    if array.ndim > 1:
        return f"{array.dtype}[{'x'.join(str(size) for size in array.shape)}]"
    if array.size <= VALUES_SHOWN + 1:
        return [round(float(number), decimals) + 0.0 for number in array]
    return [round(float(number), decimals) + 0.0 for number in array[:VALUES_SHOWN]] + [
        f"+{array.size - VALUES_SHOWN}"
    ]


def compact_observation(observation: Dict[str, Any]) -> Any:
    """The observation as the Observation column shows it: the single key's values, else {key: values}."""
    parts = {key: compact_values(value, OBSERVATION_DECIMALS) for key, value in observation.items()}
    return next(iter(parts.values())) if len(parts) == 1 else parts


def compact_action(action: Dict[str, Any]) -> Dict[str, Any]:
    """The action in the game's own keys, continuous values rounded."""
    return {key: compact_values(value, ACTION_DECIMALS) for key, value in action.items()}


class LineWriter:
    """Writes the protocol lines of one tab; `event()` and `action()` never raise on bad values.

    When the reader goes away (the controller quit: a broken pipe), `on_closed` is called once and
    later lines are dropped.
    """

    def __init__(
        self, tab: str, stream: Optional[TextIO] = None, on_closed: Optional[Callable[[], None]] = None
    ):
        self.event_prefix = f"@{tab}_EVENT "
        self.action_prefix = f"@{tab}_ACTION "
        self.stream = stream if stream is not None else sys.stdout
        self.on_closed = on_closed
        self.closed = False
        self._lock = threading.Lock()

    def event(self, kind: str, message: Optional[str] = None, **fields: Any) -> None:
        payload: Dict[str, Any] = {"timestamp": round(time.time(), 3), "kind": kind}
        if message is not None:
            payload["message"] = " ".join(str(message).split())  # one line
        payload.update(fields)
        self._write(self.event_prefix + strict_json(payload))

    def action(self, payload: Dict[str, Any]) -> None:
        self._write(
            self.action_prefix + strict_json(ascii_only({"timestamp": round(time.time(), 3), **payload}))
        )

    def _write(self, line: str) -> None:
        with self._lock:
            if self.closed:
                return
            try:
                self.stream.write(line + "\n")
                self.stream.flush()
            except (BrokenPipeError, ValueError, OSError):
                self.closed = True
                _discard_output(self.stream)
        if self.closed and self.on_closed is not None:
            callback, self.on_closed = self.on_closed, None
            callback()


def _discard_output(stream: TextIO) -> None:
    """Point a stream whose reader is gone at /dev/null, so flushing it at exit does not fail."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def claim_stdout() -> TextIO:
    """A line-buffered stream on the real stdout for protocol lines; file descriptor 1 (and so `print`,
    libraries and child processes) goes to stderr from now on."""
    sys.stdout.flush()
    protocol = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8", errors="backslashreplace")
    os.dup2(2, 1)
    return protocol


class ActionLineLimiter:
    """At most `per_second` action lines a second, one per frame of a controller that redraws 20 times a
    second, so each line is drawn at least once. Steps in between are skipped and counted; a step that
    must be written (an episode ends) waits for its turn instead, so episodes that end faster than that
    slow the playback down to `per_second` episodes a second."""

    def __init__(self, per_second: float = ACTION_LINES_PER_S, clock: Callable[[], float] = time.monotonic):
        self.interval = 1.0 / per_second
        self.clock = clock
        self.last = float("-inf")
        self.skipped = 0

    def wait_time(self) -> float:
        """Seconds until the next line may be written."""
        return max(0.0, self.last + self.interval - self.clock())

    def admit(self, forced: bool = False) -> Optional[int]:
        """None to skip this step's line; else the number of steps skipped since the last line.
        A forced line is admitted (the caller waited `wait_time()` first)."""
        now = self.clock()
        if not forced and now - self.last < self.interval:
            self.skipped += 1
            return None
        self.last = now
        skipped, self.skipped = self.skipped, 0
        return skipped
