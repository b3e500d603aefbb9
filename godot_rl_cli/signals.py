"""SIGINT/SIGTERM handling shared by the training scripts: the first signal stops gracefully, the second
hard."""

import signal
import sys
from typing import Callable, Optional

from godot_rl_cli.game.process import request_stop, stop_all_games


class StopSignals:
    """First SIGINT or SIGTERM: call `on_first`, abandon any wait for a game and print `message`.
    Second: end every game at once and raise KeyboardInterrupt (the caller skips its save)."""

    def __init__(self, message: str, on_first: Optional[Callable[[], None]] = None):
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
            stop_all_games()
            raise KeyboardInterrupt
        if self.on_first:
            self.on_first()
        request_stop()
        print(self.message, file=sys.stderr, flush=True)
