"""Evaluation during training and the manifest of saved models, trained for real on the example games.

The example game's `reward_trend` game argument makes the evaluation reward rise (or fall) with every episode
the evaluation game plays, whatever the policy, so when a new best must appear is known in advance.
"""

import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import onnxruntime
import pytest
import yaml
from conftest import REPO_ROOT, find_free_port_block
from in_process import run_main
from script_helpers import (
    interrupt,
    metric_lines,
    processes_matching,
    run_in_own_session,
    run_script,
    script_command,
    start_script,
    wait_for_line,
)

from godot_rl_cli import manifest
from godot_rl_cli.cli import export_rllib, export_sb3

GAME = str(REPO_ROOT / "examples" / "sim" / "BallChase.x86_64")
EVAL_FIELDS = ("eval_reward_mean", "eval_reward_std", "eval_episode_len_mean")


def sb3_run(directory: Path, port: int, trend: float, *extra: str) -> List[str]:
    """Flags of a short PPO run: an iteration is 64 steps, an evaluation (one 100-step episode) every 2."""
    return [
        f"--env_path={GAME}",
        f"--experiment_dir={directory / 'exp'}",
        "--experiment_name=run",
        "--timesteps=640",
        "--n_steps=64",
        f"--port={port}",
        "--eval_freq=128",
        "--eval_episodes=1",
        f"--game_arg=reward_trend={trend}",
        *extra,
    ]


def evaluations(stdout: str) -> Dict[int, Dict]:
    """The @METRIC lines that carry an evaluation, by iteration."""
    found = {}
    for sample in metric_lines(stdout):
        if "eval_reward_mean" in sample:
            assert all(sample["custom_metrics"][name] == sample[name] for name in EVAL_FIELDS)
            found[sample["training_iteration"]] = sample
    return found


@pytest.fixture(scope="module")
def improving(tmp_path_factory):
    """A run whose evaluation reward rises each time; its evaluation game crashes once and is relaunched."""
    directory = tmp_path_factory.mktemp("eval_improving")
    port = find_free_port_block(3)
    args = sb3_run(
        directory,
        port,
        1.0,
        f"--onnx_export_path={directory / 'onnx' / 'final.onnx'}",
        "--save_checkpoint_frequency=320",
        "--max_env_restarts=1",
        "--game_arg=crash_after_steps=250",
        "--game_arg=fault_seed=1",  # only the evaluation game (seed + n_parallel) crashes
    )
    env = {**os.environ, "CONTROLLER_METRICS": "1"}
    result = run_script("stable_baselines3_training_script.py", *args, cwd=directory, env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return directory, port, args, result


def test_evaluation_runs_on_its_own_game_and_port(improving):
    directory, port, _, result = improving
    assert f"[game:{port}] BallChase (Godot RL example game, simulated) seed=0 port={port}" in result.stdout
    assert f"[game:{port + 1}] BallChase (Godot RL example game, simulated) seed=1 port={port + 1}" in (
        result.stdout
    )
    assert "restarting it (1 of --max_env_restarts 1)" in result.stderr  # the evaluation game, relaunched
    samples = metric_lines(result.stdout)
    assert samples[-1]["env_restarts"] == 1
    assert processes_matching(f"--port={port + 1} ") == []


def test_each_evaluation_is_in_its_iteration_metric_line(improving):
    _, _, _, result = improving
    found = evaluations(result.stdout)
    assert sorted(found) == [2, 4, 6, 8, 10]  # 128 steps = 2 iterations of 64
    for sample in found.values():
        assert sample["eval_episode_len_mean"] > 0 and sample["eval_reward_std"] == 0.0  # one episode each
    assert found[4]["eval_reward_mean"] > found[2]["eval_reward_mean"] + 50  # the trend, not the policy
    assert result.stdout.count("Eval num_timesteps=") == 5
    npz = np.load(Path(improving[0]) / "exp" / "evaluations.npz")
    assert list(npz["timesteps"]) == [128, 256, 384, 512, 640]


def test_best_model_and_onnx_are_the_best_evaluation(improving):
    directory, _, _, result = improving
    found = evaluations(result.stdout)
    best_iteration = max(found, key=lambda iteration: found[iteration]["eval_reward_mean"])
    best_zip = directory / "exp" / "best_model.zip"
    record = json.loads(manifest.manifest_path(best_zip).read_text())
    assert record["best_evaluation"]["iteration"] == best_iteration
    assert record["best_evaluation"]["timesteps"] == best_iteration * 64
    assert record["best_evaluation"]["eval_reward_mean"] == pytest.approx(
        found[best_iteration]["eval_reward_mean"]
    )
    assert record["timesteps"] == best_iteration * 64
    best_onnx = directory / "onnx" / "best.onnx"
    session = onnxruntime.InferenceSession(str(best_onnx))
    assert [item.name for item in session.get_inputs()] == ["obs", "state_ins"]
    assert f"Best evaluation: iteration {best_iteration} (step {best_iteration * 64})" in result.stdout
    assert (
        str(best_zip) in result.stdout.splitlines()[-1] and str(best_onnx) in result.stdout.splitlines()[-1]
    )


def test_off_policy_evaluation_is_in_the_line_of_its_step(tmp_path):
    """SAC's lines come every 1,000 steps, from the same step callback as the evaluation."""
    port = find_free_port_block(2)
    args = [f"--env_path={GAME}", f"--experiment_dir={tmp_path}", "--algo=sac", "--timesteps=2000"]
    args += [f"--port={port}", "--eval_freq=1000", "--eval_episodes=1", "--game_arg=reward_trend=1.0"]
    env = {**os.environ, "CONTROLLER_METRICS": "1"}
    result = run_script("stable_baselines3_training_script.py", *args, cwd=tmp_path, env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    found = evaluations(result.stdout)
    assert sorted(found) == [1, 2] and found[2]["eval_reward_mean"] > found[1]["eval_reward_mean"]
    assert all("actor_loss" in sample["policies"]["shared_policy"]["learner"] for sample in found.values())
    assert "Best evaluation: iteration 2 (step 2000)" in result.stdout


def test_manifest_fields_are_true(improving):
    directory, port, args, _ = improving
    exp = directory / "exp"
    for model in ("run_final.zip", "best_model.zip", "rl_model_320_steps.zip", "rl_model_640_steps.zip"):
        assert manifest.manifest_path(exp / model).is_file(), model
    record = json.loads((exp / "run_final.manifest.json").read_text())
    assert record["script"] == "stable_baselines3_training_script.py"
    assert record["argv"] == args
    assert record["arguments"]["eval_freq"] == 128 and record["arguments"]["port"] == port
    assert record["game"]["env_path"] == GAME
    assert record["game"]["observation_keys"] == ["obs"]
    assert record["game"]["action_keys"] == ["move"]
    assert record["policies"] == {
        "shared_policy": {
            "observation_space": "Dict('obs': Box(-1.0, 1.0, (4,), float32))",
            "action_space": "Box(-1.0, 1.0, (2,), float32)",
        }
    }
    assert record["algorithm"] == "ppo"
    assert record["hyperparameters"]["n_steps"] == 64 and record["hyperparameters"]["learning_rate"] == 3e-4
    assert record["timesteps"] == 640
    assert record["seeds"] == {"seed": 0, "training_game_seeds": [0], "eval_game_seed": 1}
    versions = record["versions"]
    assert versions["python"] == platform.python_version()
    for key, distribution in (
        ("torch", "torch"),
        ("stable_baselines3", "stable-baselines3"),
        ("onnx", "onnx"),
    ):
        assert versions[key] == importlib.metadata.version(distribution)
    assert versions["godot_rl"] == importlib.metadata.version("godot-rl")
    assert versions["onnxruntime"] == onnxruntime.__version__
    assert record["onnx"] == {"opset": 13, "ir_version": 9}
    head = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    assert record["suite_commit"].split("+")[0] == head.stdout.strip()
    assert json.loads((exp / "rl_model_320_steps.manifest.json").read_text())["timesteps"] == 320


def test_suite_commit_only_from_a_checkout_of_the_suite_itself(tmp_path):
    """An installed suite inside another project's repository must not report that project's commit."""
    project = tmp_path / "game_project"
    installed = project / ".venv" / "site-packages"
    installed.mkdir(parents=True)
    (project / "README").write_text("a game\n")
    git = ["git", "-C", str(project), "-c", "user.name=t", "-c", "user.email=t@t"]
    for command in (["init", "-q"], ["add", "README"], ["commit", "-qm", "game"]):
        subprocess.run(git + command, check=True)
    head = subprocess.run(git + ["rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert manifest.git_commit(project) == head
    assert manifest.git_commit(installed) is None
    (project / "README").write_text("changed\n")
    assert manifest.git_commit(project) == head + "+dirty"


def test_converter_refuses_a_model_whose_manifest_spaces_differ(improving, tmp_path):
    directory, _, _, _ = improving
    model = tmp_path / "model.zip"
    model.write_bytes((directory / "exp" / "run_final.zip").read_bytes())
    record = json.loads((directory / "exp" / "run_final.manifest.json").read_text())
    record["policies"]["shared_policy"]["action_space"] = "Box(-1.0, 1.0, (3,), float32)"
    manifest.write(manifest.manifest_path(model), record)

    def convert():
        return run_main(
            export_sb3.main,
            "convert_sb3_to_onnx.py",
            str(model),
            "--output",
            str(tmp_path / "m.onnx"),
            cwd=tmp_path,
        )

    result = convert()
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR:")]
    assert len(errors) == 1 and "(2,)" in errors[0] and "(3,)" in errors[0] and "manifest" in errors[0]
    assert not (tmp_path / "m.onnx").exists()
    manifest.manifest_path(model).unlink()  # without a manifest, the same model converts
    result = convert()
    assert result.returncode == 0, result.stderr


def test_a_resumed_run_keeps_the_earlier_best_until_beaten(improving, tmp_path, script_env):
    directory, _, _, _ = improving
    shutil.copytree(directory / "exp", tmp_path / "exp")
    best_zip = tmp_path / "exp" / "best_model.zip"
    before = best_zip.read_bytes()
    recorded = json.loads(manifest.manifest_path(best_zip).read_text())["best_evaluation"]
    args = sb3_run(
        tmp_path, find_free_port_block(2), -1.0, f"--resume_model_path={tmp_path / 'exp' / 'run_final.zip'}"
    )
    result = run_script("stable_baselines3_training_script.py", *args, cwd=tmp_path, env=script_env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert evaluations(result.stdout), "the resumed run evaluated"
    assert f"Earlier best evaluation reward {recorded['eval_reward_mean']:.3f} kept" in result.stdout
    assert "New best evaluation reward" not in result.stdout
    assert best_zip.read_bytes() == before
    assert json.loads(manifest.manifest_path(best_zip).read_text())["best_evaluation"] == recorded
    assert "no evaluation beat the earlier best reward" in result.stdout.splitlines()[-1]


def test_no_new_best_when_the_evaluation_reward_falls(tmp_path, script_env):
    port = find_free_port_block(2)
    result = run_script(
        "stable_baselines3_training_script.py", *sb3_run(tmp_path, port, -1.0), cwd=tmp_path, env=script_env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = evaluations(result.stdout)
    assert sorted(found) == [2, 4, 6, 8, 10]
    rewards = [found[iteration]["eval_reward_mean"] for iteration in sorted(found)]
    assert rewards == sorted(rewards, reverse=True)
    assert result.stdout.count("New best evaluation reward") == 1
    record = json.loads(manifest.manifest_path(tmp_path / "exp" / "best_model.zip").read_text())
    assert record["best_evaluation"]["iteration"] == 2 and record["timesteps"] == 128
    assert not list(tmp_path.rglob("best.onnx"))  # no --onnx_export_path: no ONNX


# --- RLlib ------------------------------------------------------------------------------------------


def rllib_config(directory: Path, port: int, evaluation_duration: int = 1, iterations: int = 3) -> Path:
    """A controller-shaped YAML: one policy, 200-step iterations, evaluation episodes of 100 steps."""
    config = {
        "algorithm": "PPO",
        "env_is_multiagent": False,
        "checkpoint_frequency": 2,
        "stop": {"training_iteration": iterations},
        "config": {
            "env": "godot",
            "env_config": {
                "env_path": GAME,
                "speedup": 8,
                "action_repeat": 8,
                "port": port,
                "max_env_restarts": 1,
            },
            "num_workers": 0,
            "rollout_fragment_length": 100,
            "train_batch_size": 200,
            "sgd_minibatch_size": 100,
            "num_sgd_iter": 2,
            "vf_clip_param": float(
                "inf"
            ),  # as the controller writes it (.inf): the manifest stays strict JSON
            "evaluation_interval": 1,
            "evaluation_duration": evaluation_duration,
        },
    }
    path = directory / "rllib_config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def rllib_falling(tmp_path_factory):
    """An RLlib run whose evaluation reward falls each time: only the first evaluation is a new best."""
    directory = tmp_path_factory.mktemp("rllib_eval")
    port = find_free_port_block(4)
    args = [
        f"--config_file={rllib_config(directory, port)}",
        f"--experiment_dir={directory / 'exp'}",
        "--game_arg=reward_trend=-1",
        "--game_arg=crash_after_steps=250",
        "--game_arg=fault_seed=2",  # only the evaluation game (seed 2) crashes, in the third evaluation
        f"--onnx_export_dir={directory / 'onnx'}",
    ]
    env = {**os.environ, "CONTROLLER_METRICS": "1"}
    result = run_in_own_session(script_command("rllib_training_script.py", *args), directory, env, 240)
    assert result.returncode == 0, result.stderr[-3000:]
    [trial] = [path.parent for path in (directory / "exp").glob("*/*/run_manifest.json")]
    return directory, port, args, result, trial


def test_rllib_evaluation_on_its_own_port_with_metrics_per_policy(rllib_falling):
    _, port, _, result, _ = rllib_falling
    # game 0 (the probe, then the local training env) on port; the evaluation runner's game after it
    assert f"seed=0 port={port}" in result.stdout and f"seed=2 port={port + 2}" in result.stdout
    assert f"port={port + 1}" not in result.stdout  # no idle evaluation game in the driver
    found = evaluations(result.stdout)
    assert sorted(found) == [1, 2, 3]
    rewards = [found[iteration]["eval_reward_mean"] for iteration in (1, 2, 3)]
    assert rewards[0] > rewards[1] + 50 and rewards[0] > rewards[2] + 50
    # the evaluation game crashed in the third evaluation and was relaunched; the run went on
    assert "restarting it (1 of max_env_restarts 1)" in result.stderr
    assert metric_lines(result.stdout)[-1]["env_restarts"] == 1
    for sample in found.values():
        policy = sample["policies"]["shared_policy"]
        assert policy["eval_reward_mean"] == sample["eval_reward_mean"]
        assert policy["custom_metrics"]["eval_reward_mean"] == sample["eval_reward_mean"]
    assert [found[iteration]["eval_episode_len_mean"] for iteration in (1, 2)] == [100.0, 100.0]
    assert 0 < found[3]["eval_episode_len_mean"] < 100  # ended by the crash


def test_rllib_best_checkpoint_only_on_a_new_best(rllib_falling):
    directory, _, args, result, trial = rllib_falling
    assert result.stdout.count("New best evaluation reward") == 1
    best = trial / "best"
    assert (best / "algorithm_state.pkl").is_file() and (best / "policies" / "shared_policy").is_dir()
    record = json.loads((best / "manifest.json").read_text())
    assert record["training_iteration"] == 1 and record["timesteps"] == 200
    assert record["best_evaluation"]["iteration"] == 1
    onnx_file = directory / "onnx" / "best_shared_policy.onnx"
    assert [item.name for item in onnxruntime.InferenceSession(str(onnx_file)).get_inputs()] == [
        "obs",
        "state_ins",
    ]
    assert f"Best evaluation: iteration 1, mean reward {found_reward(result.stdout, 1):.3f}" in result.stdout
    # every checkpoint has its manifest, and it is true
    for name in ("checkpoint_000000", "checkpoint_000001"):
        record = json.loads((trial / name / "manifest.json").read_text())
        assert record["argv"] == args and record["algorithm"] == "PPO" and record["trainer"] == "rllib"
        assert record["game"]["action_keys"] == ["move"] and record["game"]["observation_keys"] == ["obs"]
        assert record["policies"]["shared_policy"]["observation_space"] == "Box(-inf, inf, (4,), float32)"
        assert record["hyperparameters"]["train_batch_size"] == 200
        assert record["hyperparameters"]["vf_clip_param"] == "inf"
        assert record["versions"]["ray"] == importlib.metadata.version("ray")
    assert json.loads((trial / "checkpoint_000001" / "manifest.json").read_text())["timesteps"] == 600


def found_reward(stdout: str, iteration: int) -> float:
    return evaluations(stdout)[iteration]["eval_reward_mean"]


def test_rllib_converter_refuses_a_checkpoint_whose_manifest_spaces_differ(rllib_falling, tmp_path):
    _, _, _, _, trial = rllib_falling
    checkpoint = tmp_path / "checkpoint_000001"
    shutil.copytree(trial / "checkpoint_000001", checkpoint)
    record = json.loads((checkpoint / "manifest.json").read_text())
    record["policies"]["shared_policy"]["observation_space"] = "Box(-inf, inf, (5,), float32)"
    manifest.write(checkpoint / "manifest.json", record)
    result = run_main(
        export_rllib.main,
        "convert_rllib_to_onnx.py",
        str(checkpoint),
        "-o",
        str(tmp_path / "out"),
        cwd=tmp_path,
    )
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR:")]
    assert len(errors) == 1 and "(4,)" in errors[0] and "(5,)" in errors[0] and "manifest" in errors[0]
    assert not list(tmp_path.rglob("*.onnx"))


def test_sigint_during_an_evaluation_saves_the_model_and_exits(tmp_path, script_env):
    port = find_free_port_block(2)
    args = sb3_run(tmp_path, port, 0.0)
    args[args.index("--eval_episodes=1")] = "--eval_episodes=1000"  # 100,000 steps: far longer than the test
    process = start_script("stable_baselines3_training_script.py", *args, cwd=tmp_path, env=script_env)
    wait_for_line(process, "@METRIC ", 60)  # iteration 1 is reported at step 64; the evaluation starts at 128
    time.sleep(1.0)
    started = time.monotonic()
    stdout, stderr = interrupt(process)
    assert process.returncode == 0, stderr[-3000:]
    assert time.monotonic() - started < 10
    assert (tmp_path / "exp" / "run_final.zip").is_file()
    assert manifest.manifest_path(tmp_path / "exp" / "run_final.zip").is_file()
    assert "Evaluation: no evaluation finished, no best model saved." in stdout
    assert not (tmp_path / "exp" / "best_model.zip").exists()
    time.sleep(0.3)
    assert processes_matching(f"--port={port + 1} ") == [] and processes_matching(f"--port={port} ") == []


def test_rllib_sigint_during_an_evaluation_finishes_it_then_saves_and_exits(tmp_path):
    """RLlib's remote evaluation runner does not see the signal: the evaluation's episodes finish first."""
    port = find_free_port_block(4)
    config = rllib_config(tmp_path, port, evaluation_duration=10, iterations=100)  # 1,000 evaluation steps
    args = [f"--config_file={config}", f"--experiment_dir={tmp_path / 'exp'}"]
    env = {**os.environ, "CONTROLLER_METRICS": "1"}
    process = start_script("rllib_training_script.py", *args, cwd=tmp_path, env=env)
    first = metric_lines(wait_for_line(process, "@METRIC ", 120)[-1])[0]
    # iteration 2 trains 200 steps, then evaluates 1,000: 60 % into it is within the evaluation
    time.sleep(0.6 * first["time_this_iter_s"])
    started = time.monotonic()
    stdout, stderr = interrupt(process, timeout=60)
    assert process.returncode == 0, stderr[-3000:]
    assert time.monotonic() - started < 30
    samples = [first] + metric_lines(stdout)
    assert [sample["training_iteration"] for sample in samples] == [1, 2]
    assert samples[1]["eval_episode_len_mean"] == 100.0, "the evaluation's episodes were played to their end"
    [trial] = [path.parent for path in (tmp_path / "exp").glob("*/*/run_manifest.json")]
    final = sorted(trial.glob("checkpoint_*"))[-1]
    assert json.loads((final / "manifest.json").read_text())["training_iteration"] == 2
    time.sleep(0.3)
    assert all(processes_matching(f"--port={port + offset} ") == [] for offset in range(3))
