"""The search's results: one row per trial (table on stdout, CSV), and the best trial's files in `best/`."""

import csv
import json
import math
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml

from godot_rl_cli.errors import print_warning
from godot_rl_cli.search.plan import RUN_DIR, SB3_MODEL_NAME, TRIAL_CONFIG, SearchPlan, rllib_config
from godot_rl_cli.search.space import GAME_ARG_PREFIX
from godot_rl_cli.search.trial import SUMMARY, suite_command, suite_env

RESULTS_CSV = "results.csv"
BEST_DIR = "best"
SB3_ARGS_FILE = "hyperparameters.args"
RLLIB_CONFIG_FILE = "rllib_config.yaml"


@dataclass
class TrialRow:
    trial: str
    trial_id: str
    directory: Path
    settings: Dict[str, Any]
    metric: float = math.nan
    steps: int = 0
    wall_time_s: float = 0.0
    status: str = "pending"
    error: str = ""
    curve: List[tuple] = field(default_factory=list)  # (steps, episode_reward_mean) per iteration


def collect_rows(result_grid: Any, metric: str) -> List[TrialRow]:
    """A row per trial Tune knows, from its results and the trial's own summary file, in trial order."""
    rows = []
    for result in result_grid:
        directory = Path(result.path)
        summary = _read_json(directory / SUMMARY)
        frame = result.metrics_dataframe
        row = TrialRow(
            trial=directory.name.rsplit("_", 1)[0],
            trial_id=(result.metrics or {}).get("trial_id", directory.name.rsplit("_", 1)[-1]),
            directory=directory,
            settings=dict(result.config or {}),
            status=summary.get("status", "failed" if result.error else "pending"),
            error=summary.get("error") or (_first_line(result.error) if result.error else ""),
            steps=int(summary.get("steps") or 0),
            wall_time_s=float(summary.get("wall_time_s") or 0.0),
        )
        if frame is not None and len(frame) and metric in frame:
            values = [float(v) for v in frame[metric] if v is not None and not math.isnan(float(v))]
            row.metric = values[-1] if values else math.nan
            row.steps = max(row.steps, int(frame["steps"].max()))
            row.curve = [
                (int(s), float(r))
                for s, r in zip(frame["steps"], frame["episode_reward_mean"])
                if not math.isnan(r)
            ]
        rows.append(row)
    return sorted(rows, key=lambda row: row.trial)


def _read_json(path: Path) -> Dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _first_line(error: Any) -> str:
    lines = [line for line in str(error).splitlines() if line.strip()]
    errors = [line.strip() for line in lines if "ERROR:" in line]
    return (errors[-1] if errors else lines[-1].strip() if lines else "").split("RuntimeError: ")[-1]


def best_row(rows: List[TrialRow]) -> Optional[TrialRow]:
    """The finished trial with the highest metric (None when no trial finished with one)."""
    finished = [row for row in rows if row.status == "finished" and not math.isnan(row.metric)]
    return max(finished, key=lambda row: row.metric, default=None)


def columns(rows: List[TrialRow]) -> List[str]:
    names = list(dict.fromkeys(key for row in rows for key in row.settings))
    return ["trial", *names, "metric", "steps", "wall_time_s", "status", "error"]


def _cells(row: TrialRow, names: List[str]) -> List[str]:
    settings = [_format(row.settings.get(name, "")) for name in names[1:-5]]
    return [
        row.trial,
        *settings,
        _format(row.metric),
        str(row.steps),
        f"{row.wall_time_s:.1f}",
        row.status,
        row.error,
    ]


def _format(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def write_csv(rows: List[TrialRow], path: Path) -> None:
    names = columns(rows)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([name.replace(GAME_ARG_PREFIX, "game_arg:") for name in names])
        for row in rows:
            writer.writerow(
                [row.trial, *[row.settings.get(name, "") for name in names[1:-5]], row.metric, row.steps]
                + [row.wall_time_s, row.status, row.error]
            )


def table(rows: List[TrialRow], metric: str) -> str:
    """A fixed-width table of every trial (the error column last, not padded)."""
    names = columns(rows)
    header = [name.replace(GAME_ARG_PREFIX, "") for name in names]
    header[names.index("metric")] = metric
    body = [_cells(row, names) for row in rows]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(names) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths))
        + (f"  {line[-1]}" if line[-1] else "")
        for line in [header, *body]
    )


def write_best(row: TrialRow, plan: SearchPlan, best_dir: Path) -> str:
    """The best trial's settings as the trainer takes them, its model and ONNX, in `best_dir`; returns the
    command line that trains with them."""
    best_dir.mkdir(parents=True, exist_ok=True)
    hyperparameters = {k: v for k, v in row.settings.items() if not k.startswith(GAME_ARG_PREFIX)}
    game_args = {
        k[len(GAME_ARG_PREFIX) :]: v for k, v in row.settings.items() if k.startswith(GAME_ARG_PREFIX)
    }
    run_dir = row.directory / RUN_DIR
    if plan.trainer == "sb3":
        from godot_rl_cli.search.plan import sb3_hyperparameter_args

        args_file = best_dir / SB3_ARGS_FILE
        lines = [f"--algo={plan.algorithm}", *sb3_hyperparameter_args(hyperparameters, game_args)]
        args_file.write_text("\n".join(lines) + "\n")
        _copy(run_dir / f"{SB3_MODEL_NAME}_final.zip", best_dir / "model.zip")
        _copy(run_dir / f"{SB3_MODEL_NAME}.onnx", best_dir / "model.onnx")
        passed = " ".join([*plan.trainer_args, *[f"--game_arg={k}={v}" for k, v in plan.game_args.items()]])
        return (
            f"stable_baselines3_training_script.py --env_path={plan.env_path} {passed} @{args_file}".replace(
                "  ", " "
            )
        )
    config = rllib_config(plan.base_config or {}, hyperparameters, game_args)
    config_file = best_dir / RLLIB_CONFIG_FILE
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    shutil.copy2(row.directory / TRIAL_CONFIG, best_dir / "trial_config.yaml")
    _copy_rllib_model(run_dir, best_dir)
    passed = " ".join(plan.trainer_args)
    return f"rllib_training_script.py --config_file={config_file} --env_path={plan.env_path} {passed}".strip()


def _copy_rllib_model(run_dir: Path, best_dir: Path) -> None:
    """The trial's newest checkpoint as best/checkpoint, exported to ONNX by the suite's exporter."""
    from godot_rl_cli.rllib.layout import find_checkpoints

    checkpoints = find_checkpoints(run_dir)
    if not checkpoints:
        return
    target = best_dir / "checkpoint"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(max(checkpoints, key=lambda path: path.stat().st_mtime), target)
    exporter = suite_command("export_rllib") + [str(target), f"--output={best_dir}"]
    done = subprocess.run(exporter, capture_output=True, text=True, env=suite_env())
    if done.returncode != 0:
        print_warning(f"the best checkpoint was not exported to ONNX: {done.stderr.strip()[-300:]}")


def _copy(source: Path, target: Path) -> None:
    if source.is_file():
        shutil.copy2(source, target)
