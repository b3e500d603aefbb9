"""SIGINT at 20 moments of a run, for each trainer and the simulator (issue 25), chosen per phase so that each
phase is hit whatever the machine's load: from the script's first statement (imports), through the game's
launch and handshake, Ray's start and the building of the model, into training. Every run exits 0 without a
traceback, leaves no process behind, changes no file that was there, and once training had started its model
(SB3) or a checkpoint (RLlib) is saved.

A moment is some seconds after a line the script prints (the phase's first line), or after the script took
SIGTERM (its first statement), so that it does not depend on how long Python itself takes to start. Most
moments fall in the cheap early phases; the few in Ray's start and in training cost a whole Ray start each.
The runs go in a small pool of processes (sweep_harness)."""

from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest
from conftest import SIM_DIR, find_free_port_block
from sweep_harness import STOPPED, Case, Outcome, Result, run_cases, selected_cases

BALLCHASE = str(SIM_DIR / "BallChase.x86_64")
PONG = str(SIM_DIR / "Pong.x86_64")
POOL = 6
SB3 = "stable_baselines3_training_script.py"
RLLIB = "rllib_training_script.py"
SIM = "simulator.py"
GAME = "[game:"  # the game's first relayed line: it runs, the handshake follows
# (a line the moments count from, "" for the script's first statement; seconds after it), per phase
MOMENTS: Dict[str, List[Tuple[str, Tuple[float, ...]]]] = {
    SB3: [
        # imports, the game's launch
        ("", (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.3, 1.6, 2.0, 2.5, 3.0, 4.0)),
        (GAME, (0.0, 0.1, 0.3)),  # the handshake
        ("Game ready", (0.0, 0.5)),  # the model is built
        ("iteration 1 |", (0.0, 1.0)),  # training
    ],
    RLLIB: [
        # imports, the plan, torch, then Ray's imports and the probe game's launch
        ("", (0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0)),
        (GAME, (0.0, 0.2)),  # the probe game's handshake
        ("Torch threads", (0.0, 3.0)),  # Ray starts, the algorithm is built
        ("Training policies", (0.0, 1.0)),  # training
    ],
    SIM: [
        ("", (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0)),  # imports
        # the game's launch and handshake (the simulator relays the game's lines to stderr)
        ("Starting the game", (0.0, 0.1, 0.2, 0.4)),
        ("connected", (0.0, 0.05, 0.1, 0.3, 0.5, 1.0, 2.0)),  # episodes played
    ],
}
MARKERS = {  # a line after which the run has something to save
    SB3: "Game ready",
    RLLIB: "Training policies",
    SIM: "connected",
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
    markers = [MARKERS[script] for script in MARKERS if script != SIM]
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


RUNS = {SB3: sb3_run, RLLIB: rllib_run, SIM: simulator_run}


def case_of(script: str, after_line: str, moment: float) -> Case:
    timeout = 150 if after_line else moment + 60
    check = saved_after(after_line) if after_line else saved_once_training_started
    return Case(
        "stop signal",
        script,
        RUNS[script],
        STOPPED,
        signals=(moment,),
        after_line=after_line,
        timeout=timeout,
        check=check,
    )


def cases() -> Dict[str, Case]:
    found = {}
    for script, phases in MOMENTS.items():
        for after_line, moments in phases:
            for moment in moments:
                name = (
                    f"{script} SIGINT {moment} s after {after_line!r}"
                    if after_line
                    else f"{script} SIGINT at {moment} s"
                )
                found[name] = case_of(script, after_line, moment)
    return found


CASES = cases()


@pytest.fixture(scope="module")
def results(request, tmp_path_factory) -> Dict[str, Result]:
    return run_cases(selected_cases(request, __name__, CASES), tmp_path_factory.mktemp("signals"), POOL)


@pytest.mark.fast
def test_twenty_moments_per_script():
    for script in MOMENTS:
        assert sum(case.script == script for case in CASES.values()) >= 20, script


@pytest.mark.parametrize("name", sorted(CASES))
def test_sigint_at_a_moment_is_a_clean_stop(name, results):
    case, outcome, problems = results[name]
    assert not problems, f"{problems}\nstderr:\n{outcome.stderr[-3000:]}"
