"""Run one sweep case as a real process and judge it: exit code, one `ERROR:` line or argparse usage, no
traceback, no hang, nothing left running, and every file that was there before byte-identical after."""

import hashlib
import os
import signal
import stat
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from script_helpers import in_session, script_command

# What a case expects of the script.
ERROR = "error"  # exit 1 and exactly one `ERROR: <what> (<how>)` line
USAGE = "usage"  # exit 2: argparse's usage lines and one `error:` line
REFUSED = "refused"  # either of the two: an ERROR line (exit 1) or argparse's usage error (exit 2)
OK = "ok"  # exit 0, no `ERROR:` line
STOPPED = "stopped"  # exit 0 after a stop signal (130 after a second one), no `ERROR:` line


@dataclass
class Case:
    category: str
    script: str
    args: Callable[[Path], List[str]]  # built in the case's folder, which is the process's working directory
    expect: str
    message: str = ""  # a fragment of the ERROR/usage line (or of stderr for OK/STOPPED)
    replaces: Tuple[str, ...] = ()  # files (relative to the folder) this case is documented to replace
    check: Optional[Callable[[Path, "Outcome"], Optional[str]]] = None  # extra check; returns a complaint
    timeout: float = 45
    cwd_gone: bool = False  # the working directory is deleted before the script starts
    stdout_closed: bool = False  # stdout is a pipe whose reader is gone
    signals: Tuple[float, ...] = ()  # a signal at each of these seconds after the script took SIGTERM
    after_line: str = ""  # ... or after a stdout line containing this (none came: no signal)
    signal_number: int = signal.SIGINT
    unreadable: bool = False  # run without root's permission override
    env: Dict[str, str] = field(default_factory=dict)


@dataclass
class Outcome:
    returncode: Optional[int]
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool
    leftovers: List[str]
    changed: List[str]


Result = Tuple[Case, Outcome, List[str]]  # a case, how its run went, and its complaints (none: it passed)


def selected_cases(request, module: str, cases: Dict[str, Case]) -> Dict[str, Case]:
    """The cases of `module` that this pytest session runs (all of them when it runs none, as `python -m`)."""
    names = [
        item.callspec.params["name"]
        for item in request.session.items
        if hasattr(item, "callspec") and "name" in item.callspec.params and item.module.__name__ == module
    ]
    return {name: cases[name] for name in names or cases}


def run_cases(cases: Dict[str, Case], base: Path, pool: int) -> Dict[str, Result]:
    """Run every case in a folder of its own below `base`, `pool` processes at a time (each mostly waits), the
    longest timeouts first so that the pool ends together."""
    order = sorted(sorted(cases), key=lambda name: -cases[name].timeout)

    def one(item: Tuple[int, str]) -> Tuple[str, Result]:
        index, name = item
        folder = base / f"case{index:03d}"
        outcome = run_case(cases[name], folder)
        return name, (cases[name], outcome, complaints(cases[name], outcome, folder))

    with ThreadPoolExecutor(pool) as executor:
        return dict(executor.map(one, enumerate(order)))


def file_hashes(folder: Path) -> Dict[str, str]:
    """sha256 of every regular file below `folder` (FIFOs, devices and symlinks are not read)."""
    hashes = {}
    for path in folder.rglob("*"):
        try:
            mode = path.lstat().st_mode
            if stat.S_ISREG(mode):
                hashes[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            continue
    return hashes


def command_of(case: Case, folder: Path) -> List[str]:
    command = script_command(case.script, *case.args(folder))
    if case.unreadable:
        command = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *command]
    if case.cwd_gone:
        gone = folder / "gone"
        gone.mkdir()
        command = ["sh", "-c", 'cd "$0" && rmdir "$0" && exec "$@"', str(gone), *command]
    return command


def run_case(case: Case, folder: Path) -> Outcome:
    folder.mkdir(parents=True)
    command = command_of(case, folder)
    before = file_hashes(folder)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **case.env}
    env.pop("RAY_ADDRESS", None)
    stdout_target = subprocess.PIPE
    reader = writer = None
    if case.stdout_closed:
        reader, writer = os.pipe()
        os.close(reader)
        stdout_target = writer
    started = time.monotonic()
    process = subprocess.Popen(
        command,
        cwd=folder,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=stdout_target,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    if writer is not None:
        os.close(writer)
    timers = [threading.Timer(delay, _signal, (process, case.signal_number)) for delay in case.signals]
    readers = [_Reader(process.stderr, "")]
    if process.stdout is not None:
        readers.append(_Reader(process.stdout, case.after_line))
    if case.signals and not case.after_line:
        _wait_for_signal_handler(process.pid, min(case.timeout, 20))
    if case.after_line:
        readers[1].seen.wait(case.timeout)
    if not case.after_line or readers[1].found:
        for timer in timers:
            timer.start()
    timed_out = False
    try:
        process.wait(timeout=max(1.0, case.timeout - (time.monotonic() - started)))
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_session(process.pid)
        process.wait()
    stderr = "".join(readers[0].finish())
    stdout = "".join(readers[1].finish()) if len(readers) > 1 else ""
    for timer in timers:
        timer.cancel()
    seconds = time.monotonic() - started
    deadline = time.monotonic() + 8
    while in_session(process.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    leftovers = in_session(process.pid)
    _kill_session(process.pid)
    after = file_hashes(folder)
    changed = sorted(name for name, digest in before.items() if after.get(name) != digest)
    return Outcome(process.returncode, stdout or "", stderr or "", seconds, timed_out, leftovers, changed)


class _Reader:
    """Reads a stream's lines in a thread; `seen` is set at the first line containing `marker`."""

    def __init__(self, stream, marker: str):
        self.lines: List[str] = []
        self.seen = threading.Event()
        self.found = False
        self.marker = marker
        self.thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self.thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.append(line)
            if self.marker and self.marker in line:
                self.found = True
                self.seen.set()
        self.seen.set()  # the stream ended: stop waiting for the marker

    def finish(self) -> List[str]:
        self.thread.join(timeout=10)
        return self.lines


def _wait_for_signal_handler(pid: int, timeout: float) -> None:
    """Until the script catches SIGTERM (its first statement makes it do so; Python alone does not), or it
    ended: a signal before the script's first statement meets the interpreter's defaults, not the script."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return
        caught = next((line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:")), "0")
        if int(caught, 16) & (1 << (signal.SIGTERM - 1)):
            return
        time.sleep(0.002)


def _signal(process: subprocess.Popen, number: int) -> None:
    if process.poll() is None:
        try:
            process.send_signal(number)
        except ProcessLookupError:
            pass


def _kill_session(session: int) -> None:
    for pid in in_session(session):
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass


def error_lines(stderr: str) -> List[str]:
    return [line for line in stderr.splitlines() if line.startswith("ERROR:")]


def complaints(case: Case, outcome: Outcome, folder: Path) -> List[str]:
    """Every broken promise of this case's run (empty: it passed)."""
    found = _general_complaints(case, outcome) + _exit_complaints(case, outcome)
    if case.check and not found:
        complaint = case.check(folder, outcome)
        if complaint:
            found.append(complaint)
    return found


def _general_complaints(case: Case, outcome: Outcome) -> List[str]:
    """What no case may do: hang, print a traceback, leave a process, change an earlier file."""
    found = []
    if outcome.timed_out:
        found.append(f"no exit within {case.timeout} s")
    if "Traceback" in outcome.stderr:
        found.append("a traceback on stderr")
    if outcome.leftovers:
        found.append(f"processes outlived the script: {outcome.leftovers}")
    unexpected = [name for name in outcome.changed if name not in case.replaces]
    if unexpected:
        found.append(f"files changed or lost: {unexpected}")
    return found


def _exit_complaints(case: Case, outcome: Outcome) -> List[str]:
    """The exit code and the error lines the case expects."""
    code = outcome.returncode
    expect = case.expect if case.expect != REFUSED else (USAGE if code == 2 else ERROR)
    if expect == ERROR:
        return _error_line_complaints(case, outcome)
    if expect == USAGE:
        usage_errors = [line for line in outcome.stderr.splitlines() if ": error: " in line]
        if code != 2 or not outcome.stderr.startswith("usage:") or len(usage_errors) != 1:
            return [f"exit code {code}, expected argparse's usage error (exit 2)"]
        return [] if case.message in usage_errors[0] else [f"{case.message!r} not in {usage_errors[0]!r}"]
    found = []
    allowed = (0, 130) if case.expect == STOPPED and len(case.signals) > 1 else (0,)
    if code not in allowed:
        found.append(f"exit code {code}, expected {' or '.join(map(str, allowed))}")
    if error_lines(outcome.stderr):
        found.append(f"ERROR lines: {error_lines(outcome.stderr)}")
    if case.message and case.message not in outcome.stderr:
        found.append(f"{case.message!r} not on stderr")
    return found


def _error_line_complaints(case: Case, outcome: Outcome) -> List[str]:
    errors = error_lines(outcome.stderr)
    found = [] if outcome.returncode == 1 else [f"exit code {outcome.returncode}, expected 1"]
    if len(errors) != 1:
        found.append(f"{len(errors)} ERROR lines, expected 1")
    elif case.message not in errors[0]:
        found.append(f"{case.message!r} not in {errors[0]!r}")
    return found


def outcome_name(case: Case, outcome: Outcome) -> str:
    """The outcome's kind for the summary table."""
    if case.expect in (ERROR, USAGE, REFUSED):
        return {1: "ERROR line", 2: "usage error"}.get(outcome.returncode, f"exit {outcome.returncode}")
    if case.expect == STOPPED:
        return "stopped cleanly" if outcome.returncode in (0, 130) else f"exit {outcome.returncode}"
    return "ran (exit 0)" if outcome.returncode == 0 else f"exit {outcome.returncode}"


def summary_table(results: List[Result]) -> str:
    """Markdown: cases per category and outcome, with the failures."""
    rows: Dict[Tuple[str, str], int] = {}
    for case, outcome, problems in results:
        key = (case.category, outcome_name(case, outcome) if not problems else "FAILED")
        rows[key] = rows.get(key, 0) + 1
    lines = ["| category | outcome | cases |", "|---|---|---|"]
    lines += [f"| {category} | {kind} | {count} |" for (category, kind), count in sorted(rows.items())]
    lines.append(f"| all | | {len(results)} |")
    return "\n".join(lines)
