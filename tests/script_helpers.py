"""Run the suite's scripts as the controller does and read what they print."""

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional

from conftest import PYTHON, REPO_ROOT, find_free_port_block

# The API reference's @METRIC schema, written out as the tests' expectation (not read from the code).
SCHEMA_FIELDS = {
    "kind",
    "timestamp",
    "training_iteration",
    "timesteps_total",
    "episodes_total",
    "episodes_this_iter",
    "episode_reward_mean",
    "episode_reward_min",
    "episode_reward_max",
    "episode_len_mean",
    "time_this_iter_s",
    "time_total_s",
    "env_steps_this_iter",
    "env_throughput",
    "num_env_steps_sampled",
    "num_env_steps_trained",
    "num_agent_steps_sampled",
    "num_agent_steps_trained",
    "custom_metrics",
    "policies",
    "checkpoints",
}
IDENTITY_FIELDS = {"trial_id", "experiment_id", "experiment_tag", "date"}
POLICY_FIELDS = {
    "reward_mean",
    "reward_min",
    "reward_max",
    "episode_len_mean",
    "completed_episodes",
    "learner_stats",
    "learner",
    "custom_metrics",
}


def _reject_constant(name: str):
    raise ValueError(f"non-strict JSON constant {name}")


def metric_lines(stdout: str) -> List[Dict]:
    """Every `@METRIC` line parsed with a strict parser (NaN/Infinity fail), as the controller parses them."""
    samples = []
    for line in stdout.splitlines():
        if line.startswith("@METRIC "):
            samples.append(json.loads(line[len("@METRIC ") :], parse_constant=_reject_constant))
    return samples


def script_command(script: str, *args: str) -> List[str]:
    return [PYTHON, "-u", str(REPO_ROOT / script), *args]


def run_script(
    script: str, *args: str, cwd: Path, env: Optional[dict] = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    return subprocess.run(
        script_command(script, *args), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def start_script(script: str, *args: str, cwd: Path, env: Optional[dict] = None) -> subprocess.Popen:
    return subprocess.Popen(
        script_command(script, *args),
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_line(process: subprocess.Popen, prefix: str, timeout: float) -> List[str]:
    """Read stdout lines until one starts with `prefix`; returns the lines read (fails on timeout or exit)."""
    lines: List[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            raise AssertionError(f"process ended before printing {prefix!r}: {process.stderr.read()[-2000:]}")
        lines.append(line)
        if line.startswith(prefix):
            return lines
    raise AssertionError(f"no line starting with {prefix!r} within {timeout} s")


def interrupt(process: subprocess.Popen, timeout: float = 30) -> tuple:
    """Send one SIGINT to the pid only (as the controller does) and collect the rest of the output."""
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=timeout)
    return stdout, stderr


def processes_matching(pattern: str) -> List[str]:
    """Command lines of live processes containing `pattern` (e.g. a game's unique --port=N)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = Path(f"/proc/{pid}/stat").read_text().split()[2]
        except OSError:
            continue
        if pattern in command and state != "Z":
            found.append(command)
    return found


def in_session(session: int) -> List[str]:
    """Live processes of a process session (a script started with start_new_session, and all it started)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(stat[3]) == session and stat[0] != "Z":
            found.append(pid)
    return found


def run_in_own_session(
    command: List[str], cwd: Path, env: Optional[dict] = None, timeout: float = 240
) -> subprocess.CompletedProcess:
    """Run `command` in its own session and check that nothing it started (games, Ray) outlives it."""
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    finally:
        process.kill()
    deadline = time.monotonic() + 5
    while in_session(process.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert in_session(process.pid) == [], f"processes outlived the script: {in_session(process.pid)}"
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@contextlib.contextmanager
def ray_head(num_cpus: int = 2) -> Iterator[str]:
    """A Ray head of this test's own, as `ray start --head` starts one; yields its address. It runs with
    `--block` in its own session: stopping it ends that session's processes only, never another user's Ray (no
    `ray stop`, which stops every Ray on the machine)."""
    port = find_free_port_block(1)
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    command = [
        str(Path(PYTHON).parent / "ray"),
        "start",
        "--head",
        "--block",
        f"--port={port}",
        "--node-ip-address=127.0.0.1",
        f"--num-cpus={num_cpus}",
        "--include-dashboard=false",
        "--disable-usage-stats",
    ]
    head = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        output = []
        for line in head.stdout:
            output.append(line)
            if "Ray runtime started" in line:
                break
        else:
            raise AssertionError(f"ray start failed: {''.join(output)[-2000:]}")
        yield f"127.0.0.1:{port}"
    finally:
        head.send_signal(signal.SIGTERM)  # `--block` then stops the processes it started
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
        deadline = time.monotonic() + 10
        while in_session(head.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in in_session(head.pid):  # whatever is left of this head's session, by pid
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
