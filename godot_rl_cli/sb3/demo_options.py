"""The SB3 trainer's demonstration flags, named as in godot_rl_agents' examples/sb3_imitation.py
(`--demo_files`, `--bc_epochs`, `--gail_timesteps`, `--rl_timesteps`, `--eval_episode_count`)
so its users switch without relearning; no ML import (--help stays fast)."""

import argparse

from godot_rl_cli.cli_types import int_in_range, positive_float

DEMO_ALGORITHMS = ("ppo", "a2c")  # behaviour cloning and GAIL train SB3's actor-critic policy
GAIL_MODES = ("replace", "add")  # GAIL's reward replaces the game's, or is added to it
GAIL_REWARD_FORMS = ("logit", "softplus")  # log D - log(1 - D), or -log(1 - D) (demos/gail.py)


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    demos = parser.add_argument_group(
        "learning from recorded demos (the plugin's 'Record Expert Demos' files): behaviour cloning, then "
        "GAIL, then RL, one model"
    )
    demos.add_argument(
        "--demo_files",
        nargs="+",
        default=None,
        metavar="PATH",
        help="demo JSON files the plugin recorded, or folders of them; checked against the game before "
        "training",
    )
    demos.add_argument(
        "--bc_epochs", type=int_in_range(0), default=0, help="behaviour cloning epochs over the demo steps"
    )
    demos.add_argument(
        "--bc_batch_size", type=int_in_range(1), default=64, help="behaviour cloning minibatch"
    )
    demos.add_argument(
        "--bc_learning_rate", type=positive_float, default=1e-3, help="behaviour cloning learning rate (Adam)"
    )
    demos.add_argument(
        "--bc_validation_share",
        type=float,
        default=0.1,
        help="share of the demo steps held out to report the validation loss and accuracy",
    )
    demos.add_argument(
        "--gail_timesteps", type=int_in_range(0), default=0, help="env steps of GAIL (PPO on a learnt reward)"
    )
    demos.add_argument(
        "--gail_reward",
        choices=GAIL_MODES,
        default="replace",
        help="GAIL's reward replaces the game's, or is added to it",
    )
    demos.add_argument(
        "--gail_reward_form",
        choices=GAIL_REWARD_FORMS,
        default="logit",
        help="GAIL's reward from the discriminator's D (the probability that a pair is the expert's): "
        "log D - log(1 - D), or the paper's -log(1 - D), always positive",
    )
    demos.add_argument(
        "--rl_timesteps",
        type=int_in_range(0),
        default=None,
        help="env steps of RL on the game's reward after the demo phases (with --demo_files: default 0, and "
        "--timesteps is not used; without: the same as --timesteps)",
    )
    demos.add_argument(
        "--eval_episode_count",
        type=int_in_range(0),
        default=0,
        help="after training (every phase, RL included), play N deterministic episodes and report their "
        "mean return",
    )


def check_demo_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse combinations that cannot work; the RL phase's budget becomes --timesteps."""
    uses_demos = args.bc_epochs or args.gail_timesteps
    if uses_demos and not args.demo_files:
        parser.error("--bc_epochs and --gail_timesteps need --demo_files")
    if args.demo_files and args.inference:
        parser.error("--demo_files trains; --inference does not")
    if args.demo_files and args.algo not in DEMO_ALGORITHMS:
        parser.error(
            f"--demo_files trains SB3's actor-critic policy: use --algo {' or '.join(DEMO_ALGORITHMS)}"
        )
    if not 0.0 <= args.bc_validation_share < 1.0:
        parser.error("--bc_validation_share must be in [0, 1)")
    if args.demo_files:
        args.timesteps = args.rl_timesteps or 0
    elif args.rl_timesteps is not None:
        args.timesteps = args.rl_timesteps
