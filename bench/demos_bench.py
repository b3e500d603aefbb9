"""Learning from recorded demos (issue 26), measured on the example games; writes its section of
bench/results.md.

    .venv/bin/python bench/demos_bench.py            # about 10 minutes on a busy 2-core machine

1. BC alone on BallChase from 20 episodes the scripted expert recorded (`--record_demos`): the deterministic
   mean return of the cloned policy over 50 episodes against the expert's mean over the recorded episodes
   (target >= 80 %); the same on BallChaseDiscrete.
2. BC then RL against RL alone, same settings (the shipped defaults, 4 and then 16 agents in one game,
   traced as in bench/run_bench.py section 6): wall time from launch until the mean return of the last 100
   episodes reaches run_bench.REWARD_THRESHOLD (target <= 0.5x), also counted from the game's first step (the
   script's start is the same in both runs); and where BC then RL's seconds before its first RL iteration go.
3. GAIL with the game's reward switched off (`zero_reward=1`), then the policy played with the reward on,
   against a random policy (both 50 episodes).
4. RLlib: behaviour cloning of Pong's left_policy from a YAML `demos:` block, then one PPO iteration: the
   policy's mean return in that first iteration (sampled with the cloned weights) against the same run
   without demos.
Every run is the shipped script as a subprocess; the evaluations of section 3 load the saved model here.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]
import run_bench  # noqa: E402

REPO_ROOT = run_bench.REPO_ROOT
PYTHON = run_bench.PYTHON
SIM = REPO_ROOT / "examples" / "sim"
SECTION_TITLE = "## Learning from recorded demos (bench/demos_bench.py)"
ENV = dict(os.environ, CONTROLLER_METRICS="1")
BC_EPOCHS = 20
REPEATS = 3


def record(game: str, path: Path, episodes: int) -> float:
    """Record the scripted expert's demos; their mean return (printed by the game, not in the file)."""
    result = subprocess.run(
        [str(SIM / f"{game}.x86_64"), f"--record_demos={path}", f"--demo_episodes={episodes}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(re.search(r"mean return (-?[\d.]+)", result.stderr).group(1))


def metric_lines(stdout: str) -> List[Dict]:
    return [
        json.loads(line[len("@METRIC ") :]) for line in stdout.splitlines() if line.startswith("@METRIC ")
    ]


def sb3(directory: Path, game: str, *flags: str) -> Tuple[List[Dict], str]:
    directory.mkdir(parents=True, exist_ok=True)
    command = [
        PYTHON,
        str(REPO_ROOT / "stable_baselines3_training_script.py"),
        f"--env_path={SIM / f'{game}.x86_64'}",
        f"--experiment_dir={directory}",
        "--experiment_name=run",
        "--speedup=8",
        f"--port={run_bench.free_port_block(2)}",
        *flags,
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=ENV, cwd=directory, timeout=1800)
    if result.returncode != 0:
        raise RuntimeError(f"{command} failed:\n{result.stderr[-3000:]}")
    return metric_lines(result.stdout), result.stdout


def bc_alone(directory: Path, game: str, demos: Path, expert: float) -> str:
    samples, _ = sb3(
        directory / game, game, f"--demo_files={demos}", f"--bc_epochs={BC_EPOCHS}", "--eval_episode_count=50"
    )
    bc = [sample for sample in samples if sample.get("phase") == "bc"][-1]["policies"]["shared_policy"][
        "learner"
    ]
    cloned = [sample for sample in samples if sample.get("phase") == "eval"][-1]["episode_reward_mean"]
    ratio = cloned / expert
    return (
        f"| {game} | {expert:.2f} | {cloned:.2f} | {ratio:.0%} | {bc['bc_validation_accuracy']:.3f} | "
        f"{run_bench.verdict(ratio, 0.8)} |"
    )


TIME_TO_REWARD_HEADER = [
    f"| agents per game | run | median time to mean return {run_bench.REWARD_THRESHOLD:g} from launch (s) "
    "| runs (s) | from the first game step (s) | episodes played until then (100 at the least) | mean return "
    "of the first 100 episodes | ratio vs RL alone (launch / first step) | pass (<= 0.5x) |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
]


def time_to_reward(demos: Path, seeds: int, timeout_s: float, n_agents: int) -> List[str]:
    """BC then RL against RL alone, interleaved, `seeds` runs each, `n_agents` agents in one traced game."""
    seed_counter = iter(range(1000))

    def command(extra: List[str]):
        def build(directory: Path, launcher: Path) -> List[str]:
            return run_bench.ours_sb3(1, [f"--seed={next(seed_counter)}", *extra])(directory, launcher)

        return build

    def traced(extra: List[str]):
        return lambda: run_bench.run_traced(
            command(extra),
            n_agents=n_agents,
            games=1,
            stop_seconds=0,
            stop_reward=run_bench.REWARD_THRESHOLD,
            timeout_s=timeout_s,
            extra_env=run_bench.OURS_ENV,
        )

    runs = {
        f"BC ({BC_EPOCHS} epochs) then RL": traced(
            [f"--demo_files={demos}", f"--bc_epochs={BC_EPOCHS}", "--rl_timesteps=100000000"]
        ),
        "RL alone": traced([]),
    }
    results = run_bench.interleaved(runs, seeds)
    rows = []
    medians = {}
    for name, traces in results.items():
        reached = [trace.time_to_reward(run_bench.REWARD_THRESHOLD) for trace in traces]
        first_steps = [trace.stamps[0] - trace.started if trace.stamps else 0.0 for trace in traces]
        launch = [value if value is not None else float("inf") for value in reached]
        stepping = [value - first for value, first in zip(launch, first_steps, strict=True)]
        medians[name] = (run_bench.median(launch), run_bench.median(stepping))
        shown = ", ".join(
            f"{value:.1f}" if value != float("inf") else f"> {timeout_s:.0f}" for value in launch
        )
        episodes = run_bench.median([episodes_until(trace, run_bench.REWARD_THRESHOLD) for trace in traces])
        first_100 = run_bench.median([first_returns(trace, 100) for trace in traces])
        rows.append(
            f"| {n_agents} | {name} | {medians[name][0]:.1f} | {shown} | {medians[name][1]:.1f} | "
            f"{episodes:.0f} | {first_100:.1f} | | |"
        )
    (bc_launch, bc_step), (rl_launch, rl_step) = medians.values()
    ratio, step_ratio = bc_launch / rl_launch, bc_step / rl_step
    verdict = run_bench.verdict(1 / ratio, 2.0)
    rows[0] = rows[0][: -len("| | |")] + f"| {ratio:.2f}x / {step_ratio:.2f}x | {verdict} |"
    return rows


def bc_startup(demos: Path) -> List[str]:
    """Where BC then RL's seconds before its first RL iteration go: the trainer's stdout lines, stamped."""
    marks = {
        "game ready (imports, game launch, handshake)": "Game ready",
        "demos read and checked": "Demonstrations: ",
        "first BC epoch done": "behaviour cloning epoch 1/",
        f"last BC epoch done ({BC_EPOCHS})": f"behaviour cloning epoch {BC_EPOCHS}/",
        "BC model and manifest saved": "Saved the model after bc",
        "first RL iteration reported": '"phase":"rl"',
    }
    with tempfile.TemporaryDirectory(prefix="demos-startup-") as name:
        command = [
            PYTHON,
            str(REPO_ROOT / "stable_baselines3_training_script.py"),
            f"--env_path={SIM / 'BallChase.x86_64'}",
            f"--experiment_dir={name}",
            "--speedup=8",
            f"--port={run_bench.free_port_block(1)}",
            f"--demo_files={demos}",
            f"--bc_epochs={BC_EPOCHS}",
            "--rl_timesteps=64",
        ]
        started = time.perf_counter()
        seen: Dict[str, float] = {}
        process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=ENV, cwd=name)
        for line in process.stdout:
            for mark, text in marks.items():
                if mark not in seen and text in line:
                    seen[mark] = time.perf_counter() - started
        process.wait()
    rows = ["| step | seconds from launch | seconds since the step before |", "| --- | --- | --- |"]
    before = 0.0
    for mark in marks:
        at = seen.get(mark, float("nan"))
        rows.append(f"| {mark} | {at:.1f} | {at - before:.1f} |")
        before = at
    return rows


def episodes_until(trace: "run_bench.Trace", threshold: float) -> float:
    """Episodes finished when the mean of the last 100 first reached `threshold` (inf if never)."""
    returns = [episode_return for _, episode_return in sorted(trace.episodes)]
    for count in range(100, len(returns) + 1):
        if sum(returns[count - 100 : count]) / 100 >= threshold:
            return float(count)
    return float("inf")


def first_returns(trace: "run_bench.Trace", count: int) -> float:
    """The mean return of the first `count` finished episodes."""
    returns = [episode_return for _, episode_return in sorted(trace.episodes)][:count]
    return sum(returns) / len(returns) if returns else float("nan")


class RandomPolicy:
    """evaluate_policy's interface with uniformly random actions."""

    def __init__(self, action_space) -> None:
        self.action_space = action_space

    def predict(self, observation, state=None, episode_start=None, deterministic=False):
        import numpy as np

        count = len(next(iter(observation.values())))
        return np.asarray([self.action_space.sample() for _ in range(count)]), None


def play(game: str, model_path: Optional[Path], episodes: int) -> float:
    """Mean return with the game's reward on: the saved model (deterministic) or a random policy."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.vec_env import VecMonitor

    from godot_rl_cli.game import GameSettings
    from godot_rl_cli.sb3.vec_env import GodotVecEnv

    settings = GameSettings(
        env_path=str(SIM / f"{game}.x86_64"), port=run_bench.free_port_block(1), speedup=8
    )
    env = VecMonitor(GodotVecEnv(settings, 1))
    try:
        policy = PPO.load(model_path, env=env) if model_path else RandomPolicy(env.action_space)
        returns, _ = evaluate_policy(policy, env, n_eval_episodes=episodes, return_episode_rewards=True)
    finally:
        env.close()
    return statistics.mean(returns)


GAIL_MARGIN = 10.0  # the GAIL policy's mean return must beat a random policy's by this much...
GAIL_TIMES_RANDOM = 5.0  # ... and be this many times it (both stated before the measured run)
# 4 agents in the game, PPO's rollout 128 steps of each; PPO's other settings and GAIL's: the shipped ones
GAIL_FLAGS = ["--game_arg=zero_reward=1", "--game_arg=n_agents=4", "--n_steps=128"]


def gail_without_reward(directory: Path, demos: Path, timesteps: int) -> List[str]:
    started = time.perf_counter()
    samples, _ = sb3(
        directory / "gail", "BallChase", f"--demo_files={demos}", f"--gail_timesteps={timesteps}", *GAIL_FLAGS
    )
    seconds = time.perf_counter() - started
    gail = [sample for sample in samples if sample.get("phase") == "gail"]
    trained = play("BallChase", directory / "gail" / "run_gail.zip", 50)
    random_return = play("BallChase", None, 50)
    accuracy = statistics.mean(sample["discriminator_accuracy"] for sample in gail[-5:])
    margin = trained - random_return
    return [
        "| GAIL steps (reward off) | wall (s) | discriminator accuracy, last 5 iterations | GAIL policy's "
        f"mean return (reward on, 50 episodes) | random policy's | margin | pass (margin >= {GAIL_MARGIN:g}, "
        f"{GAIL_TIMES_RANDOM:g}x random) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        f"| {timesteps} | {seconds:.0f} | {accuracy:.3f} | {trained:.2f} | {random_return:.2f} | "
        f"{margin:+.2f} | "
        f"{'PASS' if margin >= GAIL_MARGIN and trained >= GAIL_TIMES_RANDOM * random_return else 'FAIL'} |",
    ]


PONG_YAML = """algorithm: PPO
env_config:
  env_path: {env_path}
  speedup: 8
  port: {port}
multiagent:
  policies: [left_policy, right_policy]
  policy_mapping_fn: |
    def policy_mapping_fn(agent_id, episode, worker, **kwargs):
        return "left_policy" if agent_id == 0 else "right_policy"
checkpoint_frequency: 0
stop: {{training_iteration: 1}}
num_workers: 0
rollout_fragment_length: 1500
train_batch_size: 6000
sgd_minibatch_size: 128
num_sgd_iter: 1
{demos}"""


def rllib_pong(directory: Path, demos: Path, expert: float) -> List[str]:
    rows = [
        "| Pong through RLlib | left_policy's mean return in iteration 1 (10 episodes sampled before any PPO "
        "update) | BC held-out accuracy | wall (s) |",
        "| --- | --- | --- | --- |",
    ]
    block = f"demos:\n  policy: left_policy\n  files: [{demos}]\n  bc_epochs: {BC_EPOCHS}\n"
    for name, extra in (("BC from the YAML's demos block", block), ("no demos", "")):
        config = directory / f"pong_{len(extra)}.yaml"
        port = run_bench.free_port_block(4)
        config.write_text(PONG_YAML.format(env_path=SIM / "Pong.x86_64", port=port, demos=extra))
        command = [
            PYTHON,
            str(REPO_ROOT / "rllib_training_script.py"),
            f"--config_file={config}",
            f"--experiment_dir={directory / 'rllib'}",
        ]
        started = time.perf_counter()
        result = subprocess.run(
            command, capture_output=True, text=True, env=dict(ENV, **run_bench.RAY_ENV), cwd=directory
        )
        seconds = time.perf_counter() - started
        if result.returncode != 0:
            raise RuntimeError(f"{command} failed:\n{result.stderr[-3000:]}")
        samples = metric_lines(result.stdout)
        bc = [sample for sample in samples if sample.get("phase") == "bc"]
        accuracy = (
            f"{bc[-1]['policies']['left_policy']['learner']['bc_validation_accuracy']:.3f}" if bc else "-"
        )
        reward = samples[-1]["policies"]["left_policy"]["reward_mean"]
        rows.append(f"| {name} | {reward:.2f} | {accuracy} | {seconds:.0f} |")
    rows.append(f"| (the scripted expert, playing both sides while recording) | {expert:.2f} | | |")
    return rows


def write_section(header: List[str], measured: Dict[str, List[str]]) -> None:
    """Replace (or add) this benchmark's section of bench/results.md; subsections not measured this time
    (`--only`) keep their earlier text."""
    path = REPO_ROOT / "bench" / "results.md"
    text = path.read_text()
    start = text.find(SECTION_TITLE)
    kept: Dict[str, List[str]] = {}
    if start >= 0:
        end = text.find("\n## ", start + len(SECTION_TITLE))
        for block in text[start : end if end >= 0 else len(text)].split("\n### ")[1:]:
            kept[block.split(".")[0]] = ["", f"### {block.strip()}"]
        text = text[:start].rstrip("\n") + ("\n" + text[end:] if end >= 0 else "")
    blocks = {**kept, **measured}
    body = [line for number in sorted(blocks, key=int) for line in blocks[number]]
    path.write_text(text.rstrip("\n") + "\n\n" + "\n".join(header + body) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="comma-separated subsection numbers to run (default: all)")
    wanted = {number for number in parser.parse_args().only.split(",") if number}
    started = time.perf_counter()
    load = os.getloadavg()[0]
    sections: Dict[str, List[str]] = {}

    def section(title: str, rows: Callable[[], List[str]]) -> None:
        number = title.split(".")[0]
        if wanted and number not in wanted:
            return
        lines = [f"### {title}", "", *rows()]
        print("\n".join(lines), flush=True)
        sections[number] = ["", *lines]

    with tempfile.TemporaryDirectory(prefix="demos-bench-") as name:
        directory = Path(name)
        demos = {game: directory / f"{game}.json" for game in ("BallChase", "BallChaseDiscrete", "Pong")}
        experts = {game: record(game, path, 20 if game != "Pong" else 10) for game, path in demos.items()}
        section(
            f"1. Behaviour cloning alone ({BC_EPOCHS} epochs, 20 recorded expert episodes; deterministic "
            "return over 50 episodes)",
            lambda: [
                "| game | expert's mean return (recorded episodes) | BC policy's | BC / expert | held-out "
                "accuracy | pass (>= 80 %) |",
                "| --- | --- | --- | --- | --- | --- |",
                bc_alone(directory, "BallChase", demos["BallChase"], experts["BallChase"]),
                bc_alone(
                    directory, "BallChaseDiscrete", demos["BallChaseDiscrete"], experts["BallChaseDiscrete"]
                ),
            ],
        )
        section(
            "2. BC then RL vs RL alone: time to reward (BallChase, one game, shipped PPO defaults, the same "
            f"flags for both runs, {REPEATS} seeds, interleaved; 4 and 16 agents per game)",
            lambda: [
                *TIME_TO_REWARD_HEADER,
                *time_to_reward(demos["BallChase"], REPEATS, timeout_s=240, n_agents=4),
                *time_to_reward(demos["BallChase"], REPEATS, timeout_s=240, n_agents=16),
                "",
                "Where BC then RL's seconds go before its first RL iteration (one run, 1 agent, stdout lines "
                "time-stamped as they arrive):",
                "",
                *bc_startup(demos["BallChase"]),
            ],
        )
        section(
            f"3. GAIL with the game's reward switched off (BallChase, {' '.join(GAIL_FLAGS)}; shipped GAIL "
            "settings)",
            lambda: gail_without_reward(directory, demos["BallChase"], 40_000),
        )
        section(
            "4. RLlib: behaviour cloning of Pong's left_policy (10 recorded episodes) before PPO",
            lambda: rllib_pong(directory, demos["Pong"], experts["Pong"]),
        )
    only = f" --only={','.join(sorted(wanted))}" if wanted else ""
    header = [
        SECTION_TITLE,
        "",
        f"Command: `.venv/bin/python bench/demos_bench.py{only}` ({time.perf_counter() - started:.0f} s), "
        f"load average before the run {load:.1f}, {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC. "
        "Demos recorded by the example games' scripted experts (`--record_demos`); see bench/demos_bench.py.",
    ]
    write_section(header, sections)
    print("Section written to bench/results.md", flush=True)


if __name__ == "__main__":
    main()
