"""Where an iteration of our RLlib PPO goes, phase by phase, on section 5's game and settings (run_bench.py).

    .venv/bin/python bench/rllib_breakdown.py     # BallChase, 4 agents: our sampler vs RLlib's, 3 runs
    .venv/bin/python bench/rllib_breakdown.py --variant '{"num_env_runners": 1}' --variant \
        '{"normalize_actions": false, "clip_actions": false}'     # A/B of RLlib settings, run in turns

Each run is a fresh process that builds the AlgorithmConfig the way rllib_training_script.py does
(`build_config` on a RunSpec with section 5's RLLIB_SETTINGS and the YAML's overrides), runs one warm-up
iteration and then `--iterations` measured ones. Per iteration it reports RLlib's two phases (sampling, the
learner's update) and what is left (result, metrics, UnifiedLogger), and, when sampling runs in this process
(num_env_runners 0), sampling split further: the game round trips (socket send and the wait for the reply),
our env's own Python (GodotMultiAgentEnv without the round trips), the sampler's observation processing
(RLlib's: agent connectors, collectors, episode bookkeeping, from its own counters; ours: its trajectory and
episode bookkeeping), trajectory postprocessing (RLlib's batches from its collectors; both: PPO's GAE), the
policy forward (RLlib's compute_actions_from_input_dict; ours: `BatchedSampler._forward`, actions included)
and RLlib's action processing (action connectors). `{"sampler": "rllib"}` is RLlib's own sampler (the
default comparison). Runs of the variants are interleaved (A, B, A, B, ...) and the median is reported,
since a shared machine drifts.
"""

import argparse
import functools
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO_ROOT), str(REPO_ROOT / "bench")]

from run_bench import ACTION_REPEAT, RLLIB_SETTINGS, SPEEDUP, free_port_block  # noqa: E402

GAME = REPO_ROOT / "examples" / "sim" / "BallChase.x86_64"
N_AGENTS = 4
PHASES = [  # (key, label): per-iteration milliseconds
    ("iteration", "whole iteration (algo.train())"),
    ("sample", "sampling (synchronous_parallel_sample)"),
    ("game", "  game round trips (socket send + wait for the reply, steps and resets)"),
    ("env", "  our env's Python (GodotMultiAgentEnv.step and reset, round trips excluded)"),
    ("obs", "  sampler's observation processing (RLlib: connectors, collectors, episodes; ours: lists)"),
    ("postprocess", "  trajectory postprocessing (RLlib: batches from its collectors; GAE)"),
    ("inference", "  policy forward (RLlib: compute_actions_from_input_dict; ours: one per step)"),
    ("actions", "  RLlib action processing (action connectors; ours: in the forward)"),
    ("callbacks", "  our callbacks (ControllerMetricsCallback)"),
    ("learn", "learning (train_one_step: SGD)"),
    ("other", "result, metrics, UnifiedLogger (iteration - sampling - learning)"),
]


def timed(totals: Dict[str, float], key: str, function: Callable) -> Callable:
    """`function`, adding its wall time to totals[key]."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            totals[key] += time.perf_counter() - started

    return wrapper


def section5_config(overrides: Dict[str, Any]) -> Any:
    """Our script's AlgorithmConfig (`build_config`) for section 5's game and settings, with `overrides`."""
    from godot_rl_cli.game import GameSettings
    from godot_rl_cli.rllib.config import RunSpec
    from godot_rl_cli.rllib.setup import build_config, probe_game

    env_config = {
        "env_path": str(GAME),
        "speedup": SPEEDUP,
        "action_repeat": ACTION_REPEAT,
        "port": free_port_block(8),
        "game_args": {"n_agents": N_AGENTS},
    }
    settings = {**RLLIB_SETTINGS, "num_env_runners": 0, "num_gpus": 0, **overrides}
    sampler = settings.pop("sampler", "batched")
    spec = RunSpec(
        source=Path("breakdown.yaml"),
        checkpoint_frequency=0,
        env_config=env_config,
        game=GameSettings.from_env_config(env_config),
        sampler=sampler,
        settings=settings,
    )
    game = probe_game(spec.game)
    try:
        return build_config(spec, spec.game, game, None)[0]
    finally:
        game.close()


def run_once(overrides: Dict[str, Any], iterations: int) -> Dict[str, float]:
    """Child-process body: build, warm up, measure; milliseconds per iteration by phase, and agent steps."""
    import ray
    from ray.rllib.algorithms.ppo import ppo
    from ray.rllib.evaluation.episode_v2 import EpisodeV2
    from ray.tune.logger import UnifiedLogger

    from godot_rl_cli.game import protocol
    from godot_rl_cli.rllib import callbacks, env, sampler
    from godot_rl_cli.threads import configure_torch_threads

    configure_torch_threads(None)
    totals: Dict[str, float] = {key: 0.0 for key, _ in PHASES}
    totals.update(env_step=0.0, env_reset=0.0)
    for owner, name, key in (
        (ppo, "synchronous_parallel_sample", "sample"),
        (ppo, "train_one_step", "learn"),
        (ppo, "multi_gpu_train_one_step", "learn"),
        (protocol.Connection, "send", "game"),
        (protocol.Connection, "_receive_more", "game"),
        (env.GodotMultiAgentEnv, "step", "env_step"),
        (env.GodotMultiAgentEnv, "reset", "env_reset"),  # RLlib resets while processing observations
        (EpisodeV2, "postprocess_episode", "postprocess"),
        (callbacks.ControllerMetricsCallback, "on_episode_end", "callbacks"),
        (sampler.BatchedSampler, "_forward", "inference"),
        (sampler.BatchedSampler, "_postprocess", "postprocess"),
    ):
        setattr(owner, name, timed(totals, key, getattr(owner, name)))
    config = section5_config(overrides)
    ray.init(
        address="local",
        include_dashboard=False,
        num_cpus=max(2, int(config.num_env_runners) + 1),
        configure_logging=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(REPO_ROOT)}},
    )
    try:
        with tempfile.TemporaryDirectory(prefix="breakdown-") as directory:
            algo = config.build_algo(logger_creator=lambda c: UnifiedLogger(c, directory, loggers=None))
            algo.train()  # warm-up: the first iteration also builds the torch graphs' caches
            local = algo.env_runner.sampler if algo.env_runner and algo.env_runner.sampler else None
            stats = getattr(local, "perf_stats", None)  # RLlib's sampler's counters
            fields = ("raw_obs_processing_time", "inference_time", "action_processing_time", "env_wait_time")
            for name in fields if stats else ():
                setattr(stats, name, 0.0)
            totals.update(dict.fromkeys(totals, 0.0))  # in place: the wrappers hold this dict
            started = time.perf_counter()
            agent_steps = 0
            for _ in range(iterations):
                result = algo.train()
                agent_steps += (
                    int(result.get("num_agent_steps_sampled_this_iter") or 0)
                    or int(result.get("num_env_steps_sampled_this_iter", 0)) * N_AGENTS
                )
            totals["iteration"] = time.perf_counter() - started
            if stats:
                totals["obs"] = stats.raw_obs_processing_time - sum(
                    totals[key] for key in ("postprocess", "callbacks", "env_reset")
                )
                totals["inference"] = stats.inference_time
                totals["actions"] = stats.action_processing_time
            elif local:  # ours: what is left of sampling is its bookkeeping
                totals["obs"] = totals["sample"] - sum(
                    totals[key] for key in ("env_step", "env_reset", "inference", "postprocess")
                )
            if local:
                totals["env"] = totals["env_step"] + totals["env_reset"] - totals["game"]
            algo.stop()
    finally:
        ray.shutdown()
    totals["other"] = totals["iteration"] - totals["sample"] - totals["learn"]
    report = {key: totals[key] * 1000 / iterations for key, _ in PHASES}
    report["agent_steps"] = agent_steps / iterations
    report["local_sampling"] = bool(local)
    return report


def measure(variants: List[Dict[str, Any]], runs: int, iterations: int) -> List[List[Dict[str, float]]]:
    """Each variant `runs` times in fresh processes, in turns."""
    reports: List[List[Dict[str, float]]] = [[] for _ in variants]
    for _ in range(runs):
        for index, variant in enumerate(variants):
            output = subprocess.run(
                [sys.executable, __file__, "--child", json.dumps(variant), "--iterations", str(iterations)],
                capture_output=True,
                text=True,
                check=False,
            )
            lines = [line for line in output.stdout.splitlines() if line.startswith("{")]
            if output.returncode or not lines:
                raise SystemExit(f"run of {variant} failed:\n{output.stderr[-3000:]}")
            reports[index].append(json.loads(lines[-1]))
            print(f"  run {variant}: {reports[index][-1]['iteration']:.0f} ms per iteration", file=sys.stderr)
    return reports


def table(variants: List[Dict[str, Any]], reports: List[List[Dict[str, float]]]) -> List[str]:
    """Median milliseconds per iteration by phase, microseconds per agent step, for each variant."""
    names = [json.dumps(variant) if variant else "section 5's settings (our sampler)" for variant in variants]
    rows = [
        "| phase | " + " | ".join(f"{name}: ms per iteration | µs per agent step" for name in names) + " |",
        "| --- |" + " --- | --- |" * len(names),
    ]
    for key, label in PHASES:
        cells = []
        for runs in reports:
            if key not in ("iteration", "sample", "learn", "other") and not runs[0]["local_sampling"]:
                cells += ["-", "-"]
                continue
            value = statistics.median(run[key] for run in runs)
            steps = statistics.median(run["agent_steps"] for run in runs)
            cells += [f"{value:.0f}", f"{value * 1000 / steps:.0f}"]
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    rates = [
        statistics.median(run["agent_steps"] * 1000 / run["iteration"] for run in runs) for runs in reports
    ]
    rows.append("| agent steps per second | " + " | ".join(f"{rate:.0f} | -" for rate in rates) + " |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", action="append", default=[], help="JSON of RLlib settings to compare")
    parser.add_argument("--runs", type=int, default=3, help="runs per variant (median reported)")
    parser.add_argument("--iterations", type=int, default=3, help="measured iterations per run")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(run_once(json.loads(args.child), args.iterations)))
        return
    variants = [{}] + [json.loads(variant) for variant in args.variant or ['{"sampler": "rllib"}']]
    print("\n".join(table(variants, measure(variants, args.runs, args.iterations))))


if __name__ == "__main__":
    main()
