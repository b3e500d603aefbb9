"""One-line user errors: `ERROR: <what> (<how to fix>)` on stderr and a non-zero exit."""

import sys
from typing import NoReturn, Optional


class UserError(Exception):
    """An error the user can fix; its message is printed as one `ERROR:` line, without a traceback."""

    def __init__(self, what: str, how: Optional[str] = None):
        self.what = what
        self.how = how
        super().__init__(format_error(what, how))


def format_error(what: str, how: Optional[str] = None) -> str:
    """Format the one-line message, folding newlines so the line stays one line."""
    text = what if not how else f"{what} ({how})"
    return " ".join(text.split())


def print_error(what: str, how: Optional[str] = None) -> None:
    print(f"ERROR: {format_error(what, how)}", file=sys.stderr, flush=True)


def print_warning(message: str) -> None:
    print(f"WARNING: {' '.join(message.split())}", file=sys.stderr, flush=True)


def exit_with_error(what: str, how: Optional[str] = None, code: int = 1) -> NoReturn:
    print_error(what, how)
    sys.exit(code)
