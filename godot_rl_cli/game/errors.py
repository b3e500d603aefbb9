"""What can go wrong with a game, as exceptions whose `str()` is one line a user can act on."""

import signal


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


class StopRequested(Exception):
    """A wait for the game was abandoned because `request_stop()` was called (e.g. on SIGINT)."""


def describe_exit(code: int) -> str:
    """`exit code N`, or the signal that killed the process (Popen reports it as -N)."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
