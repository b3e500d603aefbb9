"""hyperparameter_search.py against godot_rl_agents' examples/stable_baselines3_hp_tuning.py, on its budget.

    .venv/bin/python bench/search_bench.py                # 1 search each, interleaved (~15 min, busy 2 cores)
    .venv/bin/python bench/search_bench.py --repeats=3    # the issue's median of 3

The example is not part of the godot-rl package (it lives in the repository's examples/), so this file has a
runner that does what the example does, as read from its source: Optuna's TPE sampler (5 startup trials) and
median pruner (5 startup trials), 20 trials of PPO for 10,240 steps with godot-rl's StableBaselinesGodotEnv at
speedup 8, ent_coef 0.005, learning_rate log-uniform in [3e-4, 3e-3], n_steps in {8..128}, batch_size in
{128..1024}, n_epochs in {2, 4, 8, 16}; one evaluation of 3 deterministic episodes on a second game at the end
of each trial, whose mean reward is the trial's value; torch on 1 thread. Two deviations: its games get free
ports (the example uses 11008 for both envs), and the game has 4 agents (BallChase, like the time-to-reward
runs of bench/run_bench.py).

Ours searches the same space on the same budget: `--num_trials=20 --timesteps=10240 --pruner=median
--metric=eval_reward_mean` with the same evaluation (-- --eval_freq=10240 --eval_episodes=3 --ent_coef=0.005).
Measured: wall time of the whole search, best value, trials finished/pruned/failed, the cores the search's own
processes kept busy (their CPU time over the wall time, and the busiest 5 s), the 1-minute load average of the
shared machine sampled every 5 s, and for ours that no two trials shared a port. Then the time to reward of
each of our searches' best settings against the shipped defaults (bench/run_bench.py's run; see
time_to_reward), interleaved, --reward_repeats seeds each.
"""

import argparse
import csv
import json
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
SIM_DIR = REPO_ROOT / "examples" / "sim"
N_AGENTS = 4
TRIALS = 20
TIMESTEPS = 10240
SPEEDUP = 8
EVAL_EPISODES = 3
STARTUP_TRIALS = 5
GDRL_SPACE = {
    "learning_rate": {"loguniform": [0.0003, 0.003]},
    "n_steps": {"choice": [8, 16, 32, 64, 128]},
    "batch_size": {"choice": [128, 256, 512, 1024]},
    "n_epochs": {"choice": [2, 4, 8, 16]},
}


def free_port_block(count: int) -> int:
    while True:
        base = random.randint(20000, 40000)
        try:
            for offset in range(count):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", base + offset))
            return base
        except OSError:
            continue


def make_launcher(directory: Path) -> Path:
    """BallChase with N_AGENTS agents, started as an exported game (both searches pass no game arguments)."""
    launcher = directory / "BallChase4.x86_64"
    launcher.write_text(
        f"#!{PYTHON}\nimport sys\nsys.path.insert(0, {str(SIM_DIR)!r})\n"
        f"sys.argv.append('--n_agents={N_AGENTS}')\nfrom godot_sim import main\nmain('BallChase')\n"
    )
    launcher.chmod(0o755)
    return launcher


class LoadSampler:
    """While a search runs: the 1-minute load average (the whole shared machine) and the CPU time of the
    search's own process tree (its processes and their descendants, found through /proc every second), so
    that the cores it keeps busy are measured apart from the other sessions' load."""

    def __init__(self, root_pid: int) -> None:
        self.root_pid = root_pid
        self.samples: List[float] = []
        self.cpu_by_pid: Dict[int, float] = {}
        self.window_cores: List[float] = []  # cores busy over each 5 s window
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        tick = os.sysconf("SC_CLK_TCK")
        window_start, window_cpu = time.monotonic(), 0.0
        while self.running:
            self.samples.append(os.getloadavg()[0])
            for _ in range(5):
                for pid, cpu in tree_cpu(self.root_pid, tick).items():
                    self.cpu_by_pid[pid] = max(cpu, self.cpu_by_pid.get(pid, 0.0))
                time.sleep(1)
            total = sum(self.cpu_by_pid.values())
            self.window_cores.append((total - window_cpu) / (time.monotonic() - window_start))
            window_start, window_cpu = time.monotonic(), total

    def stop(self, wall_s: float) -> Dict[str, float]:
        self.running = False
        self.thread.join()
        return {
            "load_median": statistics.median(self.samples),
            "load_max": max(self.samples),
            "cores_mean": sum(self.cpu_by_pid.values()) / wall_s,
            "cores_max_5s": max(self.window_cores, default=0.0),
        }


def tree_cpu(root_pid: int, tick: int) -> Dict[int, float]:
    """CPU seconds (user + system) of `root_pid` and every process below it, by pid."""
    parents: Dict[int, int] = {}
    cpu: Dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
        cpu[int(entry)] = (int(fields[11]) + int(fields[12])) / tick
    inside = {root_pid}
    changed = True
    while changed:
        found = {pid for pid, parent in parents.items() if parent in inside} - inside
        inside |= found
        changed = bool(found)
    return {pid: cpu[pid] for pid in inside if pid in cpu}


def run_measured(command: List[str], directory: Path, log_name: str) -> Dict[str, Any]:
    """Run `command` as a user would; its wall time, exit code, output and the load it made."""
    started = time.perf_counter()
    with open(directory / log_name, "w") as log:
        process = subprocess.Popen(command, cwd=directory, stdout=subprocess.PIPE, stderr=log, text=True)
        load = LoadSampler(process.pid)
        stdout = process.communicate()[0]
    wall = time.perf_counter() - started
    return {"wall_s": wall, "exit_code": process.returncode, "stdout": stdout, **load.stop(wall)}


def run_ours(directory: Path, launcher: Path, seed: int) -> Dict[str, Any]:
    space = directory / "space.yaml"
    space.write_text(yaml.safe_dump({"hyperparameters": GDRL_SPACE}))
    command = [
        PYTHON,
        str(REPO_ROOT / "hyperparameter_search.py"),
        "--trainer=sb3",
        f"--env_path={launcher}",
        f"--search_space={space}",
        f"--num_trials={TRIALS}",
        f"--timesteps={TIMESTEPS}",
        "--pruner=median",
        "--metric=eval_reward_mean",
        f"--experiment_dir={directory}",
        "--experiment_name=ours",
        f"--port={free_port_block(TRIALS * 4)}",
        f"--seed={seed}",
        "--",
        f"--speedup={SPEEDUP}",
        f"--eval_freq={TIMESTEPS}",
        f"--eval_episodes={EVAL_EPISODES}",
        "--ent_coef=0.005",
        "--torch_threads=1",
    ]
    result = run_measured(command, directory, "ours.err")
    stdout = result.pop("stdout")
    (directory / "ours.log").write_text(stdout)
    rows = list(csv.DictReader((directory / "ours" / "results.csv").open()))
    values = [float(row["metric"]) for row in rows if row["status"] == "finished" and row["metric"] != "nan"]
    result["best"] = max(values) if values else None
    for status in ("finished", "pruned", "failed"):
        result[status] = sum(1 for row in rows if row["status"] == status)
    ports = [
        re.search(r"--port=(\d+)", path.read_text()).group(1)
        for path in (directory / "ours").glob("trial_*/command.txt")
    ]
    result["ports_distinct"] = len(ports) == len(set(ports))
    result["concurrency"] = re.search(r"up to (\d+) at once", stdout).group(1)
    best_args = directory / "ours" / "best" / "hyperparameters.args"
    if best_args.is_file():  # kept past the search's temporary directory for the time-to-reward runs
        result["best_args"] = best_args.read_text().split()
    return result


def run_gdrl_equivalent(directory: Path, launcher: Path, seed: int) -> Dict[str, Any]:
    command = [PYTHON, __file__, "--gdrl-child", f"--env_path={launcher}", f"--seed={seed}"]
    command += [f"--trials={TRIALS}", f"--timesteps={TIMESTEPS}"]
    result = run_measured(command, directory, "gdrl.err")
    summary = json.loads(result.pop("stdout").strip().splitlines()[-1])
    return {**result, **summary}


def gdrl_child(env_path: str, seed: int) -> None:
    """The example's search, as it behaves (see the module docstring); prints a JSON summary last."""
    import optuna
    import torch
    from godot_rl.wrappers.stable_baselines_wrapper import StableBaselinesGodotEnv
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import EvalCallback
    from stable_baselines3.common.vec_env.vec_monitor import VecMonitor

    torch.set_num_threads(1)
    eval_every = max(TIMESTEPS // N_AGENTS, 1)

    class Reporting(EvalCallback):
        def __init__(self, eval_env: Any, trial: optuna.Trial):
            super().__init__(
                eval_env, n_eval_episodes=EVAL_EPISODES, eval_freq=eval_every, deterministic=True
            )
            self.trial, self.evaluations, self.pruned = trial, 0, False

        def _on_step(self) -> bool:
            if self.n_calls % self.eval_freq:
                return True
            super()._on_step()
            self.evaluations += 1
            self.trial.report(self.last_mean_reward, self.evaluations)
            self.pruned = self.trial.should_prune()
            return not self.pruned

    def objective(trial: optuna.Trial) -> float:
        settings = {
            "ent_coef": 0.005,
            "learning_rate": trial.suggest_float("learning_rate", 0.0003, 0.003, log=True),
            "n_steps": trial.suggest_categorical("n_steps", GDRL_SPACE["n_steps"]["choice"]),
            "batch_size": trial.suggest_categorical("batch_size", GDRL_SPACE["batch_size"]["choice"]),
            "n_epochs": trial.suggest_categorical("n_epochs", GDRL_SPACE["n_epochs"]["choice"]),
        }
        port = free_port_block(2)
        env = StableBaselinesGodotEnv(env_path=env_path, speedup=SPEEDUP, port=port)
        eval_env = VecMonitor(StableBaselinesGodotEnv(env_path=env_path, speedup=SPEEDUP, port=port + 1))
        model = PPO("MultiInputPolicy", env, **settings)
        callback = Reporting(eval_env, trial)
        try:
            model.learn(TIMESTEPS, callback=callback)
        except AssertionError:
            return float("nan")
        finally:
            model.env.close()
            eval_env.close()
        if callback.pruned:
            raise optuna.exceptions.TrialPruned()
        return callback.last_mean_reward

    study = optuna.create_study(
        sampler=optuna.samplers.TPESampler(n_startup_trials=STARTUP_TRIALS, seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=STARTUP_TRIALS, n_warmup_steps=0),
        direction="maximize",
    )
    study.optimize(objective, n_trials=TRIALS)
    states = [trial.state.name for trial in study.trials]
    print(
        json.dumps(
            {
                "best": study.best_value,
                "finished": states.count("COMPLETE"),
                "pruned": states.count("PRUNED"),
                "failed": states.count("FAIL"),
                "best_params": study.best_params,
            }
        )
    )


def table(results: Dict[str, List[Dict[str, Any]]]) -> List[str]:
    rows = [
        "| search | wall time (s), median | runs (s) | best eval reward, median | runs | finished / pruned / "
        "failed (each run) | cores its processes used: mean, busiest 5 s (each run; 2 cores) | machine load "
        "avg median, max (each run) | trials at once | ports distinct |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, runs in results.items():
        walls = [run["wall_s"] for run in runs]
        bests = [run["best"] for run in runs if run.get("best") is not None]
        rows.append(
            f"| {name} | {statistics.median(walls):.0f} | {', '.join(f'{w:.0f}' for w in walls)} | "
            f"{statistics.median(bests):.1f} | {', '.join(f'{b:.1f}' for b in bests)} | "
            + "; ".join(f"{run['finished']}/{run['pruned']}/{run['failed']}" for run in runs)
            + " | "
            + "; ".join(f"{run['cores_mean']:.2f}, {run['cores_max_5s']:.2f}" for run in runs)
            + " | "
            + "; ".join(f"{run['load_median']:.1f}, {run['load_max']:.1f}" for run in runs)
            + f" | {runs[0].get('concurrency', 1)} | {all(run.get('ports_distinct', True) for run in runs)} |"
        )
    return rows


def time_to_reward(best_settings: List[List[str]], repeats: int) -> List[str]:
    """bench/run_bench.py's time-to-reward run (BallChase, 4 agents, one game, speedup 8, mean of the last
    100 episodes >= 40, measured in the game) of each search's best settings against the shipped defaults,
    interleaved, `repeats` seeds each. The best settings: the argv file the search wrote, with the flag the
    search passed to every trial (--ent_coef=0.005); without the evaluation flags (no evaluation game)."""
    import run_bench

    seeds = iter(range(1000))
    timeout_s = 120.0

    def traced(extra: List[str]) -> Any:
        def command(directory: Path, launcher: Path) -> List[str]:
            return run_bench.ours_sb3(1, [*extra, f"--seed={next(seeds)}"])(directory, launcher)

        return lambda: run_bench.run_traced(
            command,
            n_agents=N_AGENTS,
            games=1,
            stop_seconds=0,
            stop_reward=run_bench.REWARD_THRESHOLD,
            timeout_s=timeout_s,
            extra_env=run_bench.OURS_ENV,
        )

    runs = {"shipped defaults": traced([])}
    for index, settings in enumerate(best_settings, 1):
        runs[f"best of our search {index} ({' '.join(settings)})"] = traced([*settings, "--ent_coef=0.005"])
    results = run_bench.interleaved(runs, repeats)
    reached = {
        name: [trace.time_to_reward(run_bench.REWARD_THRESHOLD) for trace in traces]
        for name, traces in results.items()
    }
    medians = {
        name: statistics.median([value if value is not None else float("inf") for value in values])
        for name, values in reached.items()
    }
    rows = [
        f"| settings | median time to mean return {run_bench.REWARD_THRESHOLD:g} (s) | runs (s) | ratio "
        "(defaults' median / this median; >= 1: no later) |",
        "| --- | --- | --- | --- |",
    ]
    for name, values in reached.items():
        shown = ", ".join(f"{value:.1f}" if value is not None else f"> {timeout_s:.0f}" for value in values)
        ratio = medians["shipped defaults"] / medians[name] if medians[name] != float("inf") else 0.0
        rows.append(f"| {name} | {medians[name]:.1f} | {shown} | {ratio:.2f} |")
    print("\n".join(rows), flush=True)
    return rows


def main() -> None:
    global TRIALS, TIMESTEPS
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--trials", type=int, default=TRIALS, help="trials per search (the example's: 20)")
    parser.add_argument("--timesteps", type=int, default=TIMESTEPS, help="steps per trial (the example's)")
    parser.add_argument("--reward_repeats", type=int, default=3, help="seeds per time-to-reward run")
    parser.add_argument("--gdrl-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--env_path", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    TRIALS, TIMESTEPS = args.trials, args.timesteps
    if args.gdrl_child:
        gdrl_child(args.env_path, args.seed)
        return
    results: Dict[str, List[Dict[str, Any]]] = {"ours (hyperparameter_search.py)": [], "gdrl example": []}
    for repeat in range(args.repeats):
        for name, runner in (
            ("ours (hyperparameter_search.py)", run_ours),
            ("gdrl example", run_gdrl_equivalent),
        ):
            with tempfile.TemporaryDirectory(prefix="search-bench-") as folder:
                directory = Path(folder)
                result = runner(directory, make_launcher(directory), repeat)
                print(name, json.dumps(result), flush=True)
                results[name].append(result)
    print("\n".join(table(results)), flush=True)
    ours = results["ours (hyperparameter_search.py)"]
    best_settings = [run["best_args"] for run in ours if "best_args" in run]
    time_to_reward(best_settings, args.reward_repeats)


if __name__ == "__main__":
    main()
