"""One search trial: the suite's own trainer in its own process, its `@METRIC` lines reported to Ray Tune.

The trial runs the shipped trainer's `main` (`godot_rl_cli.cli.train_sb3`/`train_rllib`) in a process of its
own, forked from the actor's trainer server (search/launch.py), with CONTROLLER_METRICS=1, its games on a port
block no other trial uses and its own seed, everything the trainer writes under the trial's directory. Its
`@METRIC` lines become Tune results (batched, see GameTrial._report_every). When Tune stops the trial
(pruning) or the search is interrupted, the trainer gets one SIGINT and saves as a normal run does.
"""

import json
import math
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Deque, Dict, List, Optional

from ray import tune

from godot_rl_cli.metrics import PREFIX
from godot_rl_cli.search.launch import TrainerProcess
from godot_rl_cli.search.plan import SearchPlan
from godot_rl_cli.search.space import GAME_ARG_PREFIX

REPORTS_PER_TRIAL = 20  # Tune results per trial, at most (see GameTrial._report_every)
RECENT_ITERATIONS = 3  # `reward_recent`: mean episode reward of this many last iterations
SAVE_WAIT_S = 120.0  # how long a stopped trainer may take to save before it is killed
POLL_S = 0.5
SUMMARY = "search_trial.json"
TRAINER_STDOUT = "trainer.log"  # the trainer's stdout (its @METRIC lines and progress)
TRAINER_STDERR = "trainer.err"
# The suite's commands a search runs: the package module (layout of issue 24), else the top-level script.
MODULES = {
    "sb3": "godot_rl_cli.cli.train_sb3",
    "rllib": "godot_rl_cli.cli.train_rllib",
    "export_rllib": "godot_rl_cli.cli.export_rllib",
}
SCRIPTS = {
    "sb3": "stable_baselines3_training_script.py",
    "rllib": "rllib_training_script.py",
    "export_rllib": "convert_rllib_to_onnx.py",
}


def suite_command(name: str) -> List[str]:
    """How to start one of the suite's commands on this node: its package module, else the script beside the
    package."""
    if find_spec("godot_rl_cli.cli") and find_spec(MODULES[name]):
        return [sys.executable, "-u", "-m", MODULES[name]]
    script = Path(_package_root()) / SCRIPTS[name]
    if script.is_file():
        return [sys.executable, "-u", str(script)]
    raise RuntimeError(f"{SCRIPTS[name]} is not on this node (looked in {script.parent})")


def suite_env() -> Dict[str, str]:
    """This environment, the package on PYTHONPATH: `python -m godot_rl_cli.cli.X` runs from any directory."""
    return dict(
        os.environ, PYTHONPATH=os.pathsep.join(filter(None, [_package_root(), os.environ.get("PYTHONPATH")]))
    )


def trial_index(trial_name: str) -> int:
    """The trial's number in the search (`trial_007` -> 7), from `trial_name`."""
    return int(trial_name.split("_")[1])


def stop_requested(plan: SearchPlan) -> bool:
    """True once the search was told to stop (SIGINT/SIGTERM of the search command)."""
    from ray.experimental.internal_kv import _internal_kv_get

    return bool(_internal_kv_get(plan.stop_key))


@dataclass
class TrainerOutput:
    """What the trainer printed: metric payloads in order, and the last lines for the error message."""

    metrics: "queue.Queue[Optional[Dict[str, Any]]]" = field(default_factory=queue.Queue)
    last_lines: Deque[str] = field(default_factory=lambda: deque(maxlen=40))
    error_lines: List[str] = field(default_factory=list)

    def follow(self, path: Path, process: "TrainerProcess", is_stdout: bool) -> None:
        """Read the trainer's output file as it grows, until the trainer has exited and all is read."""
        with path.open(encoding="utf-8", errors="replace") as stream:
            partial = ""
            while True:
                chunk = stream.readline()
                if chunk:
                    partial += chunk
                    if partial.endswith("\n"):
                        self._take(partial.rstrip("\n"), is_stdout)
                        partial = ""
                    continue
                if process.poll() is not None:
                    for line in (partial + stream.read()).splitlines():
                        self._take(line, is_stdout)
                    break
                time.sleep(0.1)
        if is_stdout:
            self.metrics.put(None)  # end of output

    def _take(self, line: str, is_stdout: bool) -> None:
        if is_stdout and line.startswith(PREFIX):
            try:
                self.metrics.put(json.loads(line[len(PREFIX) :]))
            except json.JSONDecodeError:
                pass
            return
        self.last_lines.append(line)
        if line.startswith("ERROR:"):
            self.error_lines.append(line)

    def error(self, exit_code: int) -> str:
        """The trainer's own ERROR line (the game's error) or, failing that, its last output lines."""
        if self.error_lines:
            return self.error_lines[-1]
        tail = " | ".join(list(self.last_lines)[-3:])
        return f"the trainer exited with code {exit_code}" + (f": {tail}" if tail else "")


class GameTrial(tune.Trainable):
    """A Tune trainable whose every step is the trainer's iterations up to the next report (_report_every).
    Tune reuses it for the search's next trial (reset_config)."""

    def setup(self, config: Dict[str, Any], plan: SearchPlan) -> None:
        self.plan = plan
        self._start(config)

    def reset_config(self, new_config: Dict[str, Any]) -> bool:
        """The next trial on this actor (Tune's `reuse_actors`): the trainer server's imports are kept. Tune
        does not call `cleanup` on a trial whose actor it reuses: a pruned trainer is stopped here."""
        self.cleanup()
        self._start(new_config)
        return True

    def _start(self, config: Dict[str, Any]) -> None:
        plan = self.plan
        self.index = trial_index(self.trial_name)
        self.directory = Path(getattr(self._storage, "trial_fs_path", None) or self.logdir)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.started = time.time()
        self.rewards: List[float] = []
        self.last: Dict[str, Any] = {}
        self.status = "running"
        self.error = ""
        hyperparameters = {k: v for k, v in config.items() if not k.startswith(GAME_ARG_PREFIX)}
        game_args = {k[len(GAME_ARG_PREFIX) :]: v for k, v in config.items() if k.startswith(GAME_ARG_PREFIX)}
        port = plan.trial_port(self.index)
        arguments = plan.trainer_arguments(
            self.directory, hyperparameters, game_args, port, plan.seed + self.index, _cluster_address()
        )
        (self.directory / "command.txt").write_text(" ".join(suite_command(plan.trainer) + arguments) + "\n")
        env = dict(suite_env(), CONTROLLER_METRICS="1", PYTHONUNBUFFERED="1")
        self.output = TrainerOutput()
        self.next_report = self._report_every()
        self.stop_checked = time.monotonic()
        # Files, not pipes: the trainer outlives this actor when Tune ends it while the trainer saves.
        for name in (TRAINER_STDOUT, TRAINER_STDERR):
            (self.directory / name).write_text("")
        self.process = TrainerProcess(
            plan.trainer,
            arguments,
            env,
            str(self.directory),
            [str(self.directory / TRAINER_STDOUT), str(self.directory / TRAINER_STDERR)],
        )
        self.readers = [
            threading.Thread(
                target=self.output.follow, args=(self.directory / name, self.process, is_stdout), daemon=True
            )
            for name, is_stdout in ((TRAINER_STDOUT, True), (TRAINER_STDERR, False))
        ]
        for reader in self.readers:
            reader.start()

    def step(self) -> Dict[str, Any]:
        if self.status != "running":  # stopped for the interrupted search: Tune ends the trial next
            time.sleep(POLL_S)
            return {**self.last, "interrupted": True}
        while True:
            try:
                payload = self.output.metrics.get(timeout=POLL_S)
            except queue.Empty:
                payload = {}
            if payload is None:
                return self._trainer_ended()
            if payload:
                self.last = self._result(payload)
            if self._stop_check_due() and stop_requested(self.plan):
                self._stop_trainer("stopped")
                return {**self.last, "interrupted": True}
            # the budget reached, the trainer saves and exits: the trial's last result waits for that, so
            # Tune never stops a trial that is finishing (it kills actors 10 s after the search ends)
            if payload and self.next_report <= self.last["steps"] < self.plan.timesteps:
                self.next_report = (self.last["steps"] // self._report_every() + 1) * self._report_every()
                return self.last

    def _report_every(self) -> int:
        """Steps between Tune results: a trainer's short iterations are batched (Tune handles each result on
        the driver, a tenth of a second or more under load: 320 results made a trial twice as long)."""
        return max(1, self.plan.timesteps // REPORTS_PER_TRIAL)

    def _stop_check_due(self) -> bool:
        """At most one look at the search's stop key per POLL_S (one round trip to Ray's GCS)."""
        now = time.monotonic()
        if now - self.stop_checked < POLL_S:
            return False
        self.stop_checked = now
        return True

    def _result(self, payload: Dict[str, Any]) -> Dict[str, Any]:
        reward = payload.get("episode_reward_mean")
        if isinstance(reward, (int, float)) and math.isfinite(reward):
            self.rewards.append(float(reward))
        recent = self.rewards[-RECENT_ITERATIONS:]
        evaluation = payload.get("eval_reward_mean")
        if not isinstance(evaluation, (int, float)):
            evaluation = self.last.get("eval_reward_mean", math.nan)
        return {
            "episode_reward_mean": reward if isinstance(reward, (int, float)) else math.nan,
            "reward_recent": sum(recent) / len(recent) if recent else math.nan,
            "eval_reward_mean": evaluation,
            "steps": int(payload.get("timesteps_total") or 0),
            "trainer_iteration": payload.get("training_iteration"),
            "trial_index": self.index,
        }

    def _trainer_ended(self) -> Dict[str, Any]:
        exit_code = self.process.wait()
        for reader in self.readers:
            reader.join(timeout=5)
        if exit_code != 0:
            self.status, self.error = "failed", self.output.error(exit_code)
            self._write_summary()
            raise RuntimeError(self.error)
        self.status = "finished"
        self._write_summary()
        return {**self.last, "done": True}

    def _stop_trainer(self, status: str) -> None:
        """SIGINT, as the controller stops a run: the trainer saves its model and closes its games. The
        summary is written first: Tune may end this actor before the save is done (the trainer, in its own
        session, finishes it anyway)."""
        if self.process.poll() is None:
            self.status = status
            self._write_summary()
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=SAVE_WAIT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for reader in self.readers:
            reader.join(timeout=5)
        self._write_summary()

    def _write_summary(self) -> None:
        summary = {
            "status": self.status,
            "error": self.error,
            "steps": self.last.get("steps", 0),
            "wall_time_s": round(time.time() - self.started, 1),
            "exit_code": self.process.returncode,
            "pid": self.process.pid,
            "node_ip": _node_ip(),
        }
        (self.directory / SUMMARY).write_text(json.dumps(summary, indent=2))

    def cleanup(self) -> None:
        if self.status == "running":
            self._stop_trainer("stopped" if stop_requested(self.plan) else "pruned")


def wait_for_trainers(search_dir: Path, node_ip: str) -> None:
    """Wait (up to SAVE_WAIT_S) for stopped trials' trainers on this node that are still saving: Tune ends a
    trial's actor 10 s after the search ends, not its trainer."""
    deadline = time.monotonic() + SAVE_WAIT_S
    for summary_path in search_dir.glob(f"*/{SUMMARY}"):
        try:
            summary = json.loads(summary_path.read_text())
        except (OSError, ValueError):
            continue
        if summary.get("node_ip") != node_ip or summary.get("exit_code") is not None:
            continue
        while _alive(int(summary["pid"])) and time.monotonic() < deadline:
            time.sleep(POLL_S)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _node_ip() -> str:
    import ray

    return ray.util.get_node_ip_address()


def _cluster_address() -> str:
    import ray

    return ray.get_runtime_context().gcs_address


def _package_root() -> str:
    """The directory holding `godot_rl_cli` on this node (a checkout, or what Ray shipped)."""
    import godot_rl_cli

    return str(Path(godot_rl_cli.__file__).resolve().parent.parent)
