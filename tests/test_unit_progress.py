"""The progress display (progress.py) and the named removal of a library's stderr line (rllib/noise.py)."""

import io
import os
import re
import sys

import pytest

from godot_rl_cli.progress import CLEAR_LINE, Progress, ProgressDisplay, bar_text
from godot_rl_cli.rllib.noise import ACTOR_ARGUMENTS_WARNING, GPUTIL_HINT, stderr_without

pytestmark = pytest.mark.fast


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bar_shows_the_budget_counters_and_running_reward():
    text = bar_text(Progress(iteration=12, steps=24000, reward=1.234, steps_per_s=850.4, done=0.45), 200)
    assert text == (
        "[#########-----------]  45% | iteration 12 | 24000 steps | reward 1.23 (last 100 episodes) | "
        "850 steps/s"
    )


def test_bar_without_budget_or_episodes_and_cut_to_the_terminal():
    text = bar_text(Progress(iteration=1, steps=32, reward=None), 200)
    assert text == "iteration 1 | 32 steps | reward - (no episode ended yet)"
    assert len(bar_text(Progress(iteration=1, steps=32, reward=float("nan"), done=2.0), 30)) == 29
    assert bar_text(Progress(iteration=1, steps=32, reward=None, done=2.0), 200).startswith(
        "[" + "#" * 20 + "] 100%"
    )


def test_off_a_terminal_the_display_is_not_live_and_leaves_the_streams_alone():
    stdout, stderr = sys.stdout, sys.stderr
    display = ProgressDisplay(io.StringIO())
    display.show(Progress(iteration=1, steps=1, reward=None))
    display.close()
    assert not display.live and display.stream.getvalue() == ""
    assert (sys.stdout, sys.stderr) == (stdout, stderr)


def test_on_a_terminal_other_lines_clear_the_bar_which_returns_under_them(monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    display = ProgressDisplay(terminal)
    try:
        display.show(Progress(iteration=1, steps=10, reward=0.5))
        print("Saved checkpoint c1", flush=True)
        display.show(Progress(iteration=2, steps=20, reward=0.75))
    finally:
        display.close()
    bar1, bar2 = (
        bar_text(Progress(iteration=i, steps=10 * i, reward=r), 80) for i, r in ((1, 0.5), (2, 0.75))
    )
    assert terminal.getvalue() == (
        f"{CLEAR_LINE}{bar1}{CLEAR_LINE}Saved checkpoint c1\n{CLEAR_LINE}{bar1}{CLEAR_LINE}{bar2}\n"
    )
    assert sys.stdout is terminal


def test_one_named_line_is_removed_from_file_descriptor_2_and_the_rest_kept(capfd):
    actor_line = (
        "[2026-12-03 09:59:58,865 E 27673 27673] core_worker.cc:2740: Actor with class name: 'BatchedRollout"
        "Worker' and ID: 'fa4a' has constructor arguments in the object store and max_restarts > 0. If the "
        "arguments in the object store go out of scope or are lost, the actor restart will fail.\n"
    )
    with stderr_without(ACTOR_ARGUMENTS_WARNING):
        os.write(2, actor_line.encode())
        os.write(2, b"ERROR: a real problem (fix it)\n")
        os.write(2, b"WARNING: kept too\n")
    assert capfd.readouterr().err == "ERROR: a real problem (fix it)\nWARNING: kept too\n"


def test_the_names_match_ray_248s_messages():
    assert re.search(
        ACTOR_ARGUMENTS_WARNING,
        "core_worker.cc:2740: Actor with class name: 'X' and ID: 'y' has "
        "constructor arguments in the object store and max_restarts > 0. If the arguments",
    )
    assert GPUTIL_HINT == "Install gputil for GPU system monitoring."
