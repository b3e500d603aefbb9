"""The manifest of each model the SB3 trainer saves (final, checkpoints, best): `manifest.build` filled
from the run's flags, the game and the model itself (so a resumed model records what it trains with)."""

import argparse
from pathlib import Path
from typing import Any, Dict, List

from stable_baselines3.common.base_class import BaseAlgorithm

from godot_rl_cli import manifest
from godot_rl_cli.algorithms import ALGORITHMS
from godot_rl_cli.onnx.options import trainer_export_versions

SCRIPT = "stable_baselines3_training_script.py"


def model_hyperparameters(model: BaseAlgorithm, algo: str) -> Dict[str, Any]:
    """The algorithm's hyperparameters as the model holds them (a learning-rate schedule as text), and the
    network."""
    values: Dict[str, Any] = {}
    for name in ALGORITHMS[algo].sb3_hyperparameters:
        value = getattr(model, name, None)
        if callable(value):  # SB3 schedules: the value at the start, and "linear" for --linear_lr_schedule
            start = float(value(1.0))
            value = f"linear from {start:g} to 0" if value(0.0) != start else start
        values[name] = value
    values["policy_kwargs"] = {key: str(value) for key, value in (model.policy_kwargs or {}).items()}
    return values


class ModelManifests:
    """Writes `<model>.manifest.json` beside each saved model of this run."""

    def __init__(
        self, args: argparse.Namespace, argv: List[str], game: Any, policy_name: str, n_parallel: int
    ):
        self.args = args
        self.argv = argv
        self.game = manifest.game_record(game)
        self.policy_name = policy_name
        self.seeds = {
            "seed": args.seed,
            "training_game_seeds": [args.seed + index for index in range(n_parallel)],
            "eval_game_seed": args.seed + n_parallel if args.eval_freq else None,
        }

    def write(self, model: BaseAlgorithm, model_path: Path, **extra: Any) -> Path:
        record = manifest.build(
            trainer="stable-baselines3",
            script=SCRIPT,
            argv=self.argv,
            arguments=vars(self.args),
            game=self.game,
            policies={self.policy_name: manifest.space_record(model.observation_space, model.action_space)},
            algorithm=self.args.algo,
            hyperparameters=model_hyperparameters(model, self.args.algo),
            timesteps=model.num_timesteps,
            seeds=self.seeds,
            onnx_versions=trainer_export_versions(),
            model_file=Path(model_path).name,
            **extra,
        )
        return manifest.write(manifest.manifest_path(model_path), record)
