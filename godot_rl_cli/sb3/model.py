"""Choosing, building and loading the SB3 model: hyperparameters from the algorithm table, action-space
fit."""

import argparse
import inspect
import zipfile
from pathlib import Path
from typing import Any, Dict

from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm

from godot_rl_cli import algorithms
from godot_rl_cli.algorithms import ALGORITHMS, SB3_ALGORITHMS, SB3_HYPERPARAMETERS
from godot_rl_cli.errors import UserError, print_warning

ACTION_KINDS = {
    spaces.Discrete: algorithms.DISCRETE,
    spaces.MultiDiscrete: algorithms.MULTI_DISCRETE,
    spaces.Box: algorithms.CONTINUOUS,
}


def hyperparameters(args: argparse.Namespace, n_envs: int) -> Dict[str, Any]:
    """Constructor kwargs for the chosen algorithm: defaults, then the flags given; warns about flags it
    ignores."""
    algorithm = ALGORITHMS[args.algo]
    chosen = dict(algorithm.sb3_defaults)
    for name in algorithm.sb3_hyperparameters:
        value = getattr(args, name)
        if value is not None:
            chosen[name] = value
    ignored = [
        name
        for name in SB3_HYPERPARAMETERS
        if name not in algorithm.sb3_hyperparameters and getattr(args, name) is not None
    ]
    if ignored:
        print_warning(
            f"--algo {args.algo} does not use {', '.join(sorted('--' + name for name in ignored))}; ignored"
        )
    if args.algo == "ppo" and "batch_size" not in chosen:
        chosen["batch_size"] = max(2, min(64, chosen["n_steps"] * n_envs))
    if args.linear_lr_schedule:
        start = chosen.get(
            "learning_rate", inspect.signature(algorithm_class(args.algo)).parameters["learning_rate"].default
        )
        chosen["learning_rate"] = lambda progress_remaining: start * progress_remaining
    return chosen


def check_action_space(algo: str, action_space: spaces.Space) -> None:
    """The action space decides which algorithms fit (the table's `sb3_actions`)."""
    kind = ACTION_KINDS.get(type(action_space))
    if kind in ALGORITHMS[algo].sb3_actions:
        return
    fitting = [name for name in SB3_ALGORITHMS if kind in ALGORITHMS[name].sb3_actions]
    needed = " or ".join(algorithms.ACTION_TEXT[kind] for kind in sorted(ALGORITHMS[algo].sb3_actions))
    raise UserError(
        f"--algo {algo} needs {needed}, but the game's actions are {action_space}",
        f"use --algo {' or '.join(fitting)}" if fitting else "change the game's action space",
    )


def algorithm_class(algo: str) -> type:
    return algorithms.sb3_class(algo)


def load_model(algo: str, path: str, device: str) -> BaseAlgorithm:
    """Load a saved model for resuming, with one-line errors for missing, corrupt or mismatched files."""
    model_path = Path(path).expanduser()
    if not model_path.is_file():
        raise UserError(
            f"--resume_model_path {path} does not exist or is not a file",
            "pass a model .zip saved by this script",
        )
    if not zipfile.is_zipfile(model_path):
        raise UserError(
            f"--resume_model_path {path} is not a Stable-Baselines3 model (not a zip file)",
            "pass a model .zip saved by this script",
        )
    try:
        return algorithm_class(algo).load(model_path, device=device)
    except Exception as error:  # SB3 raises many kinds for a foreign or truncated file
        raise UserError(
            f"cannot load {path} as a {algo.upper()} model ({type(error).__name__}: {error})",
            "check the file and pass the --algo it was trained with",
        ) from None
