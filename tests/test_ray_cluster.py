"""rllib_training_script.py on a real two-node Ray cluster on this machine: a head and a worker node, each
started by `ray start` in its own session with its own ports; the worker node runs from a directory without
the suite and without PYTHONPATH, so its env runners only have the package Ray ships (py_modules). The env
runners need the worker node's custom resource, so they run there. One cluster for the whole module; the test
that removes the worker node runs last."""

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator, List

import pytest
import yaml
from conftest import PYTHON, SIM_DIR, find_free_port_block
from script_helpers import in_session, metric_lines, processes_matching, script_command

SCRIPT = "rllib_training_script.py"
PONG = str(SIM_DIR / "Pong.x86_64")
RAY = str(Path(PYTHON).parent / "ray")
NODE_RESOURCE = "godot_node"


def start_node(arguments: List[str], cwd: str, env: dict) -> subprocess.Popen:
    """`ray start --block ...` in its own session, returned once the node runs."""
    node = subprocess.Popen(
        [RAY, "start", "--block", "--disable-usage-stats", *arguments],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output = []
    for line in node.stdout:
        output.append(line)
        if "Ray runtime started" in line:
            return node
    stop_node(node)
    raise AssertionError(f"ray start failed: {''.join(output)[-2000:]}")


def stop_node(node: subprocess.Popen) -> None:
    """Stop one node: `--block` stops what it started on SIGTERM; leftovers of its session are killed."""
    node.send_signal(signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        node.wait(timeout=30)
    deadline = time.monotonic() + 10
    while in_session(node.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in in_session(node.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)


class TwoNodeCluster:
    def __init__(self, root: Path):
        from ray.util import get_node_ip_address

        self.root = root
        self.port = find_free_port_block(1)
        head_ip = (
            get_node_ip_address()
        )  # the head where a driver here looks for it, the worker node elsewhere
        self.address = f"{head_ip}:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "PYTHONPATH")}
        self.head = start_node(
            [
                "--head",
                f"--port={self.port}",
                "--num-cpus=1",
                "--include-dashboard=false",
                f"--temp-dir={root / 'ray'}",
            ],
            cwd=str(root),
            env=self.env,
        )
        self.worker_dir = root / "worker_node"  # no suite here: runners get the package from Ray
        self.worker_dir.mkdir()
        self.worker = start_node(
            [
                f"--address={self.address}",
                "--node-ip-address=127.0.0.2",
                "--num-cpus=2",
                f'--resources={{"{NODE_RESOURCE}": 2}}',
            ],
            cwd=str(self.worker_dir),
            env=self.env,
        )
        # On one machine the worker node shares the head's session dir and overwrites the node IP cached in
        # it, which a driver started here reads to choose its raylet; on its own machine it would not. Put the
        # head's back, so drivers join the head's raylet and survive the worker node's removal.
        cached_ip = root / "ray" / "session_latest" / "node_ip_address.json"
        cached_ip.write_text(json.dumps({"node_ip_address": head_ip}))

    def on_worker_node(self, pid: int) -> bool:
        return str(pid) in in_session(self.worker.pid)

    def stop(self) -> None:
        stop_node(self.worker)
        stop_node(self.head)


@pytest.fixture(scope="module")
def cluster() -> Iterator[TwoNodeCluster]:
    root = Path(tempfile.mkdtemp(prefix="rc", dir="/tmp"))  # Ray's socket paths must stay short
    cluster = TwoNodeCluster(root)
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def cluster_config(
    tmp_path: Path, port: int, stop, checkpoint_frequency: int = 1, runners: int = 2, **settings
) -> Path:
    """A small Pong run whose env runners need the worker node's resource."""
    data = {
        "algorithm": "PPO",
        "checkpoint_frequency": checkpoint_frequency,
        "stop": stop,
        "config": {
            "env_config": {"env_path": PONG, "action_repeat": 8, "speedup": 8, "port": port},
            "num_workers": runners,
            "custom_resources_per_env_runner": {NODE_RESOURCE: 1},
            "rollout_fragment_length": 100,
            "train_batch_size": 200,
            "sgd_minibatch_size": 100,
            "num_sgd_iter": 1,
            "model": {"fcnet_hiddens": [16]},
            **settings,
        },
    }
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def start_run(cluster: TwoNodeCluster, tmp_path: Path, config: Path) -> subprocess.Popen:
    return subprocess.Popen(
        script_command(
            SCRIPT,
            f"--config_file={config}",
            f"--experiment_dir={tmp_path / 'exp'}",
            f"--ray_address={cluster.address}",
        ),
        cwd=tmp_path,
        env=dict(cluster.env, CONTROLLER_METRICS="1", RAY_DEDUP_LOGS="0"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def read_until(process: subprocess.Popen, prefix: str, timeout: float = 120) -> List[str]:
    """stdout lines up to the first that starts with `prefix`."""
    lines = []
    deadline = time.monotonic() + timeout
    for line in process.stdout:
        lines.append(line)
        if line.startswith(prefix):
            return lines
        assert time.monotonic() < deadline, f"no {prefix!r} line within {timeout} s"
    raise AssertionError(f"run ended before a {prefix!r} line: {process.stderr.read()[-3000:]}")


def game_runner_pid(port: int) -> int:
    """The pid of the env runner that started the game on `port` (the game's parent)."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            if PONG in command and f"--port={port} " in command:
                return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    raise AssertionError(f"no game on port {port}")


def python_path(pid: int) -> str:
    """The PYTHONPATH of a process. On one machine a runner could also find the suite through the driver's
    directory, which Ray appends to every worker's sys.path; the shipped package comes first, in
    PYTHONPATH."""
    for entry in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
        if entry.startswith(b"PYTHONPATH="):
            return entry.decode()
    return ""


def finish(process: subprocess.Popen, lines: List[str], timeout: float = 120) -> tuple:
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    finally:
        process.kill()
    return "".join(lines) + stdout, stderr


def checkpoints(tmp_path: Path) -> list:
    return sorted(tmp_path.glob("exp/*/*/checkpoint_*/algorithm_state.pkl"))


def error_lines(stderr: str) -> list:
    return [line for line in stderr.splitlines() if line.startswith("ERROR:")]


def assert_no_games(port: int, count: int = 2) -> None:
    deadline = time.monotonic() + 10
    while any(processes_matching(f"--port={port + i} ") for i in range(1, count + 1)):
        assert time.monotonic() < deadline, "a game outlived its run"
        time.sleep(0.3)


def test_runners_on_the_worker_node_survive_a_killed_runner(cluster, tmp_path):
    """Both runners (and their games) run on the worker node, which has no suite; one runner killed with
    SIGKILL mid-run is restarted by Ray with its game on the same port, and all iterations finish."""
    port = find_free_port_block(3)
    process = start_run(cluster, tmp_path, cluster_config(tmp_path, port, {"training_iteration": 6}))
    lines = read_until(process, "@METRIC ")
    runner = game_runner_pid(port + 1)
    assert cluster.on_worker_node(runner) and cluster.on_worker_node(game_runner_pid(port + 2))
    assert "py_modules_files" in python_path(runner), "the runner imports the package Ray shipped"
    os.kill(runner, signal.SIGKILL)
    stdout, stderr = finish(process, lines)
    assert process.returncode == 0, stderr[-3000:]
    samples = metric_lines(stdout)
    assert [s["training_iteration"] for s in samples] == [1, 2, 3, 4, 5, 6]
    counts = [s["env_runner_restarts"] for s in samples]
    assert counts == sorted(counts) and counts[-1] == 1, counts
    assert samples[-1]["custom_metrics"]["env_runner_restarts"] == 1
    assert "env runner restarts 1" in stdout
    game_started = f"Pong (Godot RL example game, simulated) seed=1 port={port + 1}"
    runners = set(re.findall(rf"RolloutWorker pid=(\d+).*{re.escape(game_started)}", stdout))
    assert len(runners) == 2, "the restarted runner (a new process) started its game again, on its port"
    assert error_lines(stderr) == []
    assert_no_games(port)


def test_search_trials_run_on_the_worker_node(cluster, tmp_path):
    """hyperparameter_search.py --ray_address: a trial (one game and its learner: 2 CPUs, which only the
    worker node has) runs there, trainer and game, and finishes."""
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"hyperparameters": {"learning_rate": {"loguniform": [1e-4, 1e-3]}}}))
    done = subprocess.run(
        script_command(
            "hyperparameter_search.py",
            "--trainer=sb3",
            f"--env_path={SIM_DIR / 'BallChase.x86_64'}",
            f"--search_space={space}",
            "--num_trials=1",
            "--timesteps=160",
            f"--experiment_dir={tmp_path / 'searches'}",
            f"--ray_address={cluster.address}",
            f"--port={find_free_port_block(3)}",
            "--",
            "--speedup=8",
            "--torch_threads=1",
        ),
        cwd=tmp_path,
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (summary,) = tmp_path.glob("searches/sb3_ppo/trial_000_*/search_trial.json")
    trial = json.loads(summary.read_text())
    assert trial["status"] == "finished" and trial["node_ip"] == "127.0.0.2", trial


def test_a_runner_lost_beyond_max_num_env_runner_restarts_ends_the_run(cluster, tmp_path):
    port = find_free_port_block(3)
    config = cluster_config(
        tmp_path, port, {"training_iteration": 100}, runners=1, max_num_env_runner_restarts=0
    )
    process = start_run(cluster, tmp_path, config)
    lines = read_until(process, "@METRIC ")
    os.kill(game_runner_pid(port + 1), signal.SIGKILL)
    stdout, stderr = finish(process, lines)
    assert process.returncode == 1, stderr[-3000:]
    errors = error_lines(stderr)
    assert len(errors) == 1 and "max_num_env_runner_restarts 0" in errors[0], stderr[-3000:]
    assert checkpoints(tmp_path), "the last checkpoint is kept"
    assert_no_games(port)


@pytest.mark.parametrize("moment", ["first iteration", "checkpoint write"])
def test_sigterm_saves_a_final_checkpoint(cluster, tmp_path, moment):
    """SIGTERM while the first iteration samples on the worker node, or as an iteration's checkpoint is
    written: a final checkpoint, the games closed, exit 0."""
    port = find_free_port_block(3)
    process = start_run(cluster, tmp_path, cluster_config(tmp_path, port, None, runners=1))
    lines = read_until(process, "Training policies" if moment == "first iteration" else "iteration 1 |")
    process.send_signal(signal.SIGTERM)
    stdout, stderr = finish(process, lines, timeout=60)
    assert process.returncode == 0, stderr[-3000:]
    assert checkpoints(tmp_path) and "Saved checkpoint" in stdout
    assert all(path.parent.joinpath("policies", "left_policy").is_dir() for path in checkpoints(tmp_path))
    assert error_lines(stderr) == [] and "SIGTERM received" not in stderr
    assert_no_games(port)


def test_a_second_sigterm_skips_the_checkpoint(cluster, tmp_path):
    """The second SIGTERM, while the first waits for the iteration in progress to end."""
    port = find_free_port_block(3)
    config = cluster_config(tmp_path, port, None, checkpoint_frequency=1000, runners=1)
    data = yaml.safe_load(config.read_text())
    data["config"]["env_config"]["game_args"] = {
        "step_cost_ms": 3
    }  # with action_repeat 8: about 2.5 s per iteration
    config.write_text(yaml.safe_dump(data))
    process = start_run(cluster, tmp_path, config)
    lines = read_until(process, "@METRIC ")
    process.send_signal(signal.SIGTERM)
    for line in process.stderr:
        if line.startswith("Stopping: saving a final checkpoint"):
            break
    process.send_signal(signal.SIGTERM)
    stdout, _ = finish(process, lines, timeout=60)
    assert process.returncode == 130
    assert checkpoints(tmp_path) == [] and "Saved checkpoint" not in stdout
    assert_no_games(port)


def test_driver_killed_leaves_no_runner_and_no_game(cluster, tmp_path):
    """SIGKILL of the driver: Ray ends its job's actors, and each game ends with its runner."""
    port = find_free_port_block(3)
    process = start_run(cluster, tmp_path, cluster_config(tmp_path, port, None))
    lines = read_until(process, "@METRIC ")
    runners = [game_runner_pid(port + 1), game_runner_pid(port + 2)]
    process.kill()
    finish(process, lines, timeout=10)
    killed = time.monotonic()
    while any(Path(f"/proc/{pid}").exists() for pid in runners) or processes_matching(f"--port={port + 1} "):
        assert time.monotonic() - killed < 60, "runners or games outlived the driver by a minute"
        time.sleep(0.2)
    print(f"runners and games gone {time.monotonic() - killed:.1f} s after the driver's SIGKILL")
    assert_no_games(port)


def test_worker_node_removed_ends_cleanly_with_a_checkpoint(cluster, tmp_path):
    """Last: the worker node goes away (as a preempted machine), so the runners cannot come back."""
    port = find_free_port_block(3)
    process = start_run(cluster, tmp_path, cluster_config(tmp_path, port, None))
    lines = read_until(process, "@METRIC ")
    stop_node(cluster.worker)
    _, stderr = finish(process, lines, timeout=240)
    assert process.returncode == 1, stderr[-3000:]
    errors = error_lines(stderr)
    assert len(errors) == 1 and f"resources it needs ({NODE_RESOURCE} 1" in errors[0], stderr[-3000:]
    assert checkpoints(tmp_path)
    assert_no_games(port)
