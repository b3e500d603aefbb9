"""stable_baselines3_training_script.py, run as the controller runs it, on the example games."""

import os
import subprocess
import time
import zipfile
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
from conftest import SIM_DIR, find_free_port_block
from script_helpers import (
    POLICY_FIELDS,
    SCHEMA_FIELDS,
    interrupt,
    metric_lines,
    processes_matching,
    run_script,
    start_script,
    wait_for_line,
)

SCRIPT = "stable_baselines3_training_script.py"


def game(name: str) -> str:
    return str(SIM_DIR / f"{name}.x86_64")


def controller_args(
    experiment_dir: Path, port: int, timesteps: int, env_path: str = game("BallChase"), n_parallel: int = 1
) -> list:
    """The argv the Training Controller builds (single `--flag=value` tokens, hyphenated policy flags)."""
    return [
        f"--env_path={env_path}",
        f"--experiment_dir={experiment_dir}",
        "--experiment_name=run",
        f"--timesteps={timesteps}",
        "--speedup=8",
        f"--n_parallel={n_parallel}",
        "--policy-type=mlp",
        "--policy-hidden-layers=64,64",
        f"--port={port}",
    ]


def assert_no_game_left(port: int, n_parallel: int = 1) -> None:
    time.sleep(0.3)
    for index in range(n_parallel):
        assert processes_matching(f"--port={port + index} ") == [], (
            f"a game on port {port + index} outlived the script"
        )


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """A 2-process, 2-agents-per-process run with checkpoints: the base for the resume and inference tests."""
    directory = tmp_path_factory.mktemp("sb3_parallel")
    port = find_free_port_block(4)
    env = dict(os.environ, CONTROLLER_METRICS="1")
    args = controller_args(directory / "exp", port, 2000, n_parallel=2) + [
        "--game_arg",
        "n_agents=2",
        "--save_checkpoint_frequency=800",
    ]
    result = run_script(SCRIPT, *args, cwd=directory, env=env)
    return directory, port, result


def test_parallel_run_emits_full_metrics_checkpoints_and_final_model(first_run):
    directory, port, result = first_run
    assert result.returncode == 0, result.stderr[-3000:]
    samples = metric_lines(result.stdout)
    assert len(samples) >= 5
    assert [s["training_iteration"] for s in samples] == list(range(1, len(samples) + 1))
    totals = [s["timesteps_total"] for s in samples]
    assert totals == sorted(totals) and totals[-1] >= 2000
    for sample in samples:
        assert SCHEMA_FIELDS <= set(sample), SCHEMA_FIELDS - set(sample)
        assert sample["kind"] == "iteration" and sample["timestamp"].endswith("Z")
        assert set(sample["policies"]) == {"shared_policy"}
        policy = sample["policies"]["shared_policy"]
        assert POLICY_FIELDS <= set(policy)
        assert policy["learner"] == policy["learner_stats"]
    trained = [s["policies"]["shared_policy"]["learner"] for s in samples[1:]]
    assert all(
        {"policy_loss", "vf_loss", "entropy", "kl", "clip_fraction", "explained_variance", "learning_rate"}
        <= set(t)
        for t in trained
    )
    assert all(t["entropy"] > 0 for t in trained)
    with_episodes = [s for s in samples if s["episodes_this_iter"] > 0]
    assert with_episodes, "100-step episodes must finish within 2000 steps of 4 agents"
    assert all(s["episode_reward_mean"] is not None and s["episode_len_mean"] == 100.0 for s in with_episodes)
    assert {"distance", "targets_reached"} <= set(with_episodes[0]["custom_metrics"])
    assert samples[-1]["episodes_total"] == sum(s["episodes_this_iter"] for s in samples)
    assert samples[-1]["checkpoints"] == 2
    assert {s["trial_id"] for s in samples} != {None} and len({s["trial_id"] for s in samples}) == 1
    assert {s["experiment_tag"] for s in samples} == {"run"} and len(
        {s["experiment_id"] for s in samples}
    ) == 1
    assert all(s["date"] and s["env_restarts"] == 0 for s in samples)
    checkpoints = sorted((directory / "exp").glob("rl_model_*_steps.zip"))
    assert [p.name for p in checkpoints] == ["rl_model_1600_steps.zip", "rl_model_800_steps.zip"]
    final = directory / "exp" / "run_final.zip"
    assert zipfile.is_zipfile(final)
    assert f"Model saved to {final}" in result.stdout
    assert list((directory / "exp").glob("run_*/events.out.tfevents.*")), "TensorBoard logs missing"
    assert not list((directory / "exp").glob(".*tmp*")), "temporary files left behind"
    assert_no_game_left(port, 2)


def optimizer_steps(model_zip: Path) -> int:
    """Adam's step count in a saved model: how many updates its optimizer has made."""
    import io

    import torch

    with zipfile.ZipFile(model_zip) as archive:
        state = torch.load(io.BytesIO(archive.read("policy.optimizer.pth")), weights_only=False)
    return int(next(iter(state["state"].values()))["step"])


def test_resume_with_another_number_of_envs_continues_optimizer_and_counters(first_run, tmp_path):
    """Saved with 2 games x 2 agents (4 envs), resumed on 1 game of 1 agent: SB3 loads it with the new env."""
    directory, _, _ = first_run
    port = find_free_port_block(2)
    checkpoint = directory / "exp" / "rl_model_1600_steps.zip"
    env = dict(os.environ, CONTROLLER_METRICS="1")
    args = controller_args(tmp_path / "exp", port, 600) + [
        "--game_arg",
        "n_agents=1",
        f"--resume_model_path={checkpoint}",
    ]
    result = run_script(SCRIPT, *args, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Game ready: 1 agent(s) in 1 process(es)" in result.stdout
    samples = metric_lines(result.stdout)
    assert samples[0]["training_iteration"] > 1600 // 128
    assert samples[0]["timesteps_total"] > 1600 and samples[0]["env_steps_this_iter"] == 32, "1 env x n_steps"
    assert samples[-1]["timesteps_total"] >= 2200
    assert samples[0]["episodes_total"] >= 16, "episode counter continues from the checkpoint"
    n_epochs = 10  # PPO's default; a rollout of 32 steps is one minibatch: one optimizer step per epoch
    assert optimizer_steps(tmp_path / "exp" / "run_final.zip") == optimizer_steps(
        checkpoint
    ) + n_epochs * len(samples), "the optimizer continues from the saved one"


def test_resume_on_a_game_with_other_spaces_names_both(first_run, tmp_path):
    directory, _, _ = first_run
    port = find_free_port_block(2)
    checkpoint = directory / "exp" / "rl_model_1600_steps.zip"
    args = controller_args(tmp_path / "exp", port, 600, env_path=game("BallChaseDiscrete"))
    result = run_script(SCRIPT, *args, f"--resume_model_path={checkpoint}", cwd=tmp_path)
    assert result.returncode == 1
    [error] = [line for line in result.stderr.splitlines() if line.startswith("ERROR:")]
    assert "rl_model_1600_steps.zip does not fit this game" in error
    assert "actions Box(-1.0, 1.0, (2,), float32)" in error and "takes actions Discrete(5)" in error
    assert "Traceback" not in result.stderr
    assert_no_game_left(port)


def test_inference_runs_saved_policy_without_saving(first_run, tmp_path):
    directory, _, _ = first_run
    port = find_free_port_block(2)
    final = directory / "exp" / "run_final.zip"
    before = final.stat().st_mtime_ns
    env = dict(os.environ, CONTROLLER_METRICS="1")
    args = controller_args(tmp_path / "exp", port, 1200) + [
        "--game_arg",
        "n_agents=4",
        f"--resume_model_path={final}",
        "--inference",
    ]
    result = run_script(SCRIPT, *args, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    samples = metric_lines(result.stdout)
    assert len(samples) == 2 and all(s.get("mode") == "inference" for s in samples)
    assert samples[-1]["episodes_total"] >= 8
    assert samples[-1]["policies"]["shared_policy"]["reward_mean"] is not None
    assert final.stat().st_mtime_ns == before
    assert not (tmp_path / "exp").exists() or not list((tmp_path / "exp").rglob("*.zip"))


@pytest.fixture(scope="module")
def flags_run(tmp_path_factory):
    """One run for the flags the controller never passes: each test below shows one flag's effect. The game's
    command line is read while it runs."""
    directory = tmp_path_factory.mktemp("sb3_flags")
    port = find_free_port_block(2)
    saved = directory / "models" / "custom"
    args = controller_args(directory / "exp", port, 3200) + [
        "--game_arg",
        "n_agents=2",
        "--debug_panel",
        "--viz",
        "--action_repeat=3",
        "--learning_rate=0.001",
        "--linear_lr_schedule",
        "--n_steps=16",
        f"--save_model_path={saved}",
        "--device=cpu",
    ]
    process = start_script(SCRIPT, *args, cwd=directory, env=dict(os.environ, CONTROLLER_METRICS="1"))
    try:
        first_lines = wait_for_line(process, "@METRIC ", timeout=120)
        game_commands = processes_matching(f"--port={port} ")
        stdout, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    result = subprocess.CompletedProcess(args, process.returncode, "".join(first_lines) + stdout, stderr)
    assert result.returncode == 0, stderr[-3000:]
    assert_no_game_left(port)
    return directory, saved, game_commands, result


def test_debug_panel_shows_a_real_reset_and_step_then_trains(flags_run):
    _, _, _, result = flags_run
    lines = result.stdout.splitlines()
    start, end = (
        lines.index("=== Debug panel (Stable-Baselines3) ==="),
        lines.index("=== end of debug panel ==="),
    )
    panel = "\n".join(lines[start:end])
    assert f"env_path: {game('BallChase')}" in panel
    assert "agents: 2: 0 -> shared_policy, 1 -> shared_policy" in panel
    assert "observation space: Dict('obs': Box(-1.0, 1.0, (4,), float32))" in panel
    assert "action space: Dict('move': Box(-1.0, 1.0, (2,), float32))" in panel
    assert "reset observation, agent 1: {'obs': [" in panel and "sampled action, agent 0: {'move': [" in panel
    assert "step terminated: [False, False], truncated: [False, False]" in panel
    assert "step info: [{'distance': " in panel
    assert end < next(i for i, line in enumerate(lines) if line.startswith("Game ready"))
    assert len(metric_lines(result.stdout)) == 100, "training runs after the panel"


def test_learning_rate_flag_and_linear_schedule(flags_run):
    """--learning_rate=0.001 --linear_lr_schedule: each update's rate is 0.001 x the part of the run left."""
    _, _, _, result = flags_run
    samples = metric_lines(result.stdout)
    rates = [sample["policies"]["shared_policy"]["learner"]["learning_rate"] for sample in samples]
    expected = [0.001 * (1 - sample["timesteps_total"] / 3200) for sample in samples]
    assert rates == pytest.approx(expected, rel=1e-6, abs=1e-12)
    assert all(later < earlier for earlier, later in zip(rates, rates[1:], strict=False)), "it decays"


def test_n_steps_flag_sets_the_rollout(flags_run):
    _, _, _, result = flags_run
    assert {sample["env_steps_this_iter"] for sample in metric_lines(result.stdout)} == {16 * 2}, "2 agents"


def test_save_model_path_flag(flags_run):
    directory, saved, _, result = flags_run
    assert (
        zipfile.is_zipfile(saved.with_name("custom.zip")) and f"Model saved to {saved}.zip" in result.stdout
    )
    assert not list((directory / "exp").glob("*.zip")), "nothing at the default path"


def test_device_flag(flags_run):
    """The model is built on the device asked for (an unknown one is an error: tests/test_bad_inputs.py)."""
    _, _, _, result = flags_run
    assert "Using cpu device" in result.stdout


def test_viz_and_action_repeat_flags_reach_the_game(flags_run):
    _, _, game_commands, _ = flags_run
    [command] = [command for command in game_commands if "--env_seed=" in command]  # not the trainer's
    assert "--action_repeat=3 " in command + " "
    assert "--headless" not in command and "--disable-render-loop" not in command, "--viz shows the window"


def test_inference_without_model_is_an_error(tmp_path):
    result = run_script(SCRIPT, "--inference", f"--env_path={game('BallChase')}", cwd=tmp_path)
    assert result.returncode == 2
    assert "--inference requires --resume_model_path" in result.stderr


def test_ppo_learns_ballchase(tmp_path):
    port = find_free_port_block(2)
    env = dict(os.environ, CONTROLLER_METRICS="1")
    args = controller_args(tmp_path / "exp", port, 20000) + ["--game_arg", "n_agents=4", "--seed=1"]
    result = run_script(SCRIPT, *args, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    rewards = [
        s["episode_reward_mean"] for s in metric_lines(result.stdout) if s["episode_reward_mean"] is not None
    ]
    early, late = np.mean(rewards[:3]), np.mean(rewards[-3:])
    assert late > early + 15, f"mean episode reward went from {early:.1f} to {late:.1f}"


@pytest.mark.parametrize(
    "algo,game_name,extra",
    [
        ("ppo", "BallChaseDiscrete", []),
        ("a2c", "BallChase", []),
        ("sac", "BallChase", ["--batch_size=32"]),
        ("td3", "BallChase", ["--batch_size=32"]),
        ("ddpg", "BallChase", ["--batch_size=32"]),
        ("dqn", "BallChaseDiscrete", ["--batch_size=32"]),
    ],
)
def test_each_algorithm_trains_and_exports_onnx(tmp_path, algo, game_name, extra):
    port = find_free_port_block(2)
    onnx_path = tmp_path / "policy.onnx"
    env = dict(os.environ, CONTROLLER_METRICS="1")
    args = controller_args(tmp_path / "exp", port, 1200, env_path=game(game_name))
    result = run_script(
        SCRIPT,
        *args,
        f"--algo={algo.upper()}",
        f"--onnx_export_path={onnx_path}",
        *extra,
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    samples = metric_lines(result.stdout)
    assert samples and samples[-1]["timesteps_total"] >= 1200
    if algo in ("sac", "td3", "ddpg", "dqn"):
        assert len(samples) == 2, "off-policy iterations are 1000 env steps"
        assert samples[-1]["policies"]["shared_policy"]["learner"], "learner numbers after training started"
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["obs", "state_ins"]
    assert [o.name for o in session.get_outputs()] == ["output", "state_outs"]
    output, state = session.run(
        None, {"obs": np.zeros((3, 4), np.float32), "state_ins": np.zeros(3, np.float32)}
    )
    assert output.shape == (3, 5 if game_name == "BallChaseDiscrete" else 2)
    assert_no_game_left(port)


@pytest.mark.parametrize("algo,game_name", [("dqn", "BallChase"), ("sac", "BallChaseDiscrete")])
def test_algorithm_that_does_not_fit_the_action_space_is_refused(tmp_path, algo, game_name):
    port = find_free_port_block(2)
    result = run_script(
        SCRIPT,
        *controller_args(tmp_path / "exp", port, 100, env_path=game(game_name)),
        f"--algo={algo}",
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert result.stderr.count("ERROR:") == 1 and f"--algo {algo} needs" in result.stderr
    assert_no_game_left(port)


@pytest.mark.parametrize(
    "policy_args,game_name",
    [
        (["--policy-type=grn", "--grn-hidden-size=32"], "BallChase"),
        (["--policy-type=cnn", "--cnn-channels=8,16"], "BallChaseCamera"),
    ],
)
def test_policy_types_train_and_export(tmp_path, policy_args, game_name):
    port = find_free_port_block(2)
    onnx_path = tmp_path / "policy.onnx"
    args = controller_args(tmp_path / "exp", port, 300, env_path=game(game_name))
    result = run_script(SCRIPT, *args, *policy_args, f"--onnx_export_path={onnx_path}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ONNX model exported" in result.stdout
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["output", "state_outs"]
    assert "state_ins" in [i.name for i in session.get_inputs()]
    assert_architecture(tmp_path / "exp" / "run_final.zip", policy_args)


def assert_architecture(model_zip: Path, policy_args: list) -> None:
    """The saved network is the one the flags ask for."""
    import torch
    from stable_baselines3 import PPO

    from godot_rl_cli.sb3.policies import GRN_BLOCKS, GatedResidualBlock, GRNExtractor, SmallImageCNN

    policy = PPO.load(model_zip, device="cpu").policy
    extractor = policy.features_extractor
    assert [
        layer.out_features for layer in policy.mlp_extractor.policy_net if hasattr(layer, "out_features")
    ] == [
        64,
        64,
    ]
    if "--policy-type=grn" in policy_args:
        assert isinstance(extractor, GRNExtractor) and extractor.project.out_features == 32
        blocks = list(extractor.blocks)
        assert len(blocks) == GRN_BLOCKS and all(isinstance(block, GatedResidualBlock) for block in blocks)
        assert extractor.features_dim == 32
    else:
        assert isinstance(extractor, SmallImageCNN)
        convolutions = [m for m in extractor.branches["camera_2d"] if isinstance(m, torch.nn.Conv2d)]
        assert [conv.out_channels for conv in convolutions] == [8, 16]
        assert isinstance(extractor.branches["obs"], torch.nn.Flatten)


def test_lstm_policy_is_refused_before_the_game_starts(tmp_path):
    port = find_free_port_block(2)
    args = controller_args(tmp_path / "exp", port, 100) + [
        "--policy-type=lstm",
        "--lstm-hidden-size=64",
        "--lstm-num-layers=1",
    ]
    result = run_script(SCRIPT, *args, cwd=tmp_path)
    assert result.returncode == 1
    assert (
        result.stderr.startswith("ERROR: --policy-type lstm is not supported")
        and "state_ins" in result.stderr
    )
    assert "[game:" not in result.stdout


def test_sigint_saves_model_and_onnx_and_closes_games(tmp_path):
    port = find_free_port_block(4)
    onnx_path = tmp_path / "stopped.onnx"
    env = dict(os.environ, CONTROLLER_METRICS="1")
    args = controller_args(tmp_path / "exp", port, 10_000_000, n_parallel=2) + [
        f"--onnx_export_path={onnx_path}"
    ]
    process = start_script(SCRIPT, *args, cwd=tmp_path, env=env)
    try:
        wait_for_line(process, "@METRIC ", timeout=60)
        started = time.monotonic()
        stdout, stderr = interrupt(process)
        assert time.monotonic() - started < 15
    finally:
        process.kill()
    assert process.returncode == 0, stderr[-3000:]
    assert zipfile.is_zipfile(tmp_path / "exp" / "run_final.zip")
    assert onnx_path.is_file()
    assert_no_game_left(port, 2)


def test_crashing_game_is_reported_and_model_saved(tmp_path):
    port = find_free_port_block(2)
    args = controller_args(tmp_path / "exp", port, 100_000) + ["--game_arg", "crash_after_steps=300"]
    started = time.monotonic()
    result = run_script(SCRIPT, *args, cwd=tmp_path)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR:")]
    assert len(errors) == 1, result.stderr[-3000:]
    assert "BallChase.x86_64" in errors[0] and f"port {port}" in errors[0] and "exit code 3" in errors[0]
    assert "simulated engine crash" in errors[0], "the game's last output is quoted"
    assert zipfile.is_zipfile(tmp_path / "exp" / "run_final.zip")
    assert time.monotonic() - started < 60
    assert_no_game_left(port)


def test_hung_game_is_detected_after_step_timeout(tmp_path):
    port = find_free_port_block(2)
    args = controller_args(tmp_path / "exp", port, 100_000) + [
        "--game_arg",
        "hang_after_steps=300",
        "--step_timeout=2",
    ]
    result = run_script(SCRIPT, *args, cwd=tmp_path, timeout=120)
    assert result.returncode == 1
    assert "sent nothing for 2 s" in result.stderr
    assert zipfile.is_zipfile(tmp_path / "exp" / "run_final.zip")
    assert_no_game_left(port)


def test_game_that_never_connects(tmp_path):
    port = find_free_port_block(2)
    args = controller_args(tmp_path / "exp", port, 1000) + [
        "--game_arg",
        "never_connect=1",
        "--connect_timeout=2",
    ]
    result = run_script(SCRIPT, *args, cwd=tmp_path, timeout=60)
    assert result.returncode == 1
    error = [line for line in result.stderr.splitlines() if line.startswith("ERROR:")]
    assert len(error) == 1 and "did not connect within 2 s" in error[0] and f"port {port}" in error[0]
    assert "BallChase.x86_64" in error[0]
    assert not (tmp_path / "exp" / "run_final.zip").exists()
    assert_no_game_left(port)


def test_busy_port_is_named(tmp_path):
    import socket

    port = find_free_port_block(2)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        result = run_script(SCRIPT, *controller_args(tmp_path / "exp", port, 100), cwd=tmp_path)
    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr and "--port" in result.stderr


def _make_bad_paths(tmp_path: Path) -> dict:
    not_executable = tmp_path / "Game.x86_64"
    not_executable.write_text("#!/bin/sh\n")
    wrong_suffix = tmp_path / "Game.exe"
    wrong_suffix.write_text("")
    wrong_suffix.chmod(0o755)
    return {
        "missing": (tmp_path / "Missing.x86_64", "does not exist"),
        "directory": (tmp_path, "is a directory"),
        "not executable": (not_executable, "is not executable"),
        "wrong suffix": (wrong_suffix, "does not end in .x86_64"),
    }


@pytest.mark.parametrize("case", ["missing", "directory", "not executable", "wrong suffix"])
def test_bad_env_path_is_one_line_error(tmp_path, case):
    path, message = _make_bad_paths(tmp_path)[case]
    result = run_script(SCRIPT, f"--env_path={path}", "--timesteps=10", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert result.stderr.startswith("ERROR:") and message in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("content", [b"not a zip", b"PK\x03\x04truncated"])
def test_bad_resume_model_is_one_line_error(tmp_path, content):
    model = tmp_path / "model.zip"
    model.write_bytes(content)
    result = run_script(
        SCRIPT, f"--env_path={game('BallChase')}", f"--resume_model_path={model}", cwd=tmp_path
    )
    assert result.returncode == 1
    assert result.stderr.startswith("ERROR:") and "model.zip" in result.stderr
    assert result.stderr.strip().count("\n") == 0


@pytest.mark.parametrize(
    "bad_flag", ["--speedup=0", "--speedup=101", "--n_parallel=65", "--no_such_flag=1", "--policy-type=rnn"]
)
def test_bad_flags_are_argparse_errors(tmp_path, bad_flag):
    result = run_script(SCRIPT, f"--env_path={game('BallChase')}", bad_flag, cwd=tmp_path)
    assert result.returncode == 2
    assert "error:" in result.stderr


def test_help_explains_every_flag(tmp_path):
    result = run_script(SCRIPT, "--help", cwd=tmp_path)
    assert result.returncode == 0
    for flag in [
        "--env_path",
        "--speedup",
        "--n_parallel",
        "--viz",
        "--timesteps",
        "--experiment_dir",
        "--experiment_name",
        "--seed",
        "--resume_model_path",
        "--save_model_path",
        "--save_checkpoint_frequency",
        "--onnx_export_path",
        "--inference",
        "--linear_lr_schedule",
        "--policy-type",
        "--policy-hidden-layers",
        "--cnn-channels",
        "--lstm-hidden-size",
        "--lstm-num-layers",
        "--grn-hidden-size",
        "--algo",
        "--port",
        "--connect_timeout",
        "--step_timeout",
        "--action_repeat",
        "--framerate",
        "--device",
        "--learning_rate",
        "--n_steps",
        "--batch_size",
    ]:
        assert flag in result.stdout


@pytest.mark.parametrize(
    "extra_args, environment, expected",
    [
        ([], {}, "torch threads 1 (default"),
        (["--torch_threads=2"], {}, "torch threads 2 (--torch_threads)"),
        ([], {"OMP_NUM_THREADS": "2"}, "torch threads 2 (OMP_NUM_THREADS)"),
    ],
)
def test_torch_thread_count_is_chosen_and_reported(tmp_path, script_env, extra_args, environment, expected):
    """One learner thread by default (torch's default fights the games for the cores); a flag or an
    exported OMP_NUM_THREADS wins; the startup summary says which."""
    env = {key: value for key, value in script_env.items() if key != "OMP_NUM_THREADS"}
    port = find_free_port_block(1)
    args = controller_args(tmp_path / "exp", port, 64) + extra_args
    result = run_script(SCRIPT, *args, cwd=tmp_path, env={**env, **environment})
    assert result.returncode == 0, result.stderr[-2000:]
    assert expected in result.stdout
