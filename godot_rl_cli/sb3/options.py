"""Command-line flags of stable_baselines3_training_script.py and the one table of their defaults."""

import argparse
import inspect
import zipfile
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from gymnasium import spaces
from stable_baselines3 import A2C, DDPG, DQN, PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm

from godot_rl_cli.errors import UserError, print_warning
from godot_rl_cli.game.env import GodotEnv
from godot_rl_cli.sb3.policies import POLICY_TYPES, parse_int_list

ALGORITHMS: Dict[str, type] = {"ppo": PPO, "a2c": A2C, "sac": SAC, "td3": TD3, "ddpg": DDPG, "dqn": DQN}

# Hyperparameters each algorithm accepts from the command line.
HYPERPARAMETERS: Dict[str, tuple] = {
    "ppo": ("learning_rate", "n_steps", "batch_size", "n_epochs", "gamma", "gae_lambda", "ent_coef", "clip_range", "vf_coef", "max_grad_norm"),
    "a2c": ("learning_rate", "n_steps", "gamma", "gae_lambda", "ent_coef", "vf_coef", "max_grad_norm"),
    "sac": ("learning_rate", "batch_size", "gamma", "ent_coef"),
    "td3": ("learning_rate", "batch_size", "gamma"),
    "ddpg": ("learning_rate", "batch_size", "gamma"),
    "dqn": ("learning_rate", "batch_size", "gamma", "max_grad_norm"),
}

# Defaults: Godot RL Agents' own SB3 example for PPO; SB3's defaults otherwise, with a replay
# buffer small enough for image observations.
DEFAULTS: Dict[str, Dict[str, Any]] = {
    "ppo": {"learning_rate": 3e-4, "n_steps": 32, "ent_coef": 1e-4},
    "a2c": {"learning_rate": 3e-4, "n_steps": 32, "ent_coef": 1e-4},
    "sac": {"buffer_size": 100_000, "learning_starts": 100},
    "td3": {"buffer_size": 100_000, "learning_starts": 100},
    "ddpg": {"buffer_size": 100_000, "learning_starts": 100},
    "dqn": {"buffer_size": 100_000, "learning_starts": 100},
}


def int_in_range(low: int, high: Optional[int] = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{value} is out of range [{low}, {high if high is not None else '∞'}]")
        return value

    parse.__name__ = "integer"
    return parse


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} must be a positive number")
    return value


def int_list(text: str) -> List[int]:
    try:
        return parse_int_list(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def key_value(text: str) -> tuple:
    key, separator, value = text.partition("=")
    if not separator or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.lstrip("-"), value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stable_baselines3_training_script.py",
        description="Train one policy for a Godot RL Agents game with Stable-Baselines3. With CONTROLLER_METRICS "
        "set, one '@METRIC {json}' line per training iteration goes to stdout. Ctrl+C (SIGINT) saves the model "
        "and closes the game; a second Ctrl+C skips the save.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    game = parser.add_argument_group("game")
    game.add_argument("--env_path", default=None, help="exported game (.x86_64); omit to train in the Godot editor (press Play)")
    game.add_argument("--speedup", type=int_in_range(1, 100), default=1, help="physics speed multiplier passed to the game")
    game.add_argument("--n_parallel", type=int_in_range(1, 64), default=1, help="game processes to run side by side (ports port..port+n-1)")
    game.add_argument("--viz", action="store_true", help="show the window of the first game")
    game.add_argument("--port", type=int_in_range(1024, 65535), default=GodotEnv.DEFAULT_PORT, help="base TCP port on 127.0.0.1")
    game.add_argument("--action_repeat", type=int_in_range(1), default=None, help="physics frames per action (game default if omitted)")
    game.add_argument("--framerate", type=int_in_range(1), default=None, help="pass --fixed-fps N so a real Godot game runs as fast as it can")
    game.add_argument("--connect_timeout", type=positive_float, default=60.0, help="seconds to wait for the game to connect")
    game.add_argument("--step_timeout", type=positive_float, default=60.0, help="seconds of silence after which a game counts as hung")
    game.add_argument("--max_env_restarts", type=int_in_range(0), default=0, help="relaunch a crashed or hung game up to N times and keep training")
    game.add_argument("--game_arg", type=key_value, action="append", default=[], metavar="KEY=VALUE", help="extra --KEY=VALUE argument for the game (repeatable)")

    run = parser.add_argument_group("training")
    run.add_argument("--algo", type=str.lower, choices=sorted(ALGORITHMS), default="ppo", help="SB3 algorithm; the action space decides which fit")
    run.add_argument("--timesteps", type=int_in_range(1), default=1_000_000, help="env steps to train (additional steps when resuming)")
    run.add_argument("--experiment_dir", default="logs/sb3", help="directory for TensorBoard logs, checkpoints and the final model")
    run.add_argument("--experiment_name", default="experiment", help="name of this run in the logs")
    run.add_argument("--seed", type=int, default=0, help="seed for numpy, torch and the games (game i gets seed + i)")
    run.add_argument("--device", default="auto", help="torch device: auto, cpu or cuda")
    run.add_argument("--linear_lr_schedule", action="store_true", help="decay the learning rate linearly to 0 over the run")

    models = parser.add_argument_group("models")
    models.add_argument("--resume_model_path", default=None, help="continue training this saved model (.zip)")
    models.add_argument("--save_model_path", default=None, help="where to save the final model (default: <experiment_dir>/<experiment_name>_final.zip)")
    models.add_argument("--save_checkpoint_frequency", type=int_in_range(1), default=None, help="save <experiment_dir>/rl_model_<steps>_steps.zip every N env steps")
    models.add_argument("--onnx_export_path", default=None, help="also export the final policy to this ONNX file (verified)")
    models.add_argument("--inference", action="store_true", help="run the saved model (--resume_model_path) deterministically without training")

    policy = parser.add_argument_group("policy network (the controller's flags)")
    policy.add_argument("--policy-type", "--policy_type", dest="policy_type", choices=POLICY_TYPES, default="mlp", help="mlp; cnn for '2d' image keys; grn (gated residual blocks); lstm is refused (see README)")
    policy.add_argument("--policy-hidden-layers", "--policy_hidden_layers", dest="policy_hidden_layers", type=int_list, default=[64, 64], help="hidden layer sizes, e.g. 64,64")
    policy.add_argument("--cnn-channels", "--cnn_channels", dest="cnn_channels", type=int_list, default=[32, 64, 64], help="conv channels per layer for --policy-type cnn")
    policy.add_argument("--lstm-hidden-size", "--lstm_hidden_size", dest="lstm_hidden_size", type=int_in_range(1), default=None, help="accepted for the controller; lstm is refused")
    policy.add_argument("--lstm-num-layers", "--lstm_num_layers", dest="lstm_num_layers", type=int_in_range(1), default=None, help="accepted for the controller; lstm is refused")
    policy.add_argument("--grn-hidden-size", "--grn_hidden_size", dest="grn_hidden_size", type=int_in_range(1), default=64, help="width of the gated residual blocks")

    hyper = parser.add_argument_group("hyperparameters (omitted: the algorithm's default)")
    hyper.add_argument("--learning_rate", type=positive_float, default=None, help="default 3e-4 for PPO/A2C")
    hyper.add_argument("--n_steps", type=int_in_range(1), default=None, help="rollout steps per env per update (PPO/A2C; default 32)")
    hyper.add_argument("--batch_size", type=int_in_range(2), default=None, help="minibatch size (PPO default: min(64, n_steps*envs))")
    hyper.add_argument("--n_epochs", type=int_in_range(1), default=None, help="PPO epochs per update")
    hyper.add_argument("--gamma", type=float, default=None, help="discount factor")
    hyper.add_argument("--gae_lambda", type=float, default=None, help="GAE lambda (PPO/A2C)")
    hyper.add_argument("--ent_coef", type=float, default=None, help="entropy coefficient (PPO/A2C default 1e-4; SAC: 'auto' unless set)")
    hyper.add_argument("--clip_range", type=positive_float, default=None, help="PPO clip range")
    hyper.add_argument("--vf_coef", type=float, default=None, help="value loss coefficient (PPO/A2C)")
    hyper.add_argument("--max_grad_norm", type=positive_float, default=None, help="gradient clipping norm")
    return parser


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.inference and not args.resume_model_path:
        parser.error("--inference requires --resume_model_path")
    if args.n_parallel > 1 and not args.env_path:
        parser.error("--n_parallel > 1 requires --env_path (in-editor training runs one game)")
    return args


def hyperparameters(args: argparse.Namespace, n_envs: int) -> Dict[str, Any]:
    """Constructor kwargs for the chosen algorithm: defaults, then the flags given; warns about flags it ignores."""
    chosen = dict(DEFAULTS[args.algo])
    for name in HYPERPARAMETERS[args.algo]:
        value = getattr(args, name)
        if value is not None:
            chosen[name] = value
    ignored = [name for group in HYPERPARAMETERS.values() for name in group if name not in HYPERPARAMETERS[args.algo] and getattr(args, name) is not None]
    if ignored:
        print_warning(f"--algo {args.algo} does not use {', '.join(sorted(set('--' + name for name in ignored)))}; ignored")
    if args.algo == "ppo" and "batch_size" not in chosen:
        chosen["batch_size"] = max(2, min(64, chosen["n_steps"] * n_envs))
    if args.linear_lr_schedule:
        start = chosen.get("learning_rate", inspect.signature(ALGORITHMS[args.algo]).parameters["learning_rate"].default)
        chosen["learning_rate"] = lambda progress_remaining: start * progress_remaining
    return chosen


def check_action_space(algo: str, action_space: spaces.Space) -> None:
    """The action space decides which algorithms fit."""
    if algo == "dqn" and not isinstance(action_space, spaces.Discrete):
        raise UserError(f"--algo dqn needs a single discrete action head, but the game's actions are {action_space}", "use --algo ppo or a2c")
    if algo in ("sac", "td3", "ddpg") and not isinstance(action_space, spaces.Box):
        raise UserError(f"--algo {algo} needs continuous actions, but the game's actions are {action_space}", "use --algo ppo, a2c or dqn")


def algorithm_class(algo: str) -> type:
    return ALGORITHMS[algo]


def load_model(algo: str, path: str, device: str) -> BaseAlgorithm:
    """Load a saved model for resuming, with one-line errors for missing, corrupt or mismatched files."""
    model_path = Path(path).expanduser()
    if not model_path.is_file():
        raise UserError(f"--resume_model_path {path} does not exist or is not a file", "pass a model .zip saved by this script")
    if not zipfile.is_zipfile(model_path):
        raise UserError(f"--resume_model_path {path} is not a Stable-Baselines3 model (not a zip file)", "pass a model .zip saved by this script")
    try:
        return ALGORITHMS[algo].load(model_path, device=device)
    except Exception as error:  # SB3 raises many kinds for a foreign or truncated file
        raise UserError(
            f"cannot load {path} as a {algo.upper()} model ({type(error).__name__}: {error})",
            "check the file and pass the --algo it was trained with",
        ) from None
