"""hyperparameter_search.py: tiny real searches of both trainers on the example games, on one Ray head for the
module (each search joins it with --ray_address). Bad inputs are checked in-process, before Ray or a game."""

import csv
import json
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Iterator, List

import pytest
import yaml
from conftest import SIM_DIR, find_free_port_block
from script_helpers import metric_lines, ray_head, run_script, script_command

from godot_rl_cli.cli.search import main as search_main

SCRIPT = "hyperparameter_search.py"
BALLCHASE = str(SIM_DIR / "BallChase.x86_64")
SB3_FAST = ["--", "--speedup=8", "--torch_threads=1"]


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    with ray_head(num_cpus=4) as address:
        yield address


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def read_rows(search_dir: Path) -> List[dict]:
    with (search_dir / "results.csv").open() as handle:
        return list(csv.DictReader(handle))


def search_env(script_env: dict) -> dict:
    return {key: value for key, value in script_env.items() if key != "RAY_ADDRESS"}


@pytest.mark.timeout(900)  # two search commands of trainer processes on a busy machine
def test_sb3_search_prunes_records_a_crash_stops_on_sigint_resumes_and_writes_a_best_that_trains(
    tmp_path, ray_address, script_env
):
    """Trial 0 learns, trial 1's reward is flat (ASHA stops it at its first rung), trial 2's game crashes:
    the search goes on. SIGINT during trial 3 stops it with a save; --resume finishes it without redoing the
    others. The best trial's argv file trains with the SB3 trainer as it is."""
    normal = {"learning_rate": 0.0003, "flat_reward": "off", "crash_after_steps": 100000}
    space = write_yaml(
        tmp_path / "space.yaml",
        {
            "hyperparameters": {"learning_rate": {"loguniform": [1e-4, 1e-3]}},
            "game_args": {
                "flat_reward": {"choice": ["off", "-1"]},
                "crash_after_steps": {"choice": [100000, 150]},
            },
            "first_trials": [
                normal,
                {**normal, "flat_reward": "-1"},
                {**normal, "crash_after_steps": 150},
                {**normal, "learning_rate": 0.0005},
            ],
        },
    )
    port = find_free_port_block(4 * 3)
    arguments = [
        "--trainer=sb3",
        f"--env_path={BALLCHASE}",
        f"--search_space={space}",
        "--num_trials=4",
        "--timesteps=640",
        "--max_concurrent=1",
        f"--experiment_dir={tmp_path / 'searches'}",
        "--experiment_name=sb3",
        f"--ray_address={ray_address}",
        f"--port={port}",
    ]
    stdout = interrupt_at(
        script_command(SCRIPT, *arguments, *SB3_FAST), "trial_003 | iteration", tmp_path, script_env
    )
    search_dir = tmp_path / "searches" / "sb3"
    rows = read_rows(search_dir)
    assert [row["trial"] for row in rows] == ["trial_000", "trial_001", "trial_002", "trial_003"]
    assert [row["status"] for row in rows] == ["finished", "pruned", "failed", "stopped"]
    assert int(rows[0]["steps"]) == 640 and int(rows[1]["steps"]) < 640
    assert "simulated engine crash" in rows[2]["error"] or "exited" in rows[2]["error"], rows[2]["error"]
    assert re.search(r"^trial_002 .*failed", stdout, re.MULTILINE), stdout  # the table on stdout
    first, *_, stopped = trial_dirs(search_dir)
    assert (stopped / "run" / "model_final.zip").is_file()  # the stopped trainer saved, as a normal run does
    first_run = (first / "trainer.log").stat().st_mtime

    time.sleep(1)
    resumed = run_script(SCRIPT, *arguments, "--resume", *SB3_FAST, cwd=tmp_path, env=search_env(script_env))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    rows = read_rows(search_dir)
    assert [row["status"] for row in rows] == ["finished", "pruned", "failed", "finished"]
    assert (first / "trainer.log").stat().st_mtime == first_run  # trial_000 did not run again
    assert json.loads((stopped / "search_trial.json").read_text())["steps"] >= 640
    assert "trial_000 | iteration" not in resumed.stdout
    assert (search_dir / "search.png").stat().st_size > 1000
    # each trial wrote a normal run: model, manifest, ONNX; its own port block
    run = first / "run"
    assert {"model_final.zip", "model.onnx", "model_final.manifest.json"} <= {p.name for p in run.iterdir()}
    ports = [
        re.search(r"--port=(\d+)", (d / "command.txt").read_text()).group(1) for d in trial_dirs(search_dir)
    ]
    assert len(set(ports)) == 4
    # @METRIC lines carry each trial's id, which names its directory
    samples = metric_lines(stdout + resumed.stdout)
    assert samples and {s["trial_id"] for s in samples} <= {
        d.name.rsplit("_", 1)[1] for d in trial_dirs(search_dir)
    }
    best = search_dir / "best"
    assert (best / "model.zip").is_file() and (best / "model.onnx").is_file()
    args_file = best / "hyperparameters.args"
    assert {"--learning_rate=0.0003", "--learning_rate=0.0005"} & set(args_file.read_text().split())
    trained = run_script(
        "stable_baselines3_training_script.py",
        f"--env_path={BALLCHASE}",
        "--timesteps=64",
        f"--experiment_dir={tmp_path / 'best_run'}",
        f"--port={port}",
        "--torch_threads=1",
        f"@{args_file}",
        cwd=tmp_path,
        env=search_env(script_env),
    )
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert (tmp_path / "best_run" / "experiment_final.zip").is_file()


def interrupt_at(command: List[str], line_start: str, cwd: Path, script_env: dict) -> str:
    """Run the search, SIGINT it at its first stdout line starting with `line_start`; its whole stdout."""
    search = subprocess.Popen(
        command,
        cwd=cwd,
        env=search_env(script_env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen = []
    try:
        for line in search.stdout:
            seen.append(line)
            if line.startswith(line_start):
                break
        search.send_signal(signal.SIGINT)
        stdout, stderr = search.communicate(timeout=240)
    finally:
        search.kill()
    assert search.returncode == 0, stderr[-3000:]
    return "".join(seen) + stdout


def trial_dirs(search_dir: Path) -> List[Path]:
    return sorted(path for path in search_dir.glob("trial_*") if path.is_dir())


@pytest.mark.timeout(900)  # a few searches of trainer subprocesses on a busy machine
def test_rllib_search_writes_a_best_yaml_the_trainer_runs(tmp_path, ray_address, script_env):
    base = write_yaml(
        tmp_path / "base.yaml",
        {
            "algorithm": "PPO",
            "env_config": {"env_path": BALLCHASE, "speedup": 8},
            "checkpoint_frequency": 0,
            "num_workers": 0,
            "rollout_fragment_length": 64,
            "train_batch_size": 256,
            "sgd_minibatch_size": 64,
            "num_sgd_iter": 2,
            "model": {"fcnet_hiddens": [16]},
        },
    )
    space = write_yaml(
        tmp_path / "space.yaml",
        {"hyperparameters": {"lr": {"loguniform": [1e-4, 1e-3]}, "lambda": {"uniform": [0.9, 0.99]}}},
    )
    port = find_free_port_block(2 * 3)
    done = run_script(
        SCRIPT,
        "--trainer=rllib",
        f"--config_file={base}",
        f"--search_space={space}",
        "--num_trials=2",
        "--timesteps=256",
        "--max_concurrent=2",
        "--pruner=none",
        f"--experiment_dir={tmp_path / 'searches'}",
        f"--ray_address={ray_address}",
        f"--port={port}",
        "--",
        "--torch_threads=1",
        cwd=tmp_path,
        env=search_env(script_env),
        timeout=400,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    search_dir = tmp_path / "searches" / "rllib_ppo"
    rows = read_rows(search_dir)
    assert [row["status"] for row in rows] == ["finished", "finished"]
    assert all(int(row["steps"]) >= 256 for row in rows)
    assert (search_dir / "search.png").is_file()
    best = search_dir / "best"
    config = yaml.safe_load((best / "rllib_config.yaml").read_text())
    best_row = max(rows, key=lambda row: float(row["metric"]))
    assert config["lr"] == pytest.approx(float(best_row["lr"]))
    assert (best / "checkpoint").is_dir() and list(best.glob("*.onnx"))
    config["stop"] = {"training_iteration": 1}
    config["env_config"]["port"] = port
    rerun = write_yaml(tmp_path / "rerun.yaml", config)
    trained = run_script(
        "rllib_training_script.py",
        f"--config_file={rerun}",
        f"--experiment_dir={tmp_path / 'best_run'}",
        f"--ray_address={ray_address}",
        "--torch_threads=1",
        cwd=tmp_path,
        env=search_env(script_env),
    )
    assert trained.returncode == 0, trained.stderr[-2000:]


@pytest.mark.fast
@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--num_trials=0"], "--num_trials must be above 0"),
        (["--timesteps=0"], "--timesteps must be above 0"),
        (["--metric=eval_reward_mean"], "no trial reports it"),
        (["--metric=reward_recnt"], "did you mean 'reward_recent'"),
        (["--", "--port=5"], "set by the search"),
    ],
)
def test_bad_flags_are_one_error_line(tmp_path, capsys, arguments, message):
    search = ["--trainer=sb3", f"--env_path={BALLCHASE}", f"--experiment_dir={tmp_path}"]
    split = arguments.index("--") if "--" in arguments else len(arguments)
    with pytest.raises(SystemExit) as stopped:
        search_main(search + arguments[:split] + arguments[split:])
    assert stopped.value.code == 1
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("ERROR:") and message in errors[0], errors


@pytest.mark.fast
@pytest.mark.parametrize(
    "space, message",
    [
        ({"hyperparameters": {"learnin_rate": {"uniform": [0.1, 0.2]}}}, "did you mean 'learning_rate'"),
        ({"hyperparameters": {"gamma": {"uniform": [0.99, 0.9]}}}, "empty or inverted"),
        ({"hyperparameters": {"gamma": {"uniform": [0.9, 0.9]}}}, "empty or inverted"),
        ({"hyperparameters": {"gamma": {"normal": [0.9, 0.99]}}}, "unknown distribution 'normal'"),
        ({"hyperparameters": {"n_steps": {"int": [0, 10]}}}, "refused by the trainer"),
        ({"hyperparameters": {"learning_rate": {"loguniform": [0, 0.1]}}}, "above 0"),
        ({"hyperparameters": {"clip_range": {"choice": []}}}, "needs a list"),
    ],
)
def test_bad_sb3_spaces_are_one_error_line(tmp_path, capsys, space, message):
    path = write_yaml(tmp_path / "space.yaml", space)
    with pytest.raises(SystemExit) as stopped:
        search_main(["--trainer=sb3", f"--env_path={BALLCHASE}", f"--search_space={path}"])
    assert stopped.value.code == 1
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("ERROR:") and message in errors[0], errors


def test_an_rllib_key_unknown_to_the_algorithm_names_the_closest(tmp_path, capsys):
    path = write_yaml(tmp_path / "space.yaml", {"hyperparameters": {"entropy_coef": {"uniform": [0.0, 0.1]}}})
    config = write_yaml(tmp_path / "base.yaml", {"algorithm": "PPO", "env_config": {"env_path": BALLCHASE}})
    with pytest.raises(SystemExit):
        search_main(["--trainer=rllib", f"--config_file={config}", f"--search_space={path}"])
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and "did you mean 'entropy_coeff'" in errors[0], errors


def test_the_shipped_spaces_are_valid(tmp_path):
    """Each default space passes the checks of its trainer's names (SB3 PPO, SAC, DQN; RLlib PPO)."""
    from godot_rl_cli.search.options import rllib_known_keys, sb3_known_hyperparameters
    from godot_rl_cli.search.space import default_space_path, load_space

    for algo in ("ppo", "sac", "dqn"):
        space = load_space(default_space_path("sb3", algo), sb3_known_hyperparameters(algo), "flag", "")
        assert space.dimensions
    assert load_space(default_space_path("rllib", "PPO"), rllib_known_keys("PPO"), "key", "").dimensions
