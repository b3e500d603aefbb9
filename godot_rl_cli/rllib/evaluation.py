"""RLlib evaluation on a game of its own, the `best` checkpoint (and best_<policy>.onnx), and the manifest of
every checkpoint.

Evaluation is RLlib's own (`evaluation_interval` iterations, `evaluation_duration` episodes, set in the YAML):
`configure_evaluation` makes it deterministic (`explore: False`) and runs it on its own env runner, whose game
is numbered after every training game (so its port is its own) and is relaunched like theirs. After each
iteration, `BestCheckpoint.update` reads the evaluation's numbers for the `@METRIC` line and, on a new best
mean reward, saves `<trial>/best/` atomically with its manifest.
"""

import argparse
import dataclasses
import math
import os
import shutil
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from godot_rl_cli import manifest
from godot_rl_cli.errors import print_warning
from godot_rl_cli.game.settings import GameSettings
from godot_rl_cli.onnx.options import trainer_export_versions
from godot_rl_cli.rllib.callbacks import env_steps_sampled, number_or_none
from godot_rl_cli.rllib.env import godot_env_config
from godot_rl_cli.rllib.layout import save_algorithm

SCRIPT = "rllib_training_script.py"
BEST = "best"


DEFAULT_EPISODES = 5


def configure_evaluation(config: Any, settings: Mapping[str, Any]) -> bool:
    """Deterministic evaluation on one env runner of its own with a game numbered after the training games,
    when the YAML sets `evaluation_interval`; `evaluation_duration` (episodes) defaults to 5. Returns whether
    evaluation is on."""
    if not config.evaluation_interval:
        return False
    envs = int(config.num_envs_per_env_runner)
    training_games = (int(config.num_env_runners) + 1) * envs  # game indices worker * envs + vector
    user = dict(config.evaluation_config or {})
    training = godot_env_config(config.env_config)
    game = training.game
    if user.get("env_config"):  # the YAML's evaluation_config.env_config: the evaluation game's settings
        game = GameSettings.from_env_config({**dataclasses.asdict(game), **user["env_config"]})
    evaluation = dataclasses.replace(
        training, game=dataclasses.replace(game, show_window=False), game_offset=training_games
    )
    config.evaluation(
        evaluation_num_env_runners=max(1, int(config.evaluation_num_env_runners or 0)),
        evaluation_duration=int(settings.get("evaluation_duration") or DEFAULT_EPISODES),
        evaluation_duration_unit="episodes",
        evaluation_config={
            **user,
            "explore": False,
            "create_local_env_runner": False,  # else the driver's evaluation worker starts an idle game too
            "env_config": evaluation.as_env_config(),
        },
    )
    return True


def _std(values: List[float]) -> Optional[float]:
    if not values:
        return None
    mean = sum(values) / len(values)
    return math.sqrt(sum((value - mean) ** 2 for value in values) / len(values))


def _finite(value: Any) -> Optional[float]:
    number = number_or_none(value)
    return number if number is not None and math.isfinite(number) else None


def evaluation_fields(result: Mapping[str, Any]) -> Dict[str, Any]:
    """The evaluation's numbers of this iteration (empty when none ran): overall, and per policy."""
    runners = (result.get("evaluation") or {}).get("env_runners") or {}
    mean = _finite(runners.get("episode_reward_mean"))
    if mean is None:
        return {}
    hist = runners.get("hist_stats") or {}
    per_policy = {
        policy: {
            "eval_reward_mean": _finite(value),
            "eval_reward_std": _std(list(hist.get(f"policy_{policy}_reward") or [])),
        }
        for policy, value in (runners.get("policy_reward_mean") or {}).items()
    }
    return {
        "eval_reward_mean": mean,
        "eval_reward_std": _std(list(hist.get("episode_reward") or [])),
        "eval_episode_len_mean": _finite(runners.get("episode_len_mean")),
        "policies": per_policy,
    }


def add_to_payload(payload: Dict[str, Any], fields: Mapping[str, Any]) -> None:
    """Put the evaluation's numbers in the @METRIC payload: top level and custom_metrics, and per policy."""
    overall = {key: value for key, value in fields.items() if key != "policies"}
    payload.update(overall)
    payload["custom_metrics"].update(overall)
    for policy, values in fields.get("policies", {}).items():
        entry = payload["policies"].get(policy)
        if entry is not None:
            entry.update(values)
            entry["custom_metrics"].update(values)


class CheckpointManifests:
    """Writes `manifest.json` into each checkpoint of this run."""

    def __init__(
        self,
        args: argparse.Namespace,
        argv: List[str],
        spec: Any,
        game: Any,
        config: Any,
    ):
        self.argv = argv
        self.arguments = vars(args)
        self.algorithm = spec.algorithm
        self.settings = dict(spec.settings)
        self.extra: Dict[str, Any] = {}  # fields every later manifest of the run holds (e.g. its demos)
        self.game = manifest.game_record(game)
        self.policies = {
            name: manifest.space_record(policy.observation_space, policy.action_space)
            for name, policy in config.policies.items()
        }
        evaluation = godot_env_config((config.evaluation_config or {}).get("env_config") or {})
        self.seeds = {
            "seed": config.seed,
            "game_seed": godot_env_config(config.env_config).game.seed,
            "eval_game_offset": evaluation.game_offset if evaluation else None,
        }

    def write(self, algo: Any, checkpoint: Path, **extra: Any) -> Path:
        record = manifest.build(
            trainer="rllib",
            script=SCRIPT,
            argv=self.argv,
            arguments=self.arguments,
            game=self.game,
            policies=self.policies,
            algorithm=self.algorithm,
            hyperparameters=self.settings,
            timesteps=env_steps_sampled(algo),
            seeds=self.seeds,
            onnx_versions=trainer_export_versions(),
            training_iteration=algo.iteration,
            **{**self.extra, **extra},
        )
        return manifest.write(manifest.manifest_path(Path(checkpoint)), record)


class BestCheckpoint:
    """Keeps `<trial>/best/` (and `<onnx_dir>/best_<policy>.onnx`) for the best mean evaluation reward."""

    def __init__(self, trial_dir: Path, manifests: CheckpointManifests, onnx_dir: Optional[Path] = None):
        self.path = Path(trial_dir) / BEST
        self.manifests = manifests
        self.onnx_dir = onnx_dir
        self.reward: float = -math.inf
        self.iteration: Optional[int] = None
        self.files: List[Path] = []

    def update(self, algo: Any, result: Mapping[str, Any]) -> Dict[str, Any]:
        """This iteration's evaluation fields; saves the best checkpoint when its reward is a new best."""
        fields = evaluation_fields(result)
        if fields and fields["eval_reward_mean"] > self.reward:
            self.reward = fields["eval_reward_mean"]
            self.iteration = int(result["training_iteration"])
            self._save(algo, fields)
        return fields

    def _save(self, algo: Any, fields: Mapping[str, Any]) -> None:
        temporary = self.path.with_name(f".{BEST}.tmp")
        previous = self.path.with_name(f".{BEST}.old")
        shutil.rmtree(temporary, ignore_errors=True)
        save_algorithm(algo, temporary)
        details = {"iteration": self.iteration, "eval_reward_mean": self.reward, **fields}
        self.manifests.write(algo, temporary, best_evaluation=details)
        if self.path.exists():
            os.rename(self.path, previous)
        os.rename(temporary, self.path)
        shutil.rmtree(previous, ignore_errors=True)
        self.files = [self.path] + self._export(algo)
        print(
            f"New best evaluation reward {self.reward:.3f} at iteration {self.iteration}: saved "
            f"{', '.join(str(path) for path in self.files)}",
            flush=True,
        )

    def _export(self, algo: Any) -> List[Path]:
        """best_<policy>.onnx for each policy, verified like convert_rllib_to_onnx.py's (a failure warns)."""
        if self.onnx_dir is None:
            return []
        from godot_rl_cli.onnx.rllib import export_policy

        written = []
        for policy_id in self.manifests.policies:
            path = self.onnx_dir / f"best_{policy_id}.onnx"
            try:
                export_policy(algo.get_policy(policy_id), policy_id, path)
                written.append(path)
            except Exception as error:  # torch.onnx and onnx raise many types; training goes on
                print_warning(f"exporting the best policy {policy_id!r} to {path} failed: {error}")
        return written

    def summary(self) -> str:
        if self.iteration is None:
            return "Evaluation: no evaluation finished, no best checkpoint saved."
        return (
            f"Best evaluation: iteration {self.iteration}, mean reward {self.reward:.3f}; files: "
            f"{', '.join(str(path) for path in self.files)}"
        )
