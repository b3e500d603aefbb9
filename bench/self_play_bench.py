"""Self-play on PongDuel (issue 28): does it pay, and what does it cost? Written to bench/results.md.

    .venv/bin/python bench/self_play_bench.py            # 30 iterations per run, 200 evaluation episodes
    .venv/bin/python bench/self_play_bench.py --iterations 10 --episodes 50   # a quick look

Three runs of rllib_training_script.py on examples/self_play_pong.yaml, each `--iterations` iterations of
800 steps of the game:
- self-play: the YAML as shipped (left_policy against itself and its snapshots);
- random opponent: the same YAML without `self_play`, the game moving the right paddle at random
  (`opponent=random`, one agent; train_batch_size 800 so an iteration is the same 800 steps of the game);
- plain multi-agent PPO: the same YAML without `self_play` (left_policy and right_policy both learn), the
  cost baseline.
Then each run's final left_policy (greedy) plays `--episodes` episodes against the game's scripted opponent
(`opponent=scripted opponent_skill=0.7`): wins, draws and losses by the game's `won` info. The self-play
run's Elo is read from its result.json; the cost is the median `time_this_iter_s` of each run.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
from conftest import find_free_port_block  # noqa: E402

SECTION = "## Self-play (PongDuel, issue 28)"


def write_config(directory: Path, name: str, self_play: bool, iterations: int, **changes: Any) -> Path:
    data = yaml.safe_load((REPO / "examples" / "self_play_pong.yaml").read_text())
    if not self_play:
        del data["self_play"]
    data["env_config"].update(
        env_path=str(REPO / "examples/sim/PongDuel.x86_64"), port=find_free_port_block(4)
    )
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


def evaluate(trial: Path, episodes: int) -> Dict[str, float]:
    """The final left_policy, greedy, against the scripted opponent (skill 0.7): shares of each outcome."""
    from ray.rllib.policy.policy import Policy

    from godot_rl_cli.game.settings import GameSettings
    from godot_rl_cli.rllib.env import ENV_CONFIG_KEY, GodotEnvConfig, GodotMultiAgentEnv

    checkpoint = sorted(trial.glob("checkpoint_*"))[-1]
    policy = Policy.from_checkpoint(str(checkpoint / "policies" / "left_policy"))
    game = GameSettings(
        env_path=str(REPO / "examples/sim/PongDuel.x86_64"),
        port=find_free_port_block(2),
        seed=1000,
        speedup=8,
        action_repeat=8,
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
    return {key: count / episodes for key, count in outcomes.items()}


def median_iteration_s(rows: List[Dict[str, Any]]) -> float:
    return statistics.median(
        row["time_this_iter_s"] for row in rows[1:] or rows
    )  # the first builds the games


def report(args: argparse.Namespace, runs: Dict[str, Path], scores: Dict[str, Dict[str, float]]) -> str:
    rows = {name: results(trial) for name, trial in runs.items()}
    elo = [row["self_play"]["elo"] for row in rows["self-play"]]
    marks = sorted({0, len(elo) // 4, len(elo) // 2, 3 * len(elo) // 4, len(elo) - 1})
    steps = rows["self-play"][-1]["timesteps_total"]
    cost = {name: median_iteration_s(values) for name, values in rows.items()}
    lines = [
        SECTION,
        "",
        f"`.venv/bin/python bench/self_play_bench.py --iterations {args.iterations} --episodes "
        f"{args.episodes}` (2 shared cores, other jobs running). Each learner trained {args.iterations} "
        f"iterations ({steps} steps of the game), then its left_policy played {args.episodes} greedy "
        "episodes against the game's scripted opponent (`opponent=scripted opponent_skill=0.7`).",
        "",
        "| learner trained against | wins | draws | losses | median s / iteration |",
        "|---|---|---|---|---|",
    ]
    for name in ("self-play", "random opponent", "plain multi-agent PPO"):
        score = scores.get(name)
        if score:
            shares = " | ".join(f"{score[key]:.0%}" for key in ("wins", "draws", "losses"))
            lines.append(f"| {name} | {shares} | {cost[name]:.2f} |")
        else:
            lines.append(f"| {name} (cost baseline) | | | | {cost[name]:.2f} |")
    lines += [
        "",
        "Self-play Elo (learner, K 16, start 1200) by iteration: "
        + ", ".join(f"{mark + 1}: {elo[mark]:.0f}" for mark in marks)
        + ".",
        "",
        f"Cost of self-play per iteration: {cost['self-play'] / cost['plain multi-agent PPO']:.2f}x plain "
        "multi-agent PPO on the same game and batch (median time_this_iter_s; snapshots are added every "
        f"5 iterations with Algorithm.add_policy). Load average at the end: {os.getloadavg()[0]:.1f}.",
        "",
    ]
    return "\n".join(lines)


def write_section(text: str) -> None:
    path = REPO / "bench" / "results.md"
    current = path.read_text() if path.exists() else ""
    pattern = re.compile(re.escape(SECTION) + r".*?(?=\n## |\Z)", re.S)
    updated = pattern.sub(text.rstrip("\n") + "\n", current) if SECTION in current else current + "\n" + text
    path.write_text(updated)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--episodes", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="self_play_bench_") as temporary:
        directory = Path(temporary)
        runs = {
            "self-play": train(directory, "self-play", write_config(directory, "sp", True, args.iterations)),
            "random opponent": train(
                directory,
                "random opponent",
                write_config(directory, "random", False, args.iterations, train_batch_size=800),
                "--game_arg",
                "opponent=random",
            ),
            "plain multi-agent PPO": train(
                directory, "plain multi-agent PPO", write_config(directory, "plain", False, args.iterations)
            ),
        }
        scores = {name: evaluate(runs[name], args.episodes) for name in ("self-play", "random opponent")}
        text = report(args, runs, scores)
    print(text)
    write_section(text)


if __name__ == "__main__":
    main()
