"""SIGINT/SIGTERM handling shared by the scripts: a clean exit from the first instruction on, then (once a
script has something to stop or save) the first signal stops gracefully and the second hard.

No imports beyond the standard library at module level: `exit_cleanly_on_stop_signals` runs before any other
import of a script, so that a signal during the imports (seconds under load) is a clean exit."""

import os
import signal
import sys
from typing import Callable, Optional

from godot_rl_cli.streams import guard_stdout

TRAINER_STDOUT_NOTE = (
    "nobody reads stdout any more (broken pipe): training goes on and the model or checkpoints are saved as "
    "usual; its lines are dropped"
)


def exit_cleanly_on_stop_signals(trainer: bool = False) -> None:
    """A script's first statement. Until the script installs its own handling, the first SIGINT/SIGTERM ends
    the process with exit 0 and one stderr line instead of a KeyboardInterrupt traceback (nothing was started
    that needs stopping or saving); a second one, during that exit, ends it at once with 130. Also makes
    stdout survive its reader going away (streams.guard_stdout; a trainer says once that it goes on)."""
    guard_stdout(TRAINER_STDOUT_NOTE if trainer else None)
    signal.signal(signal.SIGINT, _exit_early)
    signal.signal(signal.SIGTERM, _exit_early)


def _exit_early(signum, frame) -> None:
    """Ends the process at once: an exception raised here could land inside a half-done import of a compiled
    library (torch), whose interpreter shutdown then crashes."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    try:
        os.write(
            2,
            f"Stopped by {signal.Signals(signum).name} before anything started; nothing to save.\n".encode(),
        )
    except OSError:
        pass  # stderr closed: exit quietly all the same
    os._exit(0)


class StopSignals:
    """First SIGINT or SIGTERM: call `on_first`, abandon any wait for a game and print `message`.
    Second: end every game at once and raise KeyboardInterrupt (the caller skips its save)."""

    def __init__(self, message: str, on_first: Optional[Callable[[], None]] = None):
        from godot_rl_cli.game.process import request_stop, stop_all_games

        self._request_stop = request_stop
        self._stop_all_games = stop_all_games
        self.message = message
        self.on_first = on_first
        self.received = 0
        self.install()

    def install(self) -> None:
        """(Re)take SIGINT and SIGTERM: `ray.init()` replaces the SIGTERM handler with one that exits."""
        signal.signal(signal.SIGINT, self._handle)
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame) -> None:
        self.received += 1
        if self.received > 1:
            self._stop_all_games()
            raise KeyboardInterrupt
        if self.on_first:
            self.on_first()
        self._request_stop()
        try:
            print(self.message, file=sys.stderr, flush=True)
        except (OSError, ValueError):
            pass
