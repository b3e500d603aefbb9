"""What an RLlib run will do, read from the YAML file and the flags before Ray is imported: the run spec with
the flags' overrides, the checkpoint to resume and the policy mapping function. Every problem is a UserError.
"""

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from godot_rl_cli.errors import UserError
from godot_rl_cli.game import GameSettings, validate_env_path
from godot_rl_cli.rllib.config import RunSpec, compile_mapping_function, load_run_spec, resolve_env_path
from godot_rl_cli.rllib.layout import is_resumable, last_result, next_checkpoint_index, resolve_checkpoint


@dataclass
class RunPlan:
    spec: RunSpec
    game: GameSettings  # the YAML's env_config with the flags over it
    seed: Optional[int]  # RLlib's: --seed or the YAML's env_config seed, if either is given
    mapping_function: Optional[Callable]
    resume_from: Optional[Path]
    first_checkpoint_index: int  # after the resumed run's checkpoints
    episodes_offset: int  # the resumed run's episodes


def plan_run(args: argparse.Namespace) -> RunPlan:
    spec = load_run_spec(args.config_file)
    game = game_settings(args, spec)
    if args.num_workers is not None:
        spec.settings["num_workers"] = args.num_workers
    resume_from = resume_checkpoint(args.resume)
    refuse_earlier_best_exports(args.onnx_export_dir)
    return RunPlan(
        spec=spec,
        game=game,
        seed=game.seed if args.seed is not None or "seed" in spec.env_config else None,
        mapping_function=compile_mapping_function(spec.mapping_source) if spec.mapping_source else None,
        resume_from=resume_from,
        first_checkpoint_index=next_checkpoint_index(resume_from),
        episodes_offset=int(last_result(resume_from.parent).get("episodes_total", 0)) if resume_from else 0,
    )


def game_settings(args: argparse.Namespace, spec: RunSpec) -> GameSettings:
    """The YAML's game settings with the flags (--env_path, --seed, --game_arg) over them."""
    env_path = resolve_env_path(spec.game.env_path, args.env_path)
    if not env_path:
        raise UserError(f"no env_path in {args.config_file}", "set env_config.env_path or pass --env_path")
    return dataclasses.replace(
        spec.game,
        env_path=validate_env_path(env_path),
        game_args={**spec.game.game_args, **dict(args.game_arg)},
        seed=spec.game.seed if args.seed is None else args.seed,
    )


def resume_checkpoint(resume: Optional[str]) -> Optional[Path]:
    """The checkpoint --resume names: a checkpoint directory, or the newest of a trial or run directory."""
    if not resume:
        return None
    resume_from = Path(resume).expanduser().absolute()
    if is_resumable(resume_from):
        return resume_from
    resume_from = resolve_checkpoint(resume_from)
    if not is_resumable(resume_from):
        raise UserError(
            f"--resume {resume} is not an RLlib checkpoint (no algorithm_state.pkl or rllib_checkpoint.json)",
            "pass a checkpoint_NNNNNN directory, or the trial directory holding them",
        )
    print(f"--resume {resume}: its newest checkpoint is {resume_from}", flush=True)
    return resume_from


def refuse_earlier_best_exports(onnx_export_dir: Optional[str]) -> None:
    """An earlier run's best_<policy>.onnx files are never replaced by this run's (rllib/evaluation.py)."""
    if not onnx_export_dir:
        return
    earlier = sorted(path.name for path in Path(onnx_export_dir).expanduser().glob("best_*.onnx"))
    if earlier:
        raise UserError(
            f"--onnx_export_dir {onnx_export_dir} holds an earlier run's {', '.join(earlier)}, which this "
            "run's best exports would replace",
            "pass another --onnx_export_dir, or move them",
        )
