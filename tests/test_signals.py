"""SIGINT at 20 moments spread over the first seconds of a run, for each trainer and the simulator (issue 25):
from the script's first statement (imports), through Ray's start, the game's launch and model building, into
training. Every run exits 0 without a traceback, leaves no process behind, changes no file that was there, and
once training had started its model (SB3) or a checkpoint (RLlib) is saved.

The moments are measured from when the script takes SIGTERM (its first statement), so they do not depend on
how long Python itself takes to start. The runs go in a small pool of processes (sweep_harness)."""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest
from conftest import SIM_DIR, find_free_port_block
from sweep_harness import STOPPED, Case, Outcome, complaints, run_case

BALLCHASE = str(SIM_DIR / "BallChase.x86_64")
PONG = str(SIM_DIR / "Pong.x86_64")
FROM_START = 14  # moments spread over SPANS[script] seconds from the script's first statement
IN_TRAINING = 6  # moments spread over the 3 seconds after MARKERS[script] (training is being set up or runs)
POOL = 6
SPANS = {
    "stable_baselines3_training_script.py": 8.0,
    "rllib_training_script.py": 12.0,
    "simulator.py": 4.0,
}
MARKERS = {  # a line after which the run has something to save
    "stable_baselines3_training_script.py": "Game ready",
    "rllib_training_script.py": "Training policies",
    "simulator.py": "connected",
}


def sb3_run(folder: Path) -> List[str]:
    port = find_free_port_block(2)
    return [f"--env_path={BALLCHASE}", f"--port={port}", "--timesteps=1000000", "--experiment_dir=exp"]


def rllib_run(folder: Path) -> List[str]:
    port = find_free_port_block(4)
    (folder / "run.yaml").write_text(
        f"env_config: {{env_path: {PONG}, port: {port}}}\nnum_workers: 0\ntrain_batch_size: 64\n"
        "sgd_minibatch_size: 32\nrollout_fragment_length: 32\nnum_sgd_iter: 1\ncheckpoint_frequency: 0\n"
    )
    return ["--config_file=run.yaml", "--experiment_dir=exp"]


def simulator_run(folder: Path) -> List[str]:
    return [f"--env-path={BALLCHASE}", f"--port={find_free_port_block(2)}"]


def saved_once_training_started(folder: Path, outcome: Outcome) -> Optional[str]:
    """A trainer whose model was being built or trained (it printed its marker line) saved its model or a
    checkpoint."""
    markers = [MARKERS[script] for script in MARKERS if script != "simulator.py"]
    if not any(marker in outcome.stdout for marker in markers):
        return None
    saved = list((folder / "exp").glob("*_final.zip")) + list((folder / "exp").rglob("checkpoint_*"))
    return None if saved else "training had started, but nothing was saved"


def saved_after(marker: str):
    """The check of a run signalled after `marker`: the marker came, and a trainer saved."""

    def check(folder: Path, outcome: Outcome) -> Optional[str]:
        if marker not in outcome.stdout:
            return f"the line {marker!r} never came"
        return saved_once_training_started(folder, outcome)

    return check


RUNS = {
    "stable_baselines3_training_script.py": sb3_run,
    "rllib_training_script.py": rllib_run,
    "simulator.py": simulator_run,
}


def cases() -> Dict[str, Case]:
    found = {}
    for script, build in RUNS.items():
        for index in range(FROM_START):
            moment = round(SPANS[script] * index / (FROM_START - 1), 2)
            found[f"{script} SIGINT at {moment} s"] = Case(
                "stop signal",
                script,
                build,
                STOPPED,
                signals=(moment,),
                timeout=moment + 60,
                check=saved_once_training_started,
            )
        for index in range(IN_TRAINING):
            moment = round(3.0 * index / (IN_TRAINING - 1), 2)
            found[f"{script} SIGINT {moment} s after {MARKERS[script]!r}"] = Case(
                "stop signal",
                script,
                build,
                STOPPED,
                signals=(moment,),
                after_line=MARKERS[script],
                timeout=150,
                check=saved_after(MARKERS[script]),
            )
    return found


CASES = cases()


@pytest.fixture(scope="module")
def results(request, tmp_path_factory) -> Dict[str, Tuple[Case, Outcome, List[str]]]:
    selected = [
        item.callspec.params["name"]
        for item in request.session.items
        if hasattr(item, "callspec") and "name" in item.callspec.params and item.module.__name__ == __name__
    ]
    base = tmp_path_factory.mktemp("signals")

    def one(item: Tuple[int, str]) -> Tuple[str, Tuple[Case, Outcome, List[str]]]:
        index, name = item
        folder = base / f"run{index:03d}"
        case = CASES[name]
        outcome = run_case(case, folder)
        return name, (case, outcome, complaints(case, outcome, folder))

    # the longest runs first, so that the pool ends together
    order = sorted(selected or CASES, key=lambda name: (not CASES[name].after_line, -CASES[name].signals[0]))
    with ThreadPoolExecutor(POOL) as pool:
        return dict(pool.map(one, enumerate(order)))


@pytest.mark.parametrize("name", sorted(CASES))
def test_sigint_at_a_moment_is_a_clean_stop(name, results):
    case, outcome, problems = results[name]
    assert not problems, f"{problems}\nstderr:\n{outcome.stderr[-3000:]}"
