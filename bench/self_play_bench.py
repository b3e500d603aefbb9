"""Self-play on PongDuel (issue 28): does it pay, and what does it cost? Written to bench/results.md.

    .venv/bin/python bench/self_play_bench.py            # 30 iterations per run, 200 evaluation episodes
    .venv/bin/python bench/self_play_bench.py --iterations 10 --episodes 50   # a quick look
    .venv/bin/python bench/self_play_bench.py --game godot4 --iterations 20   # the real Godot 4 PongDuel

Three runs of rllib_training_script.py on examples/self_play_pong.yaml (`--game sim`, the simulated PongDuel)
or examples/self_play_pong_godot4.yaml (`--game godot4`), each `--iterations` iterations of 800 steps of the
game, repeated `--repeats` times in rotation (self-play, random opponent, plain, self-play, ...) so that the
machine's load falls on all three alike:
- self-play: the YAML as shipped (left_policy against itself and its snapshots);
- random opponent: the same YAML without `self_play`, the game moving the right paddle at random
  (`opponent=random`, one agent; train_batch_size 800 so an iteration is the same 800 steps of the game);
- plain multi-agent PPO: the same YAML without `self_play` (left_policy and right_policy both learn), the
  cost baseline.
Then each run's final left_policy (greedy) plays `--episodes` episodes against the game's scripted opponent
(`opponent=scripted opponent_skill=0.7`): wins, draws and losses by the game's `won` info, pooled over the
repeats. The self-play runs' Elo is read from their result.json; the cost is the median `time_this_iter_s` of
each kind of run over its repeats. The load average is sampled every 10 s during the whole bench.
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
    directory: Path, game: str, name: str, self_play: bool, iterations: int, **changes: Any
) -> Path:
    yaml_name, env_path, _ = GAMES[game]
    data = yaml.safe_load((REPO / "examples" / yaml_name).read_text())
    if not self_play:
        del data["self_play"]
    data["env_config"].update(env_path=str(REPO / env_path), port=find_free_port_block(4))
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
    cost = {
        name: statistics.median(median_iteration_s(values) for values in per_run)
        for name, per_run in rows.items()
    }
    steps = rows["self-play"][0][-1]["timesteps_total"]
    yaml_name, env_path, section = GAMES[args.game]
    lines = [
        section,
        "",
        f"`.venv/bin/python bench/self_play_bench.py --game {args.game} --iterations {args.iterations} "
        f"--episodes {args.episodes} --repeats {args.repeats}`, {datetime.date.today()}, on the 2-core "
        f"machine shared with 3 other helpers' sessions (load average during the bench: {load.summary()}). "
        f"Game `{env_path}`, settings of `examples/{yaml_name}`. Each learner trained {args.iterations} "
        f"iterations ({steps} steps of the game), {args.repeats} time(s), the three kinds of run in "
        f"rotation; then each final left_policy played {args.episodes} greedy episodes against the game's "
        "scripted opponent (`opponent=scripted opponent_skill=0.7`), pooled over the repeats.",
        "",
        "| learner trained against | wins | draws | losses | median s / iteration |",
        "|---|---|---|---|---|",
    ]
    for name in KINDS:
        score = scores.get(name)
        if score:
            total = sum(score.values())
            shares = " | ".join(f"{score[key] / total:.0%}" for key in ("wins", "draws", "losses"))
            lines.append(f"| {name} | {shares} | {cost[name]:.2f} |")
        else:
            lines.append(f"| {name} (cost baseline) | | | | {cost[name]:.2f} |")
    lines.append("")
    for repeat, run in enumerate(rows["self-play"], start=1):
        elo = [row["self_play"]["elo"] for row in run]
        marks = sorted({0, len(elo) // 4, len(elo) // 2, 3 * len(elo) // 4, len(elo) - 1})
        lines.append(
            f"Self-play Elo (learner, K 16, start 1200), run {repeat}, by iteration: "
            + ", ".join(f"{mark + 1}: {elo[mark]:.0f}" for mark in marks)
            + "."
        )
    lines += [
        "",
        f"Cost of self-play per iteration: {cost['self-play'] / cost['plain multi-agent PPO']:.2f}x plain "
        "multi-agent PPO on the same game and batch (median time_this_iter_s; snapshots are added every "
        "5 iterations with Algorithm.add_policy).",
        "",
    ]
    return "\n".join(lines)


def write_section(section: str, text: str) -> None:
    path = REPO / "bench" / "results.md"
    current = path.read_text() if path.exists() else ""
    pattern = re.compile(re.escape(section) + r".*?(?=\n## |\Z)", re.S)
    updated = pattern.sub(text.rstrip("\n") + "\n", current) if section in current else current + "\n" + text
    path.write_text(updated)


def train_kind(directory: Path, args: argparse.Namespace, kind: str, repeat: int) -> Path:
    """One run of a kind: self-play, against the game's random paddle, or plain multi-agent PPO."""
    name = f"{kind} {repeat}"
    if kind == "self-play":
        return train(
            directory, name, write_config(directory, args.game, f"sp{repeat}", True, args.iterations)
        )
    if kind == "random opponent":  # one agent: 800 samples, all for left_policy, are the same 800 steps
        config = write_config(
            directory, args.game, f"random{repeat}", False, args.iterations, train_batch_size=800
        )
        return train(directory, name, config, "--game_arg", "opponent=random")
    return train(
        directory, name, write_config(directory, args.game, f"plain{repeat}", False, args.iterations)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--game", choices=sorted(GAMES), default="sim")
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    load = LoadSampler()
    load.start()
    with tempfile.TemporaryDirectory(prefix="self_play_bench_") as temporary:
        directory = Path(temporary)
        runs: Dict[str, List[Path]] = {kind: [] for kind in KINDS}
        for repeat in range(1, args.repeats + 1):
            for kind in KINDS:
                runs[kind].append(train_kind(directory, args, kind, repeat))
        scores: Dict[str, Dict[str, int]] = {}
        for kind in ("self-play", "random opponent"):
            scores[kind] = {"wins": 0, "draws": 0, "losses": 0}
            for trial in runs[kind]:
                for key, count in evaluate(trial, args.game, args.episodes).items():
                    scores[kind][key] += count
        load.stopped.set()
        text = report(args, runs, scores, load)
    print(text)
    write_section(GAMES[args.game][2], text)


if __name__ == "__main__":
    main()
