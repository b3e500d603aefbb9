"""What every trial of a search shares, and how one trial's settings become the trainer's command line.

SB3 trials get the trainer's own flags (`--learning_rate=...`); RLlib trials get a YAML written from the
base config file with the trial's keys set. Both write everything under the trial's directory (`run/`).
Imports no ML library: the plan is pickled to every trial.
"""

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml

RUN_DIR = "run"  # the trainer's --experiment_dir inside a trial's directory
SB3_MODEL_NAME = "model"  # --experiment_name: the model is run/model_final.zip, its ONNX run/model.onnx
TRIAL_CONFIG = "rllib_config.yaml"
PORTS_SPARE = 2  # ports past a trial's games kept free, so neighbouring blocks never touch


@dataclass
class SearchPlan:
    trainer: str  # "sb3" or "rllib"
    env_path: str
    timesteps: int
    base_port: int
    games_per_trial: int
    seed: int
    stop_key: str  # Ray KV key set when the search is told to stop
    trainer_args: List[str] = field(default_factory=list)  # passed through to every trial (after --)
    game_args: Dict[str, str] = field(default_factory=dict)  # fixed --game_arg values
    algorithm: str = "ppo"
    base_config: Optional[Dict[str, Any]] = None  # RLlib: the base YAML, as read

    @property
    def port_block(self) -> int:
        return self.games_per_trial + PORTS_SPARE

    def trial_port(self, index: int) -> int:
        """Trial `index`'s first port: blocks one after another, so trials never share a port."""
        return self.base_port + index * self.port_block

    def trainer_arguments(
        self,
        trial_dir: Path,
        hyperparameters: Dict[str, Any],
        game_args: Dict[str, Any],
        port: int,
        seed: int,
        ray_address: Optional[str],
    ) -> List[str]:
        """The trainer's argv for one trial (an RLlib trial's YAML is written into `trial_dir`)."""
        game = {**self.game_args, **{k: str(v) for k, v in game_args.items()}}
        run_dir = trial_dir / RUN_DIR
        if self.trainer == "sb3":
            return [
                f"--env_path={self.env_path}",
                f"--algo={self.algorithm}",
                f"--timesteps={self.timesteps}",
                f"--experiment_dir={run_dir}",
                f"--experiment_name={SB3_MODEL_NAME}",
                f"--onnx_export_path={run_dir / (SB3_MODEL_NAME + '.onnx')}",
                *self.trainer_args,
                *sb3_hyperparameter_args(hyperparameters, {}),
                f"--port={port}",
                f"--seed={seed}",
                *[f"--game_arg={key}={value}" for key, value in game.items()],
            ]
        config_path = trial_dir / TRIAL_CONFIG
        config = rllib_config(self.base_config or {}, hyperparameters, game)
        env_config = settings_of(config).setdefault("env_config", {})
        env_config.update(env_path=self.env_path, port=port, seed=seed)
        config["stop"] = {"timesteps_total": self.timesteps}
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        return [
            f"--config_file={config_path}",
            f"--experiment_dir={run_dir}",
            *([f"--ray_address={ray_address}"] if ray_address else []),
            *self.trainer_args,
        ]


def sb3_hyperparameter_args(hyperparameters: Dict[str, Any], game_args: Dict[str, Any]) -> List[str]:
    """`--name=value` per hyperparameter (lists as the trainer's comma lists), then `--game_arg=k=v`."""
    args = []
    for name, value in hyperparameters.items():
        text = ",".join(str(item) for item in value) if isinstance(value, (list, tuple)) else _number(value)
        args.append(f"--{name}={text}")
    args += [f"--game_arg={key}={value}" for key, value in game_args.items()]
    return args


def _number(value: Any) -> str:
    """Floats as short as they stay exact (`0.0003`, not `0.00030000000000000003`)."""
    return repr(value) if isinstance(value, float) else str(value)


def settings_of(config: Dict[str, Any]) -> Dict[str, Any]:
    """Where the algorithm settings of an RLlib YAML live: under `config:` (the controller's shape) or at
    the top (the flat shape)."""
    return config["config"] if isinstance(config.get("config"), dict) else config


def rllib_config(
    base: Dict[str, Any], hyperparameters: Dict[str, Any], game_args: Dict[str, Any]
) -> Dict[str, Any]:
    """A copy of the base YAML with each key set (`model.fcnet_hiddens` sets inside `model`) in the
    file's own shape (under `config:` for the controller's)."""
    config = copy.deepcopy(base)
    settings = settings_of(config)
    for key, value in hyperparameters.items():
        *parents, leaf = key.split(".")
        target = settings
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = value
    if game_args:
        env_config = settings.setdefault("env_config", {})
        env_config["game_args"] = {**(env_config.get("game_args") or {}), **game_args}
    return config
