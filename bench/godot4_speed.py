"""The real Godot 4 BallChase (examples/godot4) beside its simulated twin (examples/sim).

    bash scripts/install_godot4.sh                  # once: the engine, into .godot4/ (or set GODOT4)
    .venv/bin/python bench/godot4_speed.py          # prints the tables; --write adds them to bench/results.md

Per game and agent count (one game, --speedup 8, --framerate 2000, action_repeat 8, random actions, driven
through the trainers' own GodotVecEnv): game steps/s and agent steps/s, the time from launch to the game's
env_info (engine start), and the game process's peak memory (VmHWM). Then, per game, the SB3 trainer on 2
games of 4 players for 20,000 steps: wall time, first and last mean episode reward, and the time from launch
to a mean episode reward of REWARD_GOAL.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

REPO_ROOT = Path(__file__).resolve().parent.parent
GAMES = {
    "Godot 4 (real engine)": REPO_ROOT / "examples" / "godot4" / "BallChase.x86_64",
    "simulated twin": REPO_ROOT / "examples" / "sim" / "BallChase.x86_64",
}
AGENT_COUNTS = (1, 4, 16)
REWARD_GOAL = 40.0
TRAINING_STEPS = 20_000
SECTION = "## Real Godot 4 engine beside its simulated twin (bench/godot4_speed.py)"


def peak_memory_mib(port: int) -> Optional[float]:
    """VmHWM of the live game process started with --port=`port`."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if f"--port={port}".encode() not in argv:
                continue
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            continue
    return None


def measure_speed(game: Path, n_agents: int, seconds: float, port: int) -> Dict[str, Optional[float]]:
    """Random-action steps for about `seconds` after a warm-up, with the engine's start time and memory."""
    from game_speed import random_action_rates

    from godot_rl_cli.game.settings import GameSettings

    settings = GameSettings(
        env_path=str(game), port=port, speedup=8, framerate=2000, game_args={"n_agents": n_agents}
    )
    rates = random_action_rates(settings, seconds, probe=lambda: peak_memory_mib(port))
    return {**rates, "mib": rates["probe"]}


def measure_training(game: Path, port: int, directory: Path) -> Dict[str, Optional[float]]:
    """The SB3 trainer on 2 games x 4 players: wall time, first/last reward, time to REWARD_GOAL."""
    command = [
        str(REPO_ROOT / ".venv" / "bin" / "python"),
        "-u",
        str(REPO_ROOT / "stable_baselines3_training_script.py"),
        f"--env_path={game}",
        f"--experiment_dir={directory}",
        "--experiment_name=bench",
        f"--timesteps={TRAINING_STEPS}",
        "--n_parallel=2",
        "--game_arg=n_agents=4",
        "--speedup=8",
        "--framerate=2000",
        f"--port={port}",
        "--seed=1",
    ]
    launched = time.perf_counter()
    process = subprocess.Popen(
        command,
        cwd=directory.parent,
        env=dict(os.environ, CONTROLLER_METRICS="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    rewards: List[float] = []
    reached: Optional[float] = None
    for line in process.stdout:
        if not line.startswith("@METRIC "):
            continue
        reward = json.loads(line[len("@METRIC ") :])["episode_reward_mean"]
        if reward is not None:
            rewards.append(reward)
            if reached is None and reward >= REWARD_GOAL:
                reached = time.perf_counter() - launched
    if process.wait() != 0:
        raise SystemExit(f"training on {game} failed with exit code {process.returncode}")
    return {
        "wall": time.perf_counter() - launched,
        "first": rewards[0] if rewards else None,
        "last": rewards[-1] if rewards else None,
        "reached": reached,
    }


def number(value: Optional[float], digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def engine_version() -> str:
    engine = os.environ.get("GODOT4") or str(REPO_ROOT / ".godot4" / "godot4")
    result = subprocess.run([engine, "--headless", "--version"], capture_output=True, text=True, timeout=60)
    return result.stdout.strip().splitlines()[-1]


def report(args: argparse.Namespace) -> List[str]:
    lines = [
        SECTION,
        "",
        f"{time.strftime('%Y-%m-%d')}, Godot {engine_version()} (Debian unstable, install_godot4.sh), "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start. One game, --speedup 8, "
        f"--framerate 2000, action_repeat 8, random actions, {args.seconds:.0f} s per row.",
        "",
        "| game | agents | game steps/s | agent steps/s | engine start (s) | peak memory (MiB) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, game in GAMES.items():
        for n_agents in AGENT_COUNTS:
            rates = measure_speed(game, n_agents, args.seconds, args.port)
            lines.append(
                f"| {name} | {n_agents} | {rates['steps']:.0f} | {rates['agent_steps']:.0f} | "
                f"{rates['start']:.2f} | {number(rates['mib'])} |"
            )
            print(lines[-1], flush=True)
    lines += [
        "",
        f"SB3 trainer (PPO defaults), 2 games x 4 players, {TRAINING_STEPS:,} steps, same speed flags:",
        "",
        f"| game | wall time (s) | first mean episode reward | last | time to reward {REWARD_GOAL:.0f} (s) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, game in GAMES.items():
        directory = args.work_dir / name.split()[0].lower()
        directory.mkdir(parents=True, exist_ok=True)
        run = measure_training(game, args.port, directory)
        lines.append(
            f"| {name} | {run['wall']:.1f} | {number(run['first'])} | {number(run['last'])} | "
            f"{number(run['reached'])} |"
        )
        print(lines[-1], flush=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="measuring time per speed row")
    parser.add_argument("--port", type=int, default=36100, help="first game port (3 used)")
    parser.add_argument("--work_dir", type=Path, default=REPO_ROOT / "bench" / "out" / "godot4")
    parser.add_argument(
        "--write", action="store_true", help="add (or replace) this section in bench/results.md"
    )
    args = parser.parse_args()
    sys.path[:0] = [str(REPO_ROOT), str(REPO_ROOT / "bench")]
    lines = report(args)
    if args.write:
        results = REPO_ROOT / "bench" / "results.md"
        before, _, after = results.read_text().partition(SECTION)
        later = after[after.find("\n## ") :] if "\n## " in after else ""
        results.write_text(before.rstrip("\n") + "\n\n" + "\n".join(lines) + "\n" + later)
        print(f"written to {results}")


if __name__ == "__main__":
    main()
