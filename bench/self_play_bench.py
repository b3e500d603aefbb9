"""Self-play on PongDuel (issue 28): does it pay, and what does it cost? Written to bench/results.md.

    .venv/bin/python bench/self_play_bench.py            # 30 iterations per run, 200 evaluation episodes
    .venv/bin/python bench/self_play_bench.py --iterations 10 --episodes 50   # a quick look
    .venv/bin/python bench/self_play_bench.py --game godot4 --iterations 20   # the real Godot 4 PongDuel

Three runs of rllib_training_script.py on examples/self_play_pong.yaml (`--game sim`, the simulated PongDuel)
or examples/self_play_pong_godot4.yaml (`--game godot4`), each `--iterations` iterations of 800 steps of the
game, repeated `--repeats` times in rotation (self-play, random opponent, plain, self-play, ...) so that the
machine's load falls on all three alike; repeat r uses seed r - 1 (the game's and RLlib's: with one seed the
runs are deterministic, so repeats with the same seed would only repeat the learner). `--kinds` makes only
some of the three (e.g. `--kinds self-play "plain multi-agent PPO"` for the cost alone; printed, not written):
- self-play: the YAML as shipped (left_policy against itself and its snapshots);
- random opponent: the same YAML without `self_play`, the game moving the right paddle at random
  (`opponent=random`, one agent; train_batch_size 800 so an iteration is the same 800 steps of the game);
- plain multi-agent PPO: the same YAML without `self_play` (left_policy and right_policy both learn), the
  cost baseline.
Then each run's final left_policy (greedy) plays `--episodes` episodes against the game's scripted opponent
(`opponent=scripted opponent_skill=0.7`): wins, draws and losses by the game's `won` info, pooled over the
repeats. The self-play runs' Elo is read from their result.json; the cost is self-play's median
`time_this_iter_s` over plain PPO's in the same repeat, the median of those ratios. The load average is
sampled every 10 s during the whole bench.
"""

import argparse
import datetime
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Dict, List

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
from conftest import find_free_port_block  # noqa: E402

GAMES = {  # --game: the shipped YAML, the game, its section of bench/results.md
    "sim": ("self_play_pong.yaml", "examples/sim/PongDuel.x86_64", "## Self-play (PongDuel, issue 28)"),
    "godot4": (
        "self_play_pong_godot4.yaml",
        "examples/godot4/PongDuel.x86_64",
        "## Self-play on the real Godot 4 PongDuel (issue 28)",
    ),
}
KINDS = ("self-play", "random opponent", "plain multi-agent PPO")


class LoadSampler(threading.Thread):
    """The 1-minute load average every `period` seconds until stopped."""

    def __init__(self, period: float = 10.0):
        super().__init__(daemon=True)
        self.period = period
        self.samples: List[float] = [os.getloadavg()[0]]
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.period):
            self.samples.append(os.getloadavg()[0])

    def summary(self) -> str:
        values = sorted(self.samples)
        return f"min {values[0]:.1f}, median {statistics.median(values):.1f}, max {values[-1]:.1f}"


def write_config(
    directory: Path, game: str, name: str, self_play: bool, iterations: int, seed: int, **changes: Any
) -> Path:
    yaml_name, env_path, _ = GAMES[game]
    data = yaml.safe_load((REPO / "examples" / yaml_name).read_text())
    if not self_play:
        del data["self_play"]
    data["env_config"].update(env_path=str(REPO / env_path), port=find_free_port_block(4), seed=seed)
    data.update(stop={"training_iteration": iterations}, checkpoint_frequency=0, **changes)
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def train(directory: Path, name: str, config: Path, *args: str) -> Path:
    """Runs the trainer; returns its trial directory."""
    runs = directory / name
    command = [
        sys.executable,
        "rllib_training_script.py",
        f"--config_file={config}",
        f"--experiment_dir={runs}",
    ]
    result = subprocess.run(
        [*command, "--torch_threads=1", *args], cwd=REPO, capture_output=True, text=True, timeout=3600
    )
    if result.returncode != 0:
        raise SystemExit(f"{name} failed: {result.stderr[-3000:]}")
    print(f"{name}: done", flush=True)
    return next(runs.glob("*/*/checkpoint_*")).parent


def results(trial: Path) -> List[Dict[str, Any]]:
    return [json.loads(line) for line in (trial / "result.json").read_text().splitlines() if line.strip()]


def evaluate(trial: Path, game_name: str, episodes: int) -> Dict[str, int]:
    """The final left_policy, greedy, against the scripted opponent (skill 0.7): counts of each outcome."""
    from ray.rllib.policy.policy import Policy

    from godot_rl_cli.game.settings import GameSettings
    from godot_rl_cli.rllib.env import ENV_CONFIG_KEY, GodotEnvConfig, GodotMultiAgentEnv

    checkpoint = sorted(trial.glob("checkpoint_*"))[-1]
    policy = Policy.from_checkpoint(str(checkpoint / "policies" / "left_policy"))
    game = GameSettings(
        env_path=str(REPO / GAMES[game_name][1]),
        port=find_free_port_block(2),
        seed=1000,
        speedup=8,
        action_repeat=8,
        framerate=2000 if game_name == "godot4" else None,
        game_args={"opponent": "scripted", "opponent_skill": "0.7"},
    )
    env = GodotMultiAgentEnv({ENV_CONFIG_KEY: GodotEnvConfig(game)})
    outcomes = {"wins": 0, "draws": 0, "losses": 0}
    try:
        for _ in range(episodes):
            obs, _ = env.reset()
            while True:
                actions = {
                    agent: policy.compute_single_action(o, explore=False)[0] for agent, o in obs.items()
                }
                obs, _, terminateds, truncateds, infos = env.step(actions)
                if terminateds.get("__all__") or truncateds.get("__all__"):
                    won = next(iter(infos.values()))["won"]
                    outcomes["wins" if won > 0 else "losses" if won < 0 else "draws"] += 1
                    break
    finally:
        env.close()
    return outcomes


def median_iteration_s(rows: List[Dict[str, Any]]) -> float:
    return statistics.median(
        row["time_this_iter_s"] for row in rows[1:] or rows
    )  # the first builds the games


def report(
    args: argparse.Namespace,
    runs: Dict[str, List[Path]],
    scores: Dict[str, Dict[str, int]],
    load: LoadSampler,
) -> str:
    rows = {name: [results(trial) for trial in trials] for name, trials in runs.items()}
    per_run = {name: [median_iteration_s(values) for values in runs_of] for name, runs_of in rows.items()}
    steps = next(iter(rows.values()))[0][-1]["timesteps_total"]
    yaml_name, env_path, section = GAMES[args.game]
    lines = [
        section,
        "",
        f"`.venv/bin/python bench/self_play_bench.py --game {args.game} --iterations {args.iterations} "
        f"--episodes {args.episodes} --repeats {args.repeats}`, {datetime.date.today()}, on the 2-core "
        f"machine shared with 3 other helpers' sessions (load average during the bench: {load.summary()}). "
        f"Game `{env_path}`, settings of `examples/{yaml_name}`. Each learner trained {args.iterations} "
        f"iterations ({steps} steps of the game), {args.repeats} time(s) (repeat r: seed r - 1), the kinds "
        f"of run in rotation; then each final left_policy played {args.episodes} greedy episodes against the "
        "game's scripted opponent (`opponent=scripted opponent_skill=0.7`), pooled over the repeats.",
        "",
        "| learner trained against | wins | draws | losses | median s / iteration (each run's median) |",
        "|---|---|---|---|---|",
    ]
    for name in rows:
        seconds = f"{statistics.median(per_run[name]):.2f} ({', '.join(f'{v:.2f}' for v in per_run[name])})"
        score = scores.get(name)
        if score:
            total = sum(score.values())
            shares = " | ".join(f"{score[key] / total:.0%}" for key in ("wins", "draws", "losses"))
            lines.append(f"| {name} | {shares} | {seconds} |")
        else:
            baseline = " (cost baseline)" if name == "plain multi-agent PPO" else ""
            lines.append(f"| {name}{baseline} | | | | {seconds} |")
    lines.append("")
    for repeat, run in enumerate(rows.get("self-play", []), start=1):
        elo = [row["self_play"]["elo"] for row in run]
        marks = sorted({0, len(elo) // 4, len(elo) // 2, 3 * len(elo) // 4, len(elo) - 1})
        lines.append(
            f"Self-play Elo (learner, K 16, start 1200), run {repeat}, by iteration: "
            + ", ".join(f"{mark + 1}: {elo[mark]:.0f}" for mark in marks)
            + "."
        )
    if "self-play" in rows and "plain multi-agent PPO" in rows:
        ratios = [sp / plain for sp, plain in zip(per_run["self-play"], per_run["plain multi-agent PPO"])]
        lines += [
            "",
            f"Cost of self-play per iteration: {statistics.median(ratios):.2f}x plain multi-agent PPO on the "
            f"same game and batch (median over the repeats of self-play's median time_this_iter_s over the "
            f"plain run's of the same repeat: {', '.join(f'{r:.2f}' for r in ratios)}; snapshots are added "
            "every 5 iterations with Algorithm.add_policy).",
        ]
    return "\n".join(lines + [""])


def write_section(section: str, text: str) -> None:
    path = REPO / "bench" / "results.md"
    current = path.read_text() if path.exists() else ""
    pattern = re.compile(re.escape(section) + r".*?(?=\n## |\Z)", re.S)
    updated = pattern.sub(text.rstrip("\n") + "\n", current) if section in current else current + "\n" + text
    path.write_text(updated)


def train_kind(directory: Path, args: argparse.Namespace, kind: str, repeat: int) -> Path:
    """One run of a kind: self-play, against the game's random paddle, or plain multi-agent PPO. Repeat r has
    seed r - 1 (the game's and RLlib's): the kinds of one repeat share it, the repeats differ."""
    name, config_name, seed = f"{kind} {repeat}", f"{kind.split()[0]}{repeat}", repeat - 1
    if kind == "random opponent":  # one agent: 800 samples, all for left_policy, are the same 800 steps
        config = write_config(
            directory, args.game, config_name, False, args.iterations, seed, train_batch_size=800
        )
        return train(directory, name, config, "--game_arg", "opponent=random")
    config = write_config(directory, args.game, config_name, kind == "self-play", args.iterations, seed)
    return train(directory, name, config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--game", choices=sorted(GAMES), default="sim")
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument(
        "--kinds",
        nargs="+",
        choices=KINDS,
        default=list(KINDS),
        help="runs to make (default: all three); "
        "with fewer, the report is printed, not written to bench/results.md",
    )
    args = parser.parse_args()
    load = LoadSampler()
    load.start()
    with tempfile.TemporaryDirectory(prefix="self_play_bench_") as temporary:
        directory = Path(temporary)
        kinds = [kind for kind in KINDS if kind in args.kinds]
        runs: Dict[str, List[Path]] = {kind: [] for kind in kinds}
        for repeat in range(1, args.repeats + 1):
            for kind in kinds:
                runs[kind].append(train_kind(directory, args, kind, repeat))
        scores: Dict[str, Dict[str, int]] = {}
        for kind in [kind for kind in kinds if kind != "plain multi-agent PPO" and args.episodes]:
            scores[kind] = {"wins": 0, "draws": 0, "losses": 0}
            for trial in runs[kind]:
                for key, count in evaluate(trial, args.game, args.episodes).items():
                    scores[kind][key] += count
        load.stopped.set()
        text = report(args, runs, scores, load)
    print(text)
    if kinds == list(KINDS):
        write_section(GAMES[args.game][2], text)


if __name__ == "__main__":
    main()
