"""Both trainers against a real Godot engine: the Godot 3 game examples/godot3/BallChase2D on godot3-server.

Under CI=true a missing godot3-server fails these tests (.ci/run installs it); elsewhere they are skipped.
"""

import os
import shutil
import signal
import subprocess
import time
import zipfile
from pathlib import Path
from typing import List

import pytest
import yaml
from conftest import IN_CI, REPO_ROOT, find_free_port_block
from onnx_helpers import assert_godot_interface
from script_helpers import (
    interrupt,
    metric_lines,
    processes_matching,
    run_script,
    script_command,
    start_script,
    wait_for_line,
)
from wire_helpers import RawTrainer

GODOT3_DIR = REPO_ROOT / "examples" / "godot3"
SB3 = "stable_baselines3_training_script.py"
RLLIB = "rllib_training_script.py"


@pytest.fixture(scope="module", autouse=True)
def godot3_engine() -> None:
    if shutil.which("godot3-server") is None:
        message = "godot3-server is not installed (apt-get install godot3-server)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def game_path(tmp_path: Path) -> str:
    """The game copied under a directory whose name contains spaces, as users' paths often do."""
    target = tmp_path / "my games" / "ball chase"
    shutil.copytree(GODOT3_DIR, target)
    return str(target / "BallChase2D.x86_64")


def engine_pids(port: int) -> List[int]:
    """Live godot3-server processes started for the game on `port`."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and argv[0].endswith(b"godot3-server") and f"--port={port}".encode() in argv:
            pids.append(int(pid))
    return pids


def assert_no_engine_left(port: int, n_games: int) -> None:
    time.sleep(0.5)
    for index in range(n_games):
        assert engine_pids(port + index) == [], f"godot3-server for port {port + index} outlived the trainer"
        assert processes_matching(f"--port={port + index} ") == []


def sb3_args(tmp_path: Path, game_path: str, port: int, timesteps: int, n_parallel: int = 2) -> list:
    return [
        f"--env_path={game_path}",
        f"--experiment_dir={tmp_path / 'exp'}",
        "--experiment_name=run",
        f"--timesteps={timesteps}",
        f"--n_parallel={n_parallel}",
        f"--port={port}",
        "--speedup=8",
        "--framerate=2000",
    ]


def test_game_speaks_the_plugin_protocol_and_quits_when_the_trainer_goes_away(game_path):
    trainer = RawTrainer(
        game_path, "--fixed-fps", "2000", env_seed=7, n_agents=3, policy_mode="split", action_repeat=4
    )
    try:
        info, reset = trainer.connect(timeout=30)
        assert info["type"] == "env_info" and info["n_agents"] == 3
        assert info["agent_policy_names"] == ["policy_0", "policy_1", "policy_2"]
        assert info["observation_space"] == [{"obs": {"size": [6], "space": "box"}}] * 3
        assert info["action_space"] == [{"move": {"size": 2, "action_type": "continuous"}}] * 3
        assert (
            reset["type"] == "reset"
            and len(reset["obs"]) == 3
            and all(len(obs["obs"]) == 6 for obs in reset["obs"])
        )
        start = [obs["obs"][2] for obs in reset["obs"]]
        total_reward = 0.0
        for _ in range(100):  # 400 physics ticks: far more than the arena's width at full speed
            trainer.send(
                {
                    "type": "action",
                    "action": [{"move": [1.0, 0.0]}, {"move": [0.0, 0.0]}, {"move": [-1.0, 0.0]}],
                }
            )
            step = trainer.receive()
            assert (
                step["type"] == "step" and len(step["reward"]) == len(step["done"]) == len(step["info"]) == 3
            )
            total_reward += sum(step["reward"])
        end = [obs["obs"][2] for obs in step["obs"]]
        wall = (320 - 16) / 320  # arena half-size minus the player's radius
        assert end[0] == pytest.approx(wall, abs=1e-3) and end[2] == pytest.approx(-wall, abs=1e-3), (
            "the walls stop the runners"
        )
        assert end[1] == pytest.approx(start[1], abs=1e-6), "the idle player stays put"
        assert total_reward != 0.0
        assert set(step["info"][0]) == {"targets_reached", "distance"}
        trainer.send({"type": "call", "method": "get_info"})
        call = trainer.receive()
        assert call["type"] == "call" and call["returns"][1]["distance"] == pytest.approx(
            step["info"][1]["distance"]
        )
        trainer.conn.close()
        trainer.conn = None
        assert trainer.proc.wait(timeout=10) == 0, "the game quits when the trainer goes away"
        assert b"the trainer went away" in trainer.proc.stdout.read()
    finally:
        trainer.close()


def test_game_quits_on_close(game_path):
    trainer = RawTrainer(game_path, "--fixed-fps", "2000")
    try:
        trainer.connect(timeout=30)
        trainer.send({"type": "close"})
        assert trainer.proc.wait(timeout=10) == 0
    finally:
        trainer.close()


def test_sb3_trains_two_real_games_with_metrics_and_onnx(tmp_path, game_path):
    port = find_free_port_block(4)
    onnx_path = tmp_path / "ballchase2d.onnx"
    env = dict(os.environ, CONTROLLER_METRICS="1")
    result = run_script(
        SB3,
        *sb3_args(tmp_path, game_path, port, 3000),
        f"--onnx_export_path={onnx_path}",
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    samples = metric_lines(result.stdout)
    assert len(samples) >= 5
    assert [sample["training_iteration"] for sample in samples] == list(range(1, len(samples) + 1))
    steps = [sample["timesteps_total"] for sample in samples]
    assert steps == sorted(steps) and steps[-1] >= 3000
    assert all(set(sample["policies"]) == {"shared_policy"} for sample in samples)
    finished = [sample for sample in samples if sample["episodes_this_iter"] > 0]
    assert finished, "episodes of 100 steps finished within 3000 steps of 4 players"
    assert "targets_reached" in finished[-1]["custom_metrics"]
    assert zipfile.is_zipfile(tmp_path / "exp" / "run_final.zip")
    assert_godot_interface(onnx_path, ["obs"])
    assert_no_engine_left(port, 2)


def test_sb3_sigint_saves_the_model_and_stops_the_engines(tmp_path, game_path):
    port = find_free_port_block(4)
    process = start_script(
        SB3,
        *sb3_args(tmp_path, game_path, port, 10_000_000),
        cwd=tmp_path,
        env=dict(os.environ, CONTROLLER_METRICS="1"),
    )
    try:
        wait_for_line(process, "@METRIC ", timeout=60)
        assert len(engine_pids(port)) == len(engine_pids(port + 1)) == 1
        started = time.monotonic()
        _, stderr = interrupt(process)
        assert time.monotonic() - started < 15
    finally:
        process.kill()
    assert process.returncode == 0, stderr[-3000:]
    assert zipfile.is_zipfile(tmp_path / "exp" / "run_final.zip")
    assert_no_engine_left(port, 2)


def kill_engine_during_training(script: str, args: list, cwd: Path, engine_port: int) -> tuple:
    """Start a trainer, SIGKILL the engine on `engine_port` once training runs; returns (exit code, stderr,
    seconds to exit)."""
    process = start_script(script, *args, cwd=cwd, env=dict(os.environ, CONTROLLER_METRICS="1"))
    try:
        wait_for_line(process, "@METRIC ", timeout=120)
        [engine] = engine_pids(engine_port)
        os.kill(engine, signal.SIGKILL)
        killed = time.monotonic()
        _, stderr = process.communicate(timeout=60)
        return process.returncode, stderr, time.monotonic() - killed
    finally:
        process.kill()


def test_sb3_killed_engine_is_reported_and_the_model_saved(tmp_path, game_path):
    port = find_free_port_block(4)
    returncode, stderr, seconds = kill_engine_during_training(
        SB3, sb3_args(tmp_path, game_path, port, 10_000_000), tmp_path, port + 1
    )
    assert returncode == 1 and seconds < 15
    errors = [line for line in stderr.splitlines() if line.startswith("ERROR:")]
    assert len(errors) == 1 and "BallChase2D.x86_64" in errors[0] and f"port {port + 1}" in errors[0], stderr[
        -3000:
    ]
    assert "killed by SIGKILL" in errors[0] and "BallChase2D: connected" in errors[0], (
        "exit status and last output of the engine"
    )
    assert zipfile.is_zipfile(tmp_path / "exp" / "run_final.zip")
    assert_no_engine_left(port, 2)


def rllib_config(tmp_path: Path, game_path: str, port: int, iterations: int) -> Path:
    data = {
        "algorithm": "PPO",
        "env": "godot",
        "env_config": {
            "env_path": game_path,
            "speedup": 8,
            "framerate": 2000,
            "port": port,
            "game_args": {"n_agents": 2, "policy_mode": "split"},
        },
        "multiagent": {
            "policies": ["policy_0", "policy_1"],
            "policy_mapping_fn": (
                "def policy_mapping_fn(agent_id, episode, worker, **kwargs):\n"
                "    return f'policy_{agent_id}'\n"
            ),
        },
        "checkpoint_frequency": 1,
        "stop": {"training_iteration": iterations},
        "num_workers": 0,
        "rollout_fragment_length": 200,
        "train_batch_size": 400,
        "sgd_minibatch_size": 100,
        "num_sgd_iter": 2,
        "model": {"fcnet_hiddens": [32, 32]},
    }
    path = tmp_path / "rllib_config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_rllib_trains_two_policies_on_the_real_engine(tmp_path, game_path):
    port = find_free_port_block(2)
    config = rllib_config(tmp_path, game_path, port, iterations=2)
    result = run_script(
        RLLIB,
        f"--config_file={config}",
        f"--experiment_dir={tmp_path / 'exp'}",
        cwd=tmp_path,
        env=dict(os.environ, CONTROLLER_METRICS="1"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    samples = metric_lines(result.stdout)
    assert [sample["training_iteration"] for sample in samples] == [1, 2]
    assert all(set(sample["policies"]) == {"policy_0", "policy_1"} for sample in samples)
    assert samples[-1]["episodes_total"] > 0
    [trial] = {path.parent.parent for path in (tmp_path / "exp").glob("*/*/checkpoint_*/algorithm_state.pkl")}
    checkpoints = sorted(trial.glob("checkpoint_*"))
    assert len(checkpoints) == 2
    assert all(
        sorted(path.name for path in (checkpoint / "policies").iterdir()) == ["policy_0", "policy_1"]
        for checkpoint in checkpoints
    )
    assert_no_engine_left(port, 1)


def test_rllib_sigint_checkpoints_and_stops_the_engine(tmp_path, game_path):
    port = find_free_port_block(2)
    config = rllib_config(tmp_path, game_path, port, iterations=1000)
    process = subprocess.Popen(
        script_command(RLLIB, f"--config_file={config}", f"--experiment_dir={tmp_path / 'exp'}"),
        cwd=tmp_path,
        env=dict(os.environ, CONTROLLER_METRICS="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_line(process, "@METRIC ", timeout=120)
        _, stderr = interrupt(process, timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, stderr[-3000:]
    assert list((tmp_path / "exp").glob("*/*/checkpoint_*/policies/policy_1"))
    assert_no_engine_left(port, 1)


def test_rllib_killed_engine_is_reported_with_a_checkpoint(tmp_path, game_path):
    port = find_free_port_block(2)
    config = rllib_config(tmp_path, game_path, port, iterations=1000)
    returncode, stderr, seconds = kill_engine_during_training(
        RLLIB, [f"--config_file={config}", f"--experiment_dir={tmp_path / 'exp'}"], tmp_path, port
    )
    assert returncode == 1 and seconds < 30
    errors = [line for line in stderr.splitlines() if line.startswith("ERROR:")]
    assert len(errors) == 1 and "BallChase2D.x86_64" in errors[0] and "killed by SIGKILL" in errors[0], (
        stderr[-3000:]
    )
    assert list((tmp_path / "exp").glob("*/*/checkpoint_*/policies/policy_0"))
    assert_no_engine_left(port, 1)
