"""Where an SB3 run writes its final model, decided before training so that nothing already on disk is lost:
another run's final model is never replaced unless its exact path was named for this run (--save_model_path),
and a failed or interrupted run's model so far never replaces a complete model (it is saved beside it).
No heavy imports: checked with the flags."""

import argparse
import re
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from godot_rl_cli.errors import print_warning
from godot_rl_cli.path_types import same_file

CHECKPOINT_NAME = re.compile(r"rl_model_\d+_steps\.zip")
BEST_MODEL = "best_model.zip"  # the evaluation's best model, in the experiment directory
BEST_ONNX = "best.onnx"  # its ONNX export, beside --onnx_export_path


def best_onnx_path(onnx_export_path: str) -> Path:
    """best.onnx sits beside the final ONNX export."""
    return Path(onnx_export_path).expanduser().absolute().with_name(BEST_ONNX)


def with_zip_suffix(path: Path) -> Path:
    """SB3 saves `name` as `name.zip`."""
    return path if path.suffix == ".zip" else path.with_name(path.name + ".zip")


@dataclass(frozen=True)
class FinalModel:
    path: Path  # where this run saves its model when it completes
    complete_model_kept: bool  # `path` holds a complete model now (named for this run, or the one resumed)

    def __str__(self) -> str:  # as the manifests record the run's arguments
        return str(self.path)

    def path_for(self, complete: bool) -> Path:
        """Where to save: `path`, unless the run failed or was stopped and `path` holds a complete model."""
        if complete or not self.complete_model_kept:
            return self.path
        return self.path.with_name(f"{self.path.stem}.incomplete{self.path.suffix}")


def plan_final_model(args: argparse.Namespace) -> FinalModel:
    """The final model's path: --save_model_path as named, or `<experiment_dir>/<name>_final.zip`; when that
    default holds an earlier run's model (not the one resumed), the first free `<name>_final_N.zip`."""
    if args.save_model_path:
        path = with_zip_suffix(Path(args.save_model_path).expanduser().absolute())
        return FinalModel(path, path.exists())
    folder = Path(args.experiment_dir).expanduser().absolute()
    path = folder / f"{args.experiment_name}_final.zip"
    resumed = args.resume_model_path and same_file(
        str(path), str(with_zip_suffix(Path(args.resume_model_path)))
    )
    if not path.exists() or resumed:
        return FinalModel(path, path.exists())
    number = 2
    while (folder / f"{args.experiment_name}_final_{number}.zip").exists():
        number += 1
    free = folder / f"{args.experiment_name}_final_{number}.zip"
    print_warning(
        f"{path} holds an earlier run's final model and is kept; this run saves to {free.name} "
        "(--save_model_path names the file to replace)"
    )
    return FinalModel(free, False)


def earlier_checkpoints(args: argparse.Namespace) -> List[str]:
    """Checkpoints of an earlier run in the experiment directory that this run's checkpoints could replace."""
    if not args.save_checkpoint_frequency or args.resume_model_path:
        return []
    folder = Path(args.experiment_dir).expanduser()
    try:
        return sorted(path.name for path in folder.iterdir() if CHECKPOINT_NAME.fullmatch(path.name))
    except OSError:
        return []


def earlier_best_files(args: argparse.Namespace) -> List[str]:
    """An earlier run's best model (and best.onnx) that this run's evaluation would replace."""
    if not args.eval_freq or args.resume_model_path:
        return []
    paths = [Path(args.experiment_dir).expanduser() / BEST_MODEL]
    if args.onnx_export_path:
        paths.append(best_onnx_path(args.onnx_export_path))
    return [str(path) for path in paths if path.exists()]


def output_conflict(args: argparse.Namespace, final: FinalModel) -> Optional[str]:
    """Why this run's outputs would replace one of its inputs or another run's files, or None."""
    if args.onnx_export_path and same_file(args.onnx_export_path, str(final.path)):
        return (
            f"--onnx_export_path {args.onnx_export_path} is the final model's path (pass another .onnx path)"
        )
    if args.resume_model_path and args.onnx_export_path:
        if same_file(args.onnx_export_path, str(with_zip_suffix(Path(args.resume_model_path)))):
            return f"--onnx_export_path {args.onnx_export_path} is the model to resume (pass another path)"
    checkpoints = earlier_checkpoints(args)
    if checkpoints:
        names = ", ".join(checkpoints[:3]) + (", ..." if len(checkpoints) > 3 else "")
        return (
            f"--experiment_dir {args.experiment_dir} holds an earlier run's checkpoints ({names}) that this "
            "run's checkpoints would replace (pass another --experiment_dir, or move them)"
        )
    best = earlier_best_files(args)
    if best:
        return (
            f"{' and '.join(best)} hold(s) an earlier run's best model that this run's evaluation would "
            "replace (pass another --experiment_dir, or move them)"
        )
    return None
