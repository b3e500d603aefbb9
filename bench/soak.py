"""Reliability soak: many training runs, each hit by a random fault, checked for lost models and leaks.

    .venv/bin/python bench/soak.py --minutes 10                    # SB3: writes bench/soak_results.md
    .venv/bin/python bench/soak.py --minutes 10 --trainer rllib    # RLlib: bench/soak_rllib_results.md

Each cycle starts the trainer (stable_baselines3_training_script.py with three games, or
rllib_training_script.py with three envs, one game each) on a simulated game and injects one fault at a
random moment: SIGINT, a crash or hang of one of the games, a protocol fault (malformed, truncated,
oversized, wrong-type, out-of-order or non-UTF-8 message), NaN rewards, or a crash survived with
max_env_restarts. It then checks the outcome: the expected exit code, one ERROR line for failures, a
loadable model (SB3) or a complete checkpoint (RLlib), no game process left and no temporary file left.
"""

import argparse
import datetime
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import Counter
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
BALLCHASE = str(REPO_ROOT / "examples" / "sim" / "BallChase.x86_64")
PROTOCOL_FAULTS = [
    "truncated",
    "oversized",
    "wrong_type",
    "missing_fields",
    "wrong_shape",
    "garbage",
    "out_of_order",
    "not_object",
]


def scenario(rng: random.Random) -> tuple:
    """(name, extra arguments, expected exit code, SIGINT delay or None); `restart_args` are the trainer's
    own way of surviving the crash of the last scenario (SB3 flags; RLlib's are in its YAML)."""
    kind = rng.choice(["sigint", "crash", "hang", "protocol", "nan", "restart"])
    step = str(rng.randint(30, 600))
    faulty = str(rng.randint(0, 2))
    if kind == "sigint":
        return "SIGINT", [], 0, rng.uniform(0.0, 2.0)
    if kind == "crash":
        return (
            "crash in 1 of 3 games",
            ["--game_arg", f"crash_after_steps={step}", "--game_arg", f"fault_seed={faulty}"],
            1,
            None,
        )
    if kind == "hang":
        return (
            "hang in 1 of 3 games",
            ["--game_arg", f"hang_after_steps={step}", "--game_arg", f"fault_seed={faulty}"],
            1,
            None,
        )
    if kind == "protocol":
        fault = rng.choice(PROTOCOL_FAULTS)
        return (
            f"protocol: {fault}",
            ["--game_arg", f"fault={fault}", "--game_arg", f"fault_after_steps={step}"],
            1,
            None,
        )
    if kind == "nan":
        return "NaN reward", ["--game_arg", f"nan_reward_after_steps={step}"], 1, None
    return (
        "crash with max_env_restarts",
        ["--game_arg", f"crash_after_steps={step}", "--game_arg", "fault_seed=1"],
        0,
        None,
    )


SB3_RESTARTS = ["--max_env_restarts=100", "--timesteps=3000"]


def leftover_games(port: int) -> int:
    count = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        count += any(f"--port={port + index} " in command for index in range(3))
    return count


def model_loadable(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip() is None and "policy.pth" in archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return False


def sb3_command(experiment: Path, port: int, restarts: bool) -> list:
    return [
        sys.executable,
        str(REPO_ROOT / "stable_baselines3_training_script.py"),
        f"--env_path={BALLCHASE}",
        f"--experiment_dir={experiment}",
        "--experiment_name=run",
        "--timesteps=10000000",
        "--n_parallel=3",
        f"--port={port}",
        "--step_timeout=3",
        "--save_checkpoint_frequency=256",
        *(SB3_RESTARTS if restarts else []),
    ]


def rllib_command(experiment: Path, port: int, restarts: bool) -> list:
    """Three envs in the training process (one game each), a checkpoint every iteration; with `restarts`,
    crashed games are relaunched and the run ends after 8 iterations."""
    env_config = f"{{env_path: {BALLCHASE}, speedup: 8, port: {port}, step_timeout: 3"
    env_config += ", max_env_restarts: 100}" if restarts else "}"
    config = experiment.parent / "rllib.yaml"
    config.write_text(
        "algorithm: PPO\n"
        f"env_config: {env_config}\n"
        "checkpoint_frequency: 1\n"
        f"stop: {{training_iteration: {8 if restarts else 100000}}}\n"
        "num_workers: 0\nnum_envs_per_worker: 3\n"
        "rollout_fragment_length: 100\ntrain_batch_size: 300\nsgd_minibatch_size: 100\nnum_sgd_iter: 1\n"
        "model: {fcnet_hiddens: [16]}\n"
    )
    return [
        sys.executable,
        str(REPO_ROOT / "rllib_training_script.py"),
        f"--config_file={config}",
        f"--experiment_dir={experiment}",
    ]


def checkpoint_complete(experiment: Path) -> bool:
    """An RLlib run left at least one checkpoint, and its newest one loads as a policy set."""
    checkpoints = sorted(experiment.glob("*/*/checkpoint_*"))
    return bool(checkpoints) and (checkpoints[-1] / "algorithm_state.pkl").is_file()


TRAINERS = {  # command, the stdout line after which training runs, whether the run's model survived
    "sb3": (sb3_command, "Game ready", lambda experiment: model_loadable(experiment / "run_final.zip")),
    "rllib": (rllib_command, "Training policies", checkpoint_complete),
}


def run_cycle(rng: random.Random, port: int, workdir: Path, trainer: str) -> dict:
    name, extra, expected_code, sigint_after = scenario(rng)
    experiment = workdir / "exp"
    build, ready_line, model_saved = TRAINERS[trainer]
    command = build(experiment, port, restarts=name.startswith("crash with")) + extra
    process = subprocess.Popen(
        command, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    if sigint_after is not None:
        for line in process.stdout:
            if line.startswith(ready_line):
                break
        time.sleep(sigint_after)
        process.send_signal(signal.SIGINT)
    try:
        _, stderr = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        process.kill()
        _, stderr = process.communicate()
        return {
            "scenario": name,
            "ok": False,
            "why": "did not end within 120 s",
            "lost": 1,
            "leaked": leftover_games(port),
        }
    time.sleep(0.3)
    errors = [line for line in stderr.splitlines() if line.startswith("ERROR:")]
    problems = []
    if process.returncode != expected_code:
        problems.append(f"exit code {process.returncode}, expected {expected_code}")
    if expected_code == 1 and len(errors) != 1:
        problems.append(f"{len(errors)} ERROR lines")
    if "Traceback" in stderr:
        problems.append("traceback printed")
    lost = 0 if model_saved(experiment) else 1
    leaked = leftover_games(port)
    temporary = [p for p in workdir.rglob("*") if ".tmp" in p.name]
    if lost:
        problems.append("model lost")
    if leaked:
        problems.append(f"{leaked} game processes leaked")
    if temporary:
        problems.append("temporary files left")
    return {"scenario": name, "ok": not problems, "why": "; ".join(problems), "lost": lost, "leaked": leaked}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long to keep starting cycles")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fault choices")
    parser.add_argument("--port", type=int, default=33000, help="base port (3 consecutive ports are used)")
    parser.add_argument("--trainer", choices=sorted(TRAINERS), default="sb3", help="which training script")
    parser.add_argument(
        "--output",
        help="where to write the summary (default: bench/soak_results.md for sb3, "
        "bench/soak_rllib_results.md for rllib)",
    )
    args = parser.parse_args()
    output = args.output or str(
        REPO_ROOT / "bench" / ("soak_results.md" if args.trainer == "sb3" else "soak_rllib_results.md")
    )
    rng = random.Random(args.seed)
    deadline = time.monotonic() + args.minutes * 60
    results = []
    while time.monotonic() < deadline:
        with tempfile.TemporaryDirectory() as workdir:
            result = run_cycle(rng, args.port, Path(workdir), args.trainer)
        results.append(result)
        print(
            f"cycle {len(results)}: {result['scenario']}: "
            f"{'ok' if result['ok'] else 'FAILED: ' + result['why']}",
            flush=True,
        )
    by_scenario = Counter(result["scenario"].split(":")[0] for result in results)
    failed = [result for result in results if not result["ok"]]
    lines = [
        f"# Reliability soak results ({args.trainer})",
        "",
        f"Command: `.venv/bin/python bench/soak.py --minutes {args.minutes:g} --seed {args.seed}"
        f"{' --trainer rllib' if args.trainer == 'rllib' else ''}`  ",
        f"Date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores",
        "",
        "| figure | value |",
        "| --- | --- |",
        f"| cycles run | {len(results)} |",
        "| faults injected (all but SIGINT cycles) | "
        f"{sum(count for name, count in by_scenario.items() if name != 'SIGINT')} |",
        f"| SIGINT cycles | {by_scenario.get('SIGINT', 0)} |",
        f"| cycles that ended as expected | {len(results) - len(failed)} |",
        f"| models lost | {sum(result['lost'] for result in results)} |",
        f"| game processes leaked | {sum(result['leaked'] for result in results)} |",
        "",
        "| scenario | cycles |",
        "| --- | --- |",
        *[f"| {name} | {count} |" for name, count in sorted(by_scenario.items())],
    ]
    if failed:
        lines += ["", "Failures:", *[f"- {result['scenario']}: {result['why']}" for result in failed]]
    Path(output).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
