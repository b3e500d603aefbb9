"""Simulate a training run's output, to test a consumer's streaming (the controller's `d` key).

Plain log lines on stdout, warnings on stderr and, with CONTROLLER_METRICS set, one `@METRIC`
iteration line per iteration with the full schema for several policies: rising rewards, falling
losses, growing counters and custom metrics. Exit 0 when done or stopped by SIGINT/SIGTERM, 1 with --fail-at.
"""

import argparse
import math
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from godot_rl_cli import metrics
from godot_rl_cli.cli_types import HelpFormatter, add_flag, float_in_range, int_in_range
from godot_rl_cli.errors import print_error, print_warning

MAX_INTERVAL_S = 3600


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=HelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument("--iterations", type=int_in_range(1), default=20, help="iterations to simulate")
    parser.add_argument(
        "--interval",
        type=float_in_range(0, MAX_INTERVAL_S),
        default=0.5,
        help=f"seconds between iterations (at most {MAX_INTERVAL_S})",
    )
    parser.add_argument(
        "--policies", type=int_in_range(1), default=2, help="number of policies in each metric line"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulated numbers")
    fail_help = "after iteration N print an ERROR line and exit 1"
    add_flag(parser, "fail-at", type=int_in_range(1), default=None, help=fail_help)
    return parser


def on_sigint(signum, frame) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second signal while exiting changes nothing
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("Interrupted: demo stopped.", file=sys.stderr, flush=True)
    sys.exit(0)  # a stop signal is a clean stop, as for the trainers


STEPS_PER_ITERATION = 4000


def simulated_policy(rng: random.Random, index: int, progress: float, episodes: int) -> Dict[str, Any]:
    """Policy `index`'s metrics at `progress` (0 to 1) of the run: rewards rise, losses fall."""
    reward_mean = 10.0 + 80.0 * (1 - math.exp(-3 * progress)) + index * 5 + rng.gauss(0, 2)
    return metrics.policy_metrics(
        reward_mean=reward_mean,
        reward_min=reward_mean - 20 - rng.random() * 5,
        reward_max=reward_mean + 20 + rng.random() * 5,
        episode_len_mean=200.0 - 100 * progress + rng.gauss(0, 3),
        completed_episodes=episodes,
        learner_stats={
            "policy_loss": -0.05 * (1 - progress) + rng.gauss(0, 0.002),
            "vf_loss": 2.0 * math.exp(-2 * progress) + rng.random() * 0.05,
            "entropy": 1.4 - 0.8 * progress,
            "kl": 0.01 + rng.random() * 0.005,
            "learning_rate": 3e-4,
        },
        custom_metrics={"hits": 5.0 + 20 * progress + rng.random(), "distance": 3.0 - 2 * progress},
    )


@dataclass
class SimulatedRun:
    """The counters of the simulated run, and its iterations' @METRIC payloads."""

    args: argparse.Namespace
    rng: random.Random
    started: float = field(default_factory=time.monotonic)
    timesteps_total: int = 0
    episodes_total: int = 0

    def iteration(self, iteration: int, iteration_started: float) -> Dict[str, Any]:
        progress = iteration / self.args.iterations
        self.timesteps_total += STEPS_PER_ITERATION
        episodes_this_iter = 15 + self.rng.randint(0, 10)
        self.episodes_total += episodes_this_iter
        policies = {
            f"policy_{index + 1}": simulated_policy(
                self.rng, index, progress, episodes_this_iter // self.args.policies
            )
            for index in range(self.args.policies)
        }
        reward_means = [policy["reward_mean"] for policy in policies.values()]
        now = time.monotonic()
        seed = self.args.seed
        return metrics.iteration_payload(
            training_iteration=iteration,
            timesteps_total=self.timesteps_total,
            episodes_total=self.episodes_total,
            episodes_this_iter=episodes_this_iter,
            episode_reward_mean=sum(reward_means) / len(reward_means),
            episode_reward_min=min(policy["reward_min"] for policy in policies.values()),
            episode_reward_max=max(policy["reward_max"] for policy in policies.values()),
            episode_len_mean=sum(policy["episode_len_mean"] for policy in policies.values()) / len(policies),
            time_this_iter_s=now - iteration_started,
            time_total_s=now - self.started,
            env_steps_this_iter=STEPS_PER_ITERATION,
            custom_metrics={"goals_scored": float(iteration * 3), "shots_taken": float(iteration * 7)},
            policies=policies,
            checkpoints=iteration // 5,
            **metrics.run_identity("demo", f"demo_{seed}", f"demo_seed_{seed}"),
        )


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGINT, on_sigint)
    signal.signal(signal.SIGTERM, on_sigint)
    run = SimulatedRun(args, random.Random(args.seed))
    print(
        f"Demo training run: {args.iterations} iterations, {args.policies} policies, seed {args.seed}",
        flush=True,
    )
    for iteration in range(1, args.iterations + 1):
        iteration_started = time.monotonic()
        time.sleep(args.interval)
        payload = run.iteration(iteration, iteration_started)
        print(
            f"Iteration {iteration}: timesteps {run.timesteps_total}, reward mean "
            f"{payload['episode_reward_mean']:.2f}",
            flush=True,
        )
        metrics.emit_metric(payload)
        if iteration % 5 == 3:
            print_warning(f"simulated warning at iteration {iteration}: environment slow to respond")
        if args.fail_at is not None and iteration >= args.fail_at:
            print_error(f"simulated failure after iteration {iteration}", "this is demo.py --fail-at")
            return 1
    print("Demo finished.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
