"""The shipped rllib_config.yaml trained briefly on Pong, then resumed: made once per session (conftest's
fixtures) for the modules that only read them: test_rllib_training checks the runs, test_convert_rllib_to_onnx
exports their checkpoints. Each run costs a Ray start and the building of the algorithm."""

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List

import yaml
from conftest import REPO_ROOT, SIM_DIR, find_free_port_block
from script_helpers import run_in_own_session, script_command

SCRIPT = "rllib_training_script.py"
PONG = str(SIM_DIR / "Pong.x86_64")
SMALL = {  # in agent steps (the suite's count_steps_by): 200 steps of 2-player Pong per iteration
    "rollout_fragment_length": 200,
    "train_batch_size": 400,
    "sgd_minibatch_size": 100,
    "num_sgd_iter": 2,
}


def shipped_config(tmp_path: Path, port: int, **changes) -> Path:
    """The shipped rllib_config.yaml with a small batch, absolute env_path and the given top-level changes."""
    data = yaml.safe_load((REPO_ROOT / "rllib_config.yaml").read_text())
    data["env_config"].update(env_path=PONG, port=port)
    data.update({**SMALL, "checkpoint_frequency": 1, "stop": {"training_iteration": 2}, **changes})
    path = tmp_path / "rllib_config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def trial_dirs(experiment_dir: Path) -> List[Path]:
    return sorted(path.parent for path in experiment_dir.glob("*/*/run_manifest.json"))


def metrics_env() -> dict:
    return {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, "CONTROLLER_METRICS": "1"}


def run_isolated(args: list, cwd: Path, env: dict, timeout: float = 240) -> subprocess.CompletedProcess:
    """Run the script in its own session and check that nothing it started (games, Ray) outlives it."""
    return run_in_own_session(script_command(SCRIPT, *args), cwd, env, timeout)


def first_trial(experiment_dir: Path) -> Path:
    """The trial of experiment_dir that did not resume another (a resumed run adds its trial beside it)."""
    [trial] = [
        trial
        for trial in trial_dirs(experiment_dir)
        if json.loads((trial / "run_manifest.json").read_text())["resume_from"] is None
    ]
    return trial


@dataclass
class PongRun:
    directory: Path  # holds the config; the runs' trials are below directory/exp
    port: int
    result: subprocess.CompletedProcess


@dataclass
class ResumedRun:
    run: PongRun  # its config is in its own directory; its trial is beside the shipped run's
    first_trial: Path  # the shipped run's trial
    checkpoint: Path  # the checkpoint of first_trial it resumed from
    before: Dict[Path, int]  # st_mtime_ns of every file of first_trial before the resume


def train_shipped(directory: Path) -> PongRun:
    """Two iterations of the shipped config, a checkpoint after each, with metrics on."""
    port = find_free_port_block(4)
    config = shipped_config(directory, port)
    result = run_isolated(
        [f"--config_file={config}", f"--experiment_dir={directory / 'exp'}"], directory, metrics_env()
    )
    return PongRun(directory, port, result)


def resume_shipped(shipped: PongRun, directory: Path) -> ResumedRun:
    """The shipped run resumed from its checkpoint_000001 up to iteration 4, into its experiment folder."""
    assert shipped.result.returncode == 0, shipped.result.stderr[-3000:]
    first = first_trial(shipped.directory / "exp")
    before = {path: path.stat().st_mtime_ns for path in first.rglob("*")}
    config = shipped_config(directory, shipped.port, stop={"training_iteration": 4})
    checkpoint = first / "checkpoint_000001"
    result = run_isolated(
        [
            f"--config_file={config}",
            f"--experiment_dir={shipped.directory / 'exp'}",
            f"--resume={checkpoint}",
        ],
        directory,
        metrics_env(),
    )
    return ResumedRun(PongRun(directory, shipped.port, result), first, checkpoint, before)
