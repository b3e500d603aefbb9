"""Choosing, building and loading the SB3 model: hyperparameters from the algorithm table, action-space
fit."""

import argparse
import inspect
from pathlib import Path
from typing import Any, Dict

from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.save_util import json_to_data
from stable_baselines3.common.vec_env import VecEnv

from godot_rl_cli import algorithms
from godot_rl_cli.algorithms import ALGORITHMS, SB3_ALGORITHMS, SB3_HYPERPARAMETERS
from godot_rl_cli.errors import UserError, print_warning
from godot_rl_cli.model_zip import open_model_zip

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


def check_model_file(path: str) -> None:
    """Before any game starts: `--resume_model_path` is a readable SB3 model file."""
    open_model_zip(Path(path).expanduser(), "pass a model .zip saved by this script").close()


def load_model(algo: str, path: str, device: str, env: VecEnv) -> BaseAlgorithm:
    """Load a saved model to continue it on `env`, SB3's way (`load(path, env=env)`): weights, optimizer and
    counters continue, with as many envs as `env` has now (games, agents per game). Spaces that differ from
    the saved ones are a one-line error naming both."""
    model_path = Path(path).expanduser()
    check_model_file(path)
    try:
        return algorithm_class(algo).load(model_path, env=env, device=device, verbose=0)  # as built
    except ValueError as error:
        if "spaces do not match" in str(error):
            saved = saved_spaces(model_path)
            raise UserError(
                f"the model {path} does not fit this game: it was trained on observations {saved[0]} and "
                f"actions {saved[1]}, the game sends observations {env.observation_space} and takes actions "
                f"{env.action_space}",
                "resume with the game it was trained on, or train a new model",
            ) from None
        raise _cannot_load(algo, path, error) from None
    except Exception as error:  # SB3 raises many kinds for a foreign or truncated file
        raise _cannot_load(algo, path, error) from None


def _cannot_load(algo: str, path: str, error: Exception) -> UserError:
    detail = (str(error).strip().splitlines() or [""])[0]
    return UserError(
        f"cannot load {path} as a {algo.upper()} model ({type(error).__name__}: {detail})",
        "check the file and pass the --algo it was trained with",
    )


def saved_spaces(model_path: Path) -> tuple:
    """The observation and action spaces a model file was trained on."""
    with open_model_zip(model_path) as archive:
        data = json_to_data(archive.read("data").decode())
    return data.get("observation_space"), data.get("action_space")
