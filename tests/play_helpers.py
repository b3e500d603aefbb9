"""Run simulator.py and the interface scripts as the controller does; check their lines as it parses them."""

import json
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from conftest import PYTHON, REPO_ROOT
from script_helpers import processes_matching

SIGINT_LIMIT_S = 1.0


def _reject_constant(name: str):
    raise ValueError(f"non-strict JSON constant {name}")


def parse_lines(stdout: str, tab: str) -> Tuple[List[Dict], List[Dict]]:
    """(events, actions) of a `tab` (SIM or INTERFACE) stream, each line parsed with a strict JSON parser.

    Every stdout line must be a protocol line of this tab: nothing else may go to stdout."""
    events, actions = [], []
    for line in stdout.splitlines():
        for prefix, found in ((f"@{tab}_EVENT ", events), (f"@{tab}_ACTION ", actions)):
            if line.startswith(prefix):
                payload = json.loads(line[len(prefix) :], parse_constant=_reject_constant)
                assert isinstance(payload, dict)
                found.append(payload)
                break
        else:
            raise AssertionError(f"not a protocol line on stdout: {line[:200]!r}")
    return events, actions


def is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_fields(events: List[Dict], actions: List[Dict]) -> None:
    """The fields the controller reads, with the types it accepts."""
    for event in events:
        assert isinstance(event["kind"], str) and is_number(event["timestamp"]), event
        assert isinstance(event.get("message"), str) and "\n" not in event["message"], event
        if event["kind"] == "connected":
            assert is_count(event["attempt"]) and event["mode"] in ("single", "multi"), event
        if event["kind"] in ("episode_start", "episode_end"):
            assert is_count(event["episode"]), event
        if event["kind"] == "episode_end":
            assert (
                is_count(event["steps"])
                and event["rewards"]
                and all(is_number(r) for r in event["rewards"].values())
            ), event
    for action in actions:
        assert (
            is_count(action["episode"]) and is_count(action["step"]) and action["mode"] in ("single", "multi")
        ), action
        assert action["agents"], action
        for row in action["agents"]:
            assert isinstance(row["agent"], str) and isinstance(row["policy"], str), row
            assert is_number(row["reward"]), row
            assert isinstance(row["terminated"], bool) and isinstance(row["truncated"], bool), row
            assert isinstance(row["action"], dict) and row["action"], row
            assert "observation" in row and "info" in row, row
            assert all(
                len(json.dumps(row[key])) == len(json.dumps(row[key]).encode())
                for key in ("action", "info", "observation")
            ), "ASCII only"


def of_kind(events: List[Dict], kind: str) -> List[Dict]:
    return [event for event in events if event["kind"] == kind]


class ScriptRun:
    """A playback script started as the controller starts it (`python -u script args`), stdout read live."""

    def __init__(
        self, script: str, *args: str, cwd: Path, unbuffered: bool = True, env: Optional[dict] = None
    ):
        command = [PYTHON] + (["-u"] if unbuffered else []) + [str(REPO_ROOT / script), *args]
        self.tab = "SIM" if script == "simulator.py" else "INTERFACE"
        self.process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.lines: List[str] = []
        self.stderr = ""
        self._changed = threading.Condition()
        self._stdout_done = False
        self._readers = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_stdout(self) -> None:
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._stdout_done = True
            self._changed.notify_all()

    def _read_stderr(self) -> None:
        self.stderr = self.process.stderr.read()

    @property
    def stdout(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def parsed(self) -> Tuple[List[Dict], List[Dict]]:
        return parse_lines(self.stdout, self.tab)

    def wait_for(self, predicate: Callable[[List[Dict]], bool], timeout: float = 30) -> List[Dict]:
        """Wait until `predicate(events so far)` holds while the script runs; returns the events."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                events = parse_lines("\n".join(self.lines), self.tab)[0]
                if predicate(events):
                    return events
                if self._stdout_done or time.monotonic() > deadline:
                    raise AssertionError(
                        f"condition not met (exit code {self.process.poll()}); "
                        f"stderr: {self.stderr[-2000:]}\n"
                        f"stdout: {self.stdout[-3000:]}"
                    )
                self._changed.wait(timeout=0.5)

    def wait_for_events(self, kind: str, count: int = 1, timeout: float = 30) -> List[Dict]:
        return self.wait_for(lambda events: len(of_kind(events, kind)) >= count, timeout)

    def interrupt(self) -> float:
        """One SIGINT to the pid, as the controller sends it; returns the seconds until the script exited."""
        started = time.monotonic()
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=15)
        finally:
            self.process.kill()
        elapsed = time.monotonic() - started
        self._join_readers()
        return elapsed

    def _join_readers(self) -> None:
        for reader in self._readers:
            reader.join(timeout=5)

    def finish(self, timeout: float = 60) -> int:
        try:
            return self.process.wait(timeout=timeout)
        finally:
            self.process.kill()
            self.process.wait()
            self._join_readers()

    def close(self) -> None:
        self.process.kill()
        self.process.wait()


def after(kind: str, count: int = 1) -> Callable[[List[Dict]], bool]:
    """A `wait_for` condition: `count` events of `kind` have come."""
    return lambda events: len(of_kind(events, kind)) >= count


def stop_with_sigint(
    run: ScriptRun, until: Callable[[List[Dict]], bool], timeout: float = 60
) -> Tuple[List, List]:
    """Once `until(events)` holds, one SIGINT: the script must exit 0 within SIGINT_LIMIT_S.
    Returns its (events, actions), every line checked."""
    try:
        run.wait_for(until, timeout)
        elapsed = run.interrupt()
    finally:
        run.close()
    assert run.process.returncode == 0, (run.process.returncode, run.stderr[-2000:])
    assert elapsed < SIGINT_LIMIT_S, f"the script took {elapsed:.2f} s to exit after SIGINT"
    events, actions = run.parsed()
    check_fields(events, actions)
    return events, actions


def run_to_end(
    script: str, *args: str, cwd: Path, timeout: float = 90, unbuffered: bool = True
) -> Tuple[int, List[Dict], List[Dict], str]:
    """Run a script to its end; (exit code, events, actions, stderr), every line already checked."""
    run = ScriptRun(script, *args, cwd=cwd, unbuffered=unbuffered)
    code = run.finish(timeout)
    events, actions = run.parsed()
    check_fields(events, actions)
    return code, events, actions, run.stderr


def assert_no_game_left(port: int) -> None:
    deadline = time.monotonic() + 5
    while processes_matching(f"--port={port} ") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_matching(f"--port={port} ") == [], f"a game on port {port} outlived the script"


def episode_rewards(events: List[Dict]) -> List[Dict[str, float]]:
    return [event["rewards"] for event in of_kind(events, "episode_end")]
