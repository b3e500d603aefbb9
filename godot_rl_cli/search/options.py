"""Flags of hyperparameter_search.py and every check that can run before Ray or a game starts."""

import argparse
import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from godot_rl_cli.algorithms import ALGORITHMS, SB3_ALGORITHMS
from godot_rl_cli.cli_types import HelpFormatter, add_flag, directory_path, seed_value
from godot_rl_cli.errors import UserError
from godot_rl_cli.game.settings import DEFAULT_PORT, add_game_arg_flag

METRICS = ("auto", "eval_reward_mean", "reward_recent", "episode_reward_mean")
PRUNERS = ("asha", "median", "none")
# SB3 flags the search sets for each trial (not searchable, not passable after `--`), and flags that shape
# a trial's run rather than its learning (passable after `--`, not searchable).
SB3_SET_BY_SEARCH = {
    "env_path",
    "algo",
    "timesteps",
    "experiment_dir",
    "experiment_name",
    "onnx_export_path",
    "save_model_path",
    "resume_model_path",
    "inference",
    "port",
    "seed",
}
SB3_RUN_FLAGS = {
    "game_args",
    "n_parallel",
    "eval_freq",
    "eval_episodes",
    "show_window",
    "debug_panel",
    "torch_threads",
    "device",
    "save_checkpoint_frequency",
}
RLLIB_SEARCH_KEYS = {"env_config", "stop", "multiagent", "algorithm", "env", "framework", "callbacks"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hyperparameter_search.py",
        description="Tune the SB3 or RLlib trainer's hyperparameters on a game with Ray Tune (Optuna's TPE "
        "sampler, ASHA or median-stopping pruning). Each trial runs the suite's trainer on its own games "
        "(own ports and seed) and writes a normal run under its directory. Arguments after `--` go to every "
        "trial's trainer (e.g. -- --speedup=8 --n_parallel=2 --eval_freq=2048). Ctrl+C (SIGINT) or SIGTERM "
        "stops the running trials (each saves) and keeps the results; --resume continues the search.",
        formatter_class=HelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument("--trainer", choices=("sb3", "rllib"), required=True, help="which trainer to tune")
    add_flag(
        parser, "env_path", default=None, help="exported game (.x86_64); RLlib: else env_config.env_path"
    )
    parser.add_argument(
        "--algo", type=str.lower, default="ppo", help=f"SB3 algorithm ({', '.join(SB3_ALGORITHMS)})"
    )
    add_flag(
        parser,
        "config_file",
        default="rllib_config.yaml",
        help="RLlib: the base YAML each trial's settings are written over",
    )
    add_flag(
        parser, "search_space", default=None, help="YAML space (default: the shipped one for the algorithm)"
    )
    add_flag(parser, "num_trials", type=int, default=20, help="trials to run in all")
    add_flag(parser, "time_budget_s", type=float, default=None, help="stop starting trials after this many s")
    add_flag(parser, "timesteps", type=int, default=20_000, help="env steps per trial")
    add_flag(
        parser,
        "max_concurrent",
        type=int,
        default=None,
        help="trials at once (default: as many as the CPUs hold, each counting its games plus its learner)",
    )
    add_flag(
        parser,
        "metric",
        default="auto",
        help="what to maximise: eval_reward_mean (evaluation episodes; the default when evaluation is on), "
        "reward_recent (mean episode reward of the last 3 iterations; the default otherwise), "
        "episode_reward_mean (last iteration)",
    )
    add_flag(parser, "pruner", default="asha", help=f"early stopping on the metric: {', '.join(PRUNERS)}")
    add_flag(parser, "experiment_dir", type=directory_path, default="logs/search", help="where searches go")
    add_flag(parser, "experiment_name", default=None, help="this search's directory (default: TRAINER_ALGO)")
    add_flag(
        parser,
        "ray_address",
        default=os.environ.get("RAY_ADDRESS"),
        help="run the trials on this Ray cluster (also RAY_ADDRESS); default: a local Ray",
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue the search in --experiment_dir/--experiment_name"
    )
    add_flag(
        parser, "port", type=int, default=DEFAULT_PORT, help="first game port; trial i uses its own block"
    )
    add_flag(parser, "seed", type=seed_value, default=0, help="seed of trial 0 (trial i: seed + i) and TPE")
    add_game_arg_flag(parser, "extra --KEY=VALUE for every trial's games (repeatable)")
    return parser


@dataclass
class SearchOptions:
    args: argparse.Namespace
    trainer_args: List[str]

    @property
    def experiment_path(self) -> Path:
        name = self.args.experiment_name or f"{self.args.trainer}_{self.args.algo}"
        return (Path(self.args.experiment_dir).expanduser() / name).absolute()


def parse_args(argv: List[str]) -> SearchOptions:
    """Split `argv` at `--`: the search's flags, then the trainer's."""
    split = argv.index("--") if "--" in argv else len(argv)
    args = build_parser().parse_args(argv[:split])
    return SearchOptions(args, argv[split + 1 :])


def check_budget(args: argparse.Namespace) -> None:
    for name in ("num_trials", "timesteps", "max_concurrent", "time_budget_s"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise UserError(f"--{name} must be above 0, not {value:g}", "give a budget of at least 1")
    if args.pruner not in PRUNERS:
        raise UserError(f"unknown --pruner {args.pruner!r}", f"use one of {', '.join(PRUNERS)}")
    if args.trainer == "sb3" and args.algo not in SB3_ALGORITHMS:
        raise UserError(f"unknown --algo {args.algo!r}", f"use one of {', '.join(SB3_ALGORITHMS)}")


def choose_metric(requested: str, evaluating: bool) -> str:
    """The metric to maximise: `auto` is the evaluation reward when evaluation runs, else `reward_recent`."""
    if requested not in METRICS:
        close = difflib.get_close_matches(requested, METRICS, n=1)
        raise UserError(
            f"unknown --metric {requested!r}" + (f" (did you mean {close[0]!r}?)" if close else ""),
            f"use one of {', '.join(METRICS)}",
        )
    if requested == "auto":
        return "eval_reward_mean" if evaluating else "reward_recent"
    if requested == "eval_reward_mean" and not evaluating:
        raise UserError(
            "--metric eval_reward_mean: no trial reports it, evaluation is off",
            "turn evaluation on (SB3: -- --eval_freq=N; RLlib: evaluation_interval in the YAML) or use "
            "reward_recent",
        )
    return requested


def sb3_trainer_namespace(trainer_args: List[str], env_path: str, algo: str) -> argparse.Namespace:
    """The SB3 trainer's own parse of the arguments every trial shares (a bad one is a UserError now)."""
    from godot_rl_cli.sb3.options import build_parser as sb3_parser

    parser = sb3_parser()
    parser.exit_on_error = False
    fixed = [name for name in _flag_names(trainer_args) if name in SB3_SET_BY_SEARCH]
    if fixed:
        raise UserError(
            f"--{fixed[0]} after -- is set by the search for each trial",
            "pass it to the search itself, or drop it",
        )
    try:
        namespace, unknown = parser.parse_known_args(
            [f"--env_path={env_path}", f"--algo={algo}", *trainer_args]
        )
    except argparse.ArgumentError as error:
        raise UserError(
            f"trainer argument {error}", "see stable_baselines3_training_script.py --help"
        ) from None
    if unknown:
        raise UserError(
            f"the SB3 trainer does not know {unknown[0]!r}", "see stable_baselines3_training_script.py --help"
        )
    return namespace


def _flag_names(arguments: List[str]) -> List[str]:
    return [arg[2:].split("=", 1)[0].replace("-", "_") for arg in arguments if arg.startswith("--")]


def sb3_known_hyperparameters(algo: str) -> Dict[str, Optional[Callable[[Any], Any]]]:
    """Every SB3 trainer flag a space may search, with the trainer's own check of a value; the algorithm's
    hyperparameters only, from the algorithm table."""
    from godot_rl_cli.sb3.options import HYPERPARAMETER_FLAGS
    from godot_rl_cli.sb3.options import build_parser as sb3_parser

    known: Dict[str, Optional[Callable[[Any], Any]]] = {}
    for action in sb3_parser()._actions:
        if not action.option_strings or action.dest in SB3_SET_BY_SEARCH | SB3_RUN_FLAGS | {"help"}:
            continue
        if action.dest in HYPERPARAMETER_FLAGS and action.dest not in ALGORITHMS[algo].sb3_hyperparameters:
            continue
        known[action.dest] = _argparse_check(action)
    return known


def _argparse_check(action: argparse.Action) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
        if action.choices is not None and text not in action.choices:
            raise ValueError(f"not one of {', '.join(map(str, action.choices))}")
        if action.type is None or action.nargs == 0:
            return text
        try:
            return action.type(text)
        except argparse.ArgumentTypeError as error:
            raise ValueError(str(error)) from None

    return check


def rllib_known_keys(algorithm: str) -> Dict[str, Optional[Callable[[Any], Any]]]:
    """Every RLlib YAML key a space may search: the AlgorithmConfig's settings and their legacy names;
    `model.KEY` for the model's keys (imports Ray)."""
    from godot_rl_cli.algorithms import rllib_config_class
    from godot_rl_cli.rllib.config import RENAMED

    config = rllib_config_class(algorithm)()
    names = {name for name in vars(config) if not name.startswith("_")} | set(RENAMED)
    names -= RLLIB_SEARCH_KEYS
    names |= {f"model.{key}" for key in config.model}
    return {name: None for name in sorted(names)}
