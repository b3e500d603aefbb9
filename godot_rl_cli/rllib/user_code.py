"""Calling the user's Python code from the YAML file (`policy_mapping_fn`) with a time limit, so that an
endless loop, an exit or an exception in it is one clear error instead of a hang or a silent exit."""

import signal
from typing import Any, Callable

from godot_rl_cli.errors import UserError

USER_CODE_SECONDS = 5.0  # a mapping function answers in microseconds
HOW = "fix policy_mapping_fn in the YAML file"


class _TimeUp(Exception):
    pass


def _time_up(signum, frame) -> None:
    raise _TimeUp


def call_user_code(
    what: str, function: Callable[..., Any], *args: Any, seconds: float = USER_CODE_SECONDS
) -> Any:
    """`function(*args)`, or a UserError naming `what` when it raises, exits or runs longer than `seconds`
    (measured with SIGALRM: only in the main thread, where the scripts check the YAML)."""
    previous = signal.signal(signal.SIGALRM, _time_up)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return function(*args)
    except _TimeUp:
        raise UserError(f"{what} did not return within {seconds:g} s", HOW) from None
    except SystemExit as error:
        raise UserError(f"{what} called exit({error.code!r})", HOW) from None
    except Exception as error:
        text = " ".join(f"{type(error).__name__}: {error}".split())
        raise UserError(f"{what} failed ({text})", HOW) from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
