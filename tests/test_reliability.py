"""Reliability of the SB3 trainer under faults: nothing lost, nothing leaked, always a clear ERROR line.

The game's fault flags (examples/sim) inject each fault for real over TCP; a longer soak run of the
same cases is `bench/soak.py`.
"""

import os
import random
import resource
import socket
import subprocess
import time
import zipfile
from pathlib import Path
from typing import Optional

import pytest
from conftest import SIM_DIR, find_free_port_block
from script_helpers import (
    interrupt,
    metric_lines,
    processes_matching,
    ray_head,
    run_script,
    script_command,
    start_script,
    wait_for_line,
)

SCRIPT = "stable_baselines3_training_script.py"
BALLCHASE = str(SIM_DIR / "BallChase.x86_64")
SIGINT_CYCLES = 3  # per trainer: test_signals stops each phase of a run; bench/soak.py soaks both for minutes


def training_args(tmp_path: Path, port: int, timesteps: int = 100_000, *extra: str) -> list:
    return [
        f"--env_path={BALLCHASE}",
        f"--experiment_dir={tmp_path / 'exp'}",
        "--experiment_name=run",
        f"--timesteps={timesteps}",
        f"--port={port}",
        *extra,
    ]


def assert_model_loadable(path: Path) -> None:
    assert zipfile.is_zipfile(path), f"{path} missing or not a zip"
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None and {"data", "policy.pth"} <= set(archive.namelist())


def assert_clean(tmp_path: Path, port: int, n_parallel: int = 1) -> None:
    """No game process left, no port left bound, no temporary file left."""
    time.sleep(0.3)
    for index in range(n_parallel):
        assert processes_matching(f"--port={port + index} ") == []
        with socket.socket() as probe:  # as the next run binds it: TIME_WAIT is no leak, a listener is
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(("127.0.0.1", port + index))
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name]


def error_lines(stderr: str) -> list:
    return [line for line in stderr.splitlines() if line.startswith("ERROR:")]


@pytest.mark.parametrize(
    "fault",
    [
        "truncated",
        "oversized",
        "wrong_type",
        "missing_fields",
        "wrong_shape",
        "garbage",
        "out_of_order",
        "not_object",
    ],
)
def test_protocol_fuzzing_ends_in_one_error_and_a_saved_model(tmp_path, fault):
    port = find_free_port_block(2)
    args = training_args(
        tmp_path,
        port,
        100_000,
        "--game_arg",
        f"fault={fault}",
        "--game_arg",
        f"fault_after_steps={random.Random(fault).randint(50, 400)}",
        "--step_timeout=5",
    )
    started = time.monotonic()
    result = run_script(SCRIPT, *args, cwd=tmp_path, timeout=60)
    assert result.returncode == 1
    assert len(error_lines(result.stderr)) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert time.monotonic() - started < 10 + 5, (
        "detected and saved within 10 s of the fault (start-up included)"
    )
    assert_model_loadable(tmp_path / "exp" / "run_final.zip")
    assert_clean(tmp_path, port)


def test_non_ascii_text_from_the_game_trains_normally(tmp_path):
    port = find_free_port_block(2)
    result = run_script(
        SCRIPT, *training_args(tmp_path, port, 500, "--game_arg", "fault=non_ascii"), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_nan_reward_stops_with_error_and_no_nan_in_metrics(tmp_path):
    port = find_free_port_block(2)
    env = dict(os.environ, CONTROLLER_METRICS="1")
    result = run_script(
        SCRIPT,
        *training_args(tmp_path, port, 100_000, "--game_arg", "nan_reward_after_steps=300"),
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == 1
    assert "non-finite number (NaN or infinity) in 'reward'" in error_lines(result.stderr)[0]
    assert metric_lines(result.stdout), "strict parsing of every metric line succeeded"
    assert_model_loadable(tmp_path / "exp" / "run_final.zip")


@pytest.mark.parametrize("fault", ["crash_after_steps", "hang_after_steps"])
def test_fault_in_one_of_several_games(tmp_path, fault):
    port = find_free_port_block(4)
    rng = random.Random(fault)
    faulty_seed = rng.randint(0, 2)
    args = training_args(
        tmp_path,
        port,
        100_000,
        "--n_parallel=3",
        "--step_timeout=2",
        "--game_arg",
        f"{fault}={rng.randint(100, 500)}",
        "--game_arg",
        f"fault_seed={faulty_seed}",
    )
    result = run_script(SCRIPT, *args, cwd=tmp_path, timeout=90)
    assert result.returncode == 1
    errors = error_lines(result.stderr)
    assert len(errors) == 1 and f"port {port + faulty_seed}" in errors[0]
    assert_model_loadable(tmp_path / "exp" / "run_final.zip")
    assert_clean(tmp_path, port, 3)


def test_max_env_restarts_relaunches_and_keeps_training(tmp_path):
    port = find_free_port_block(4)
    env = dict(os.environ, CONTROLLER_METRICS="1")
    args = training_args(
        tmp_path,
        port,
        3000,
        "--n_parallel=2",
        "--max_env_restarts=5",
        "--game_arg",
        "crash_after_steps=700",
        "--game_arg",
        "fault_seed=1",
    )
    result = run_script(SCRIPT, *args, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    samples = metric_lines(result.stdout)
    assert samples[-1]["env_restarts"] >= 2 and samples[-1]["timesteps_total"] >= 3000
    assert [s["env_restarts"] for s in samples] == sorted(s["env_restarts"] for s in samples)
    assert "restarting it (1 of --max_env_restarts 5)" in result.stderr
    assert_clean(tmp_path, port, 2)


def test_repeated_sigint_cycles_never_lose_a_model(tmp_path):
    rng = random.Random(2026)
    port = find_free_port_block(2)
    env = dict(os.environ, CONTROLLER_METRICS="1")
    for cycle in range(SIGINT_CYCLES):
        directory = tmp_path / f"cycle{cycle}"
        directory.mkdir()
        args = training_args(directory, port, 10_000_000, "--save_checkpoint_frequency=64")
        process = start_script(SCRIPT, *args, cwd=directory, env=env)
        try:
            wait_for_line(process, "Game ready", timeout=60)
            time.sleep(rng.uniform(0.0, 1.0))
            _, stderr = interrupt(process, timeout=30)
        finally:
            process.kill()
        assert process.returncode == 0, f"cycle {cycle}: {stderr[-2000:]}"
        assert_model_loadable(directory / "exp" / "run_final.zip")
        for checkpoint in (directory / "exp").glob("rl_model_*_steps.zip"):
            assert_model_loadable(checkpoint)
        assert_clean(directory, port)


def test_two_runs_on_the_same_port_at_once(tmp_path):
    port = find_free_port_block(2)
    processes = [start_script(SCRIPT, *training_args(tmp_path, port, 1000), cwd=tmp_path) for _ in range(2)]
    results = [(process.wait(timeout=120), process.stderr.read()) for process in processes]
    for process in processes:
        process.stdout.close()
        process.stderr.close()
    succeeded = [code for code, _ in results if code == 0]
    assert succeeded, results
    for code, stderr in results:
        assert code == 0 or (code == 1 and f"port {port} on 127.0.0.1 is already in use" in stderr), stderr[
            -2000:
        ]
    assert_model_loadable(tmp_path / "exp" / "run_final.zip")
    assert_clean(tmp_path, port)


def test_full_disk_keeps_the_previous_model(tmp_path):
    port = find_free_port_block(2)
    first = run_script(SCRIPT, *training_args(tmp_path, port, 300), cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    final = tmp_path / "exp" / "run_final.zip"
    before = final.read_bytes()
    limit = 64 * 1024  # smaller than a model (about 140 KB): every model write fails as on a full disk
    args = training_args(tmp_path, port, 300, f"--resume_model_path={final}")
    result = subprocess.run(
        script_command(SCRIPT, *args),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)),
    )
    assert result.returncode == 1
    assert "saving failed" in result.stderr and "File too large" in result.stderr
    assert final.read_bytes() == before
    assert_model_loadable(final)
    assert_clean(tmp_path, port)


def test_resume_from_a_truncated_checkpoint_changes_nothing(tmp_path):
    port = find_free_port_block(2)
    first = run_script(SCRIPT, *training_args(tmp_path, port, 300), cwd=tmp_path)
    assert first.returncode == 0
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes((tmp_path / "exp" / "run_final.zip").read_bytes()[:5000])
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    result = run_script(
        SCRIPT, *training_args(tmp_path, port, 300, f"--resume_model_path={truncated}"), cwd=tmp_path
    )
    assert (
        result.returncode == 1 and len(error_lines(result.stderr)) == 1 and "truncated.zip" in result.stderr
    )
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()} == before


# --- RLlib ---------------------------------------------------------------------------------------------

RLLIB = "rllib_training_script.py"
PONG = str(SIM_DIR / "Pong.x86_64")


def rllib_config(
    tmp_path: Path, port: int, stop, envs: int = 1, settings: Optional[dict] = None, **env_config
) -> Path:
    import yaml

    data = {
        "algorithm": "PPO",
        "env_is_multiagent": True,
        "checkpoint_frequency": 1,
        "stop": stop,
        "config": {
            "env": "godot",
            "env_config": {"env_path": PONG, "speedup": 8, "port": port, "step_timeout": 3, **env_config},
            "num_workers": 0,
            "num_envs_per_worker": envs,
            "rollout_fragment_length": 100,  # agent steps: 50 steps of 2-player Pong
            "train_batch_size": 200,
            "sgd_minibatch_size": 50,
            "num_sgd_iter": 1,
            "model": {"fcnet_hiddens": [16]},
            **(settings or {}),
        },
    }
    path = tmp_path / "rllib.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def rllib_checkpoints(experiment_dir: Path) -> list:
    return sorted(experiment_dir.glob("*/*/checkpoint_*"))


@pytest.mark.parametrize("fault", ["crash_after_steps", "hang_after_steps"])
def test_rllib_fault_in_one_of_two_games(tmp_path, fault):
    port = find_free_port_block(4)
    rng = random.Random(fault)
    config = rllib_config(tmp_path, port, {"training_iteration": 100}, envs=2)
    args = [
        f"--config_file={config}",
        f"--experiment_dir={tmp_path / 'exp'}",
        "--game_arg",
        f"{fault}={rng.randint(150, 400)}",
        "--game_arg",
        "fault_seed=1",  # the second game: seed 0 + its port offset 1
    ]
    result = run_script(RLLIB, *args, cwd=tmp_path, timeout=180)
    assert result.returncode == 1
    errors = error_lines(result.stderr)
    assert len(errors) == 1 and f"port {port + 1}" in errors[0], result.stderr[-3000:]
    assert rllib_checkpoints(tmp_path / "exp"), "the last checkpoint is saved"
    assert_clean(tmp_path, port, 2)


def test_rllib_game_failure_in_a_remote_env_runner_is_named_in_the_one_error(tmp_path):
    """The runner exits and Ray reports only its death; the error line still names the game's failure."""
    port = find_free_port_block(3)
    settings = {"num_workers": 1, "max_num_env_runner_restarts": 0}
    config = rllib_config(tmp_path, port, {"training_iteration": 100}, settings=settings)
    args = [
        f"--config_file={config}",
        f"--experiment_dir={tmp_path / 'exp'}",
        "--game_arg",
        "crash_after_steps=120",
    ]
    result = run_script(RLLIB, *args, cwd=tmp_path, timeout=180)
    assert result.returncode == 1
    errors = error_lines(result.stderr)
    assert len(errors) == 1, result.stderr[-3000:]
    assert (
        "env runner 1 was lost" in errors[0]
        and f"its game failed: game {PONG} on port {port + 1}" in errors[0]
    )
    assert "exit code 3" in errors[0] and "simulated engine crash after 120 steps" in errors[0]
    assert rllib_checkpoints(tmp_path / "exp"), "the last checkpoint is saved"
    assert_clean(tmp_path, port, 2)


@pytest.mark.parametrize("max_env_restarts, iterations, returncode", [(5, 3, 0), (1, 100, 1)])
def test_rllib_max_env_restarts_relaunches_crashed_games(tmp_path, max_env_restarts, iterations, returncode):
    port = find_free_port_block(2)
    config = rllib_config(
        tmp_path, port, {"training_iteration": iterations}, max_env_restarts=max_env_restarts
    )
    env = dict(os.environ, CONTROLLER_METRICS="1")
    result = run_script(
        RLLIB,
        f"--config_file={config}",
        f"--experiment_dir={tmp_path / 'exp'}",
        "--game_arg",
        "crash_after_steps=100",
        cwd=tmp_path,
        env=env,
        timeout=180,
    )
    assert result.returncode == returncode, result.stderr[-3000:]
    restarts = [
        line for line in result.stderr.splitlines() if line.startswith("WARNING:") and "restarting it" in line
    ]
    assert "exit code 3" in restarts[0] and f"of max_env_restarts {max_env_restarts}" in restarts[0]
    if returncode == 0:
        samples = metric_lines(result.stdout)
        assert len(restarts) >= 2 and [sample["training_iteration"] for sample in samples] == [1, 2, 3]
        counts = [sample["env_restarts"] for sample in samples]
        assert counts == sorted(counts) and counts[-1] == len(restarts), "every relaunch is counted"
    else:
        assert (
            len(restarts) == 1
            and len(error_lines(result.stderr)) == 1
            and "simulated engine crash" in error_lines(result.stderr)[0]
        )
    assert rllib_checkpoints(tmp_path / "exp")
    assert_clean(tmp_path, port)


@pytest.fixture(scope="module")
def shared_ray_head():
    """One Ray head for the RLlib SIGINT cycles, so that each cycle does not pay Ray's start-up."""
    with ray_head() as address:
        yield address


def test_rllib_repeated_sigint_cycles_never_lose_a_checkpoint(tmp_path, shared_ray_head):
    rng = random.Random(7)
    port = find_free_port_block(2)
    for cycle in range(SIGINT_CYCLES):
        directory = tmp_path / f"cycle{cycle}"
        directory.mkdir()
        config = rllib_config(directory, port, None)
        process = start_script(
            RLLIB,
            f"--config_file={config}",
            f"--experiment_dir={directory / 'exp'}",
            f"--ray_address={shared_ray_head}",
            cwd=directory,
        )
        try:
            wait_for_line(process, "Training policies", timeout=120)
            time.sleep(rng.uniform(0.0, 1.0))
            _, stderr = interrupt(process, timeout=60)
        finally:
            process.kill()
        assert process.returncode == 0, f"cycle {cycle}: {stderr[-2000:]}"
        checkpoints = rllib_checkpoints(directory / "exp")
        assert checkpoints and all((path / "algorithm_state.pkl").is_file() for path in checkpoints), (
            f"cycle {cycle}"
        )
        assert all((path / "policies" / "left_policy" / "policy_state.pkl").is_file() for path in checkpoints)
        assert_clean(directory, port)


def test_rllib_resume_from_a_corrupt_checkpoint_is_an_error_and_writes_no_checkpoint(tmp_path):
    port = find_free_port_block(2)
    corrupt = tmp_path / "checkpoint_000004"
    corrupt.mkdir()
    (corrupt / "rllib_checkpoint.json").write_text("{not json")
    (corrupt / "algorithm_state.pkl").write_bytes(b"\x80\x04truncated")
    config = rllib_config(tmp_path, port, {"training_iteration": 1})
    result = run_script(
        RLLIB,
        f"--config_file={config}",
        f"--experiment_dir={tmp_path / 'exp'}",
        f"--resume={corrupt}",
        cwd=tmp_path,
        timeout=180,
    )
    assert result.returncode == 1
    errors = error_lines(result.stderr)
    assert len(errors) == 1 and "cannot resume from" in errors[0], result.stderr[-2000:]
    assert rllib_checkpoints(tmp_path / "exp") == [] and sorted(p.name for p in corrupt.iterdir()) == [
        "algorithm_state.pkl",
        "rllib_checkpoint.json",
    ]
    assert_clean(tmp_path, port)
