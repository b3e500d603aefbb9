"""stdout whose reader may go away (the controller closing, `| head`): output is dropped from then on instead
of raising BrokenPipeError in the middle of a run or at exit. Standard library only (installed before the
scripts' imports)."""

import os
import sys
from typing import Optional, TextIO


class ReaderSafeStream:
    """Wraps a text stream: the first broken pipe points its file descriptor at /dev/null (so the buffered
    rest and every later write and the flush at exit go nowhere) and prints `note` once on stderr."""

    def __init__(self, stream: TextIO, note: Optional[str]):
        self._stream = stream
        self._note = note
        self.reader_gone = False

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._drop_output()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._drop_output()
            try:
                self._stream.flush()  # what was buffered now goes to /dev/null
            except (OSError, ValueError):
                pass

    def _drop_output(self) -> None:
        if self.reader_gone:
            return
        self.reader_gone = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        except (OSError, ValueError):
            pass
        if self._note:
            try:
                print(f"WARNING: {self._note}", file=sys.stderr, flush=True)
            except (OSError, ValueError):
                pass

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def guard_stdout(note: Optional[str] = None) -> None:
    """Make sys.stdout survive its reader going away; `note` (if any) is the one warning printed then."""
    if sys.stdout is not None and not isinstance(sys.stdout, ReaderSafeStream):
        sys.stdout = ReaderSafeStream(sys.stdout, note)
