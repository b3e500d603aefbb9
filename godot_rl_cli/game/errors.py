"""What can go wrong with a game, as exceptions whose `str()` is one line a user can act on."""

import contextlib
import signal
import sys
from typing import Callable, Iterator

from godot_rl_cli.errors import UserError, exit_with_error


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


GAME_START_HOW = "check that the game starts on its own and uses the Godot RL Agents plugin"


@contextlib.contextmanager
def exit_on_setup_failure(stopped: str, cleanup: Callable[[], None] = lambda: None) -> Iterator[None]:
    """Before training: a bad setting (UserError) or a game that does not start (GameError) exits 1 with one
    ERROR line, a stop (SIGINT) exits 0 saying `stopped`; `cleanup` (closing what started) runs first."""
    try:
        yield
    except UserError as error:
        cleanup()
        exit_with_error(error.what, error.how)
    except GameError as error:
        cleanup()
        exit_with_error(str(error), GAME_START_HOW)
    except (StopRequested, KeyboardInterrupt):
        cleanup()
        print(stopped, file=sys.stderr)
        sys.exit(0)
