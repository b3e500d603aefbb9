"""One progress display per training run: on a terminal, a bar redrawn in place with the running reward; else
(a log file, the controller's pipe) the trainer's plain line per report, unchanged.

While the bar is on screen, a line written to stdout or stderr by anyone (a checkpoint saved, a warning, a
game's output) first clears it, and the bar is drawn again under the finished line, as tqdm's `write` does;
so nothing runs into the bar. No ML import here.
"""

import atexit
import math
import shutil
import sys
import threading
from dataclasses import dataclass
from typing import Any, Optional, TextIO, Tuple

RUNNING_EPISODES = 100  # the running reward's window: SB3's `ep_rew_mean` and RLlib's smoothing use 100 too
BAR_CELLS = 20
CLEAR_LINE = "\r\x1b[K"


@dataclass
class Progress:
    """What the bar shows after an iteration."""

    iteration: int
    steps: int
    reward: Optional[float]  # mean of the last `window` episodes (None before the first one ends)
    window: int = RUNNING_EPISODES
    steps_per_s: Optional[float] = None
    done: Optional[float] = None  # the part of the run's budget spent (0..1), when the run has one
    notes: Tuple[str, ...] = ()  # after the reward, e.g. the self-play learner's `elo 1234`, `W/D/L 3/1/2`


def bar_text(progress: Progress, columns: int) -> str:
    """`[#########-----------]  45% | iteration 12 | 24000 steps | reward 1.23 (last 100 episodes) |
    <notes> | 850 steps/s`; when that does not fit in `columns`, the short form `45% | iteration 12 |
    24000 steps | reward 1.23 | <notes>` (so an 80-column terminal still shows the notes), cut to `columns`
    characters."""
    text = _bar_parts(progress, short=False)
    if len(text) >= columns:
        text = _bar_parts(progress, short=True)
    return text[: max(columns - 1, 0)]


def _bar_parts(progress: Progress, short: bool) -> str:
    parts = [f"iteration {progress.iteration}", f"{progress.steps} steps"]
    if progress.reward is not None and math.isfinite(progress.reward):
        window = "" if short else f" (last {progress.window} episodes)"
        parts.append(f"reward {progress.reward:.2f}{window}")
    else:
        parts.append("reward -" if short else "reward - (no episode ended yet)")
    parts += progress.notes
    if progress.steps_per_s and not short:
        parts.append(f"{progress.steps_per_s:.0f} steps/s")
    if progress.done is not None:
        done = min(max(progress.done, 0.0), 1.0)
        filled = round(done * BAR_CELLS)
        cells = "" if short else f"[{'#' * filled}{'-' * (BAR_CELLS - filled)}] "
        parts.insert(0, f"{cells}{done:4.0%}".strip())
    return " | ".join(parts)


class ProgressDisplay:
    """The bar of one run when stdout is a terminal (`live`), nothing otherwise: callers print their plain
    line instead. `close()` (also at exit) leaves the last bar on screen and gives the streams back."""

    def __init__(self, stream: Optional[TextIO] = None):
        self.stream = stream or sys.stdout
        self.live = _is_terminal(self.stream)
        self.bar = ""
        self.shown = False
        self.lock = threading.RLock()  # re-entrant: a signal handler may print while a write holds it
        self.wrapped: list = []
        if self.live:
            for name in ("stdout", "stderr"):
                original = getattr(sys, name)
                if _is_terminal(original):
                    self.wrapped.append((name, original))
                    setattr(sys, name, _ClearingStream(original, self))
            atexit.register(self.close)

    def show(self, progress: Progress) -> None:
        """Redraw the bar (live only)."""
        if not self.live:
            return
        with self.lock:
            self.bar = bar_text(progress, shutil.get_terminal_size().columns)
            self._draw()

    def close(self) -> None:
        """End the bar's line and give stdout and stderr back."""
        with self.lock:
            if self.shown:
                self.stream.write("\n")
                self.stream.flush()
                self.shown = False
            self.bar = ""
            for name, original in self.wrapped:
                setattr(sys, name, original)
            self.wrapped = []
        atexit.unregister(self.close)

    def _draw(self) -> None:
        self.stream.write(CLEAR_LINE + self.bar)
        self.stream.flush()
        self.shown = True

    def clear(self) -> None:
        if self.shown:
            self.stream.write(CLEAR_LINE)
            self.shown = False

    def redraw(self) -> None:
        if self.bar:
            self._draw()


class _ClearingStream:
    """A terminal stream whose writers never run into the bar: the bar is cleared before a write and drawn
    again once a line is finished."""

    def __init__(self, original: TextIO, display: ProgressDisplay):
        self._original = original
        self._display = display

    def write(self, text: str) -> int:
        with self._display.lock:
            self._display.clear()
            self._display.stream.flush()
            written = self._original.write(text)
            if text.endswith("\n"):
                self._original.flush()
                self._display.redraw()
            return written

    def __getattr__(self, name: str) -> Any:
        return getattr(self._original, name)


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
