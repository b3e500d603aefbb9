"""Where an RLlib run keeps its files: the one owner of the run/trial/checkpoint layout and the manifest.

    <experiment_dir>/<ALGO>_<YYYY-mm-dd_HH-MM-SS>/          the run directory
        <ALGO>_godot_<5 hex>/                               the trial directory (`trial_id` is in its name)
            run_manifest.json                               what the controller reads (algorithm, tag, ...)
            result.json, progress.csv, events.out.tfevents  RLlib's UnifiedLogger
            checkpoint_000000/, checkpoint_000001/, ...     `algo.save()` to a hidden folder, then renamed

Finding a checkpoint: a `checkpoint_<digits>` directory holding `policies/`, `rllib_checkpoint.json` or
`algorithm_state.pkl`; a trial directory holding several (the highest number, or the requested one:
`checkpoint_10` and `checkpoint_000010` are both number 10); or a run directory with one trial somewhere
below it (searched SEARCH_DEPTH levels down). Look-alikes such as `checkpoint_000003_backup_1730000000` are
never picked. Without a path, the newest run under the experiment directory that holds a checkpoint is used
(`newest_trial`). No Ray import here.
"""

import datetime
import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from godot_rl_cli.errors import UserError
from godot_rl_cli.metrics import to_strict_json_value

DEFAULT_EXPERIMENT_DIR = "logs/rllib"  # the trainer's --experiment_dir default, where the exporter looks too
CHECKPOINT_NAME = re.compile(r"checkpoint_(\d+)")
CHECKPOINT_FILES = ("rllib_checkpoint.json", "algorithm_state.pkl")
MANIFEST = "run_manifest.json"
SEARCH_DEPTH = 4


@dataclass
class Trial:
    """One training run's trial directory, created by `Trial.create`."""

    algorithm: str
    experiment_tag: str
    trial_id: str
    directory: Path
    started: datetime.datetime
    experiment_id: str  # one per run: in run_manifest.json and on every @METRIC line

    @classmethod
    def create(cls, experiment_dir: Path, algorithm: str) -> "Trial":
        started = datetime.datetime.now(datetime.UTC)
        experiment_tag = f"{algorithm}_{started:%Y-%m-%d_%H-%M-%S}"
        trial_id = uuid.uuid4().hex[:5]
        directory = experiment_dir / experiment_tag / f"{algorithm}_godot_{trial_id}"
        directory.mkdir(parents=True)
        return cls(algorithm, experiment_tag, trial_id, directory, started, uuid.uuid4().hex)

    def write_manifest(self, **fields: Any) -> None:
        manifest = {
            "algorithm": self.algorithm,
            "experiment_tag": self.experiment_tag,
            "experiment_id": self.experiment_id,
            "trial_id": self.trial_id,
            "created_at": self.started.isoformat(timespec="seconds").replace("+00:00", "Z"),
            **fields,
            "trial_dir": str(self.directory),
        }
        # strict JSON, as the controller parses it (a YAML `.inf` in `stop` becomes null)
        (self.directory / MANIFEST).write_text(json.dumps(to_strict_json_value(manifest), indent=2))

    def checkpoint_path(self, index: int) -> Path:
        return self.directory / f"checkpoint_{index:06d}"

    def checkpoints(self) -> List[Path]:
        """The complete checkpoints in the trial directory now."""
        return find_checkpoints(self.directory, depth=0)

    def save_checkpoint(self, algo: Any, index: int) -> Path:
        """Write `algo.save()` into a hidden folder, then rename it: a checkpoint_NNNNNN folder is always
        complete."""
        path = self.checkpoint_path(index)
        temporary = self.directory / f".{path.name}.tmp"
        try:
            save_algorithm(algo, temporary)
            os.rename(temporary, path)
        finally:
            shutil.rmtree(temporary, ignore_errors=True)
        return path


def save_algorithm(algo: Any, directory: Path) -> None:
    """`algo.save()` into `directory`, with the files its callbacks keep beside it (self-play's league)."""
    algo.save(str(directory))
    save_extra_files = getattr(algo.callbacks, "save_to_checkpoint", None)
    if save_extra_files:
        save_extra_files(directory)


def is_resumable(path: Path) -> bool:
    """What the controller checks before resuming: `algorithm_state.pkl` or `rllib_checkpoint.json`."""
    return any((path / name).is_file() for name in CHECKPOINT_FILES)


def next_checkpoint_index(resumed_from: Optional[Path]) -> int:
    """Checkpoint numbers continue after the resumed one (0 for a fresh run)."""
    if resumed_from is None:
        return 0
    suffix = resumed_from.name.rsplit("_", 1)[-1]
    return int(suffix) + 1 if suffix.isdigit() else 0


def last_result(trial_dir: Path) -> Dict[str, Any]:
    """The last line of a trial's result.json, or {}."""
    path = trial_dir / "result.json"
    if not path.is_file():
        return {}
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    try:
        return json.loads(lines[-1]) if lines else {}
    except ValueError:
        return {}


def holds_checkpoint(path: Path) -> bool:
    """A directory with what `algo.save()` writes: `policies/`, `rllib_checkpoint.json` or
    `algorithm_state.pkl`."""
    return path.is_dir() and (
        (path / "policies").is_dir() or any((path / name).is_file() for name in CHECKPOINT_FILES)
    )


def checkpoint_number(path: Path) -> Optional[int]:
    """N for a `checkpoint_<digits>` directory holding a checkpoint, else None (backups, copies, other
    files)."""
    match = CHECKPOINT_NAME.fullmatch(path.name)
    return int(match.group(1)) if match and holds_checkpoint(path) else None


def find_checkpoints(root: Path, depth: int = SEARCH_DEPTH) -> List[Path]:
    """Every `checkpoint_<digits>` checkpoint in `root` or up to `depth` levels below it (not inside
    checkpoints)."""
    found: List[Path] = []
    level = [root]
    for _ in range(depth + 1):
        children = []
        for directory in level:
            try:
                entries = sorted(
                    entry
                    for entry in directory.iterdir()
                    if entry.is_dir() and not entry.name.startswith(".")
                )
            except OSError:
                if directory == root:
                    raise
                continue  # an unreadable folder below the root: not where the trainer writes
            for entry in entries:
                if checkpoint_number(entry) is not None:
                    found.append(entry)
                elif not holds_checkpoint(entry):
                    children.append(entry)
        level = children
    return found


def resolve_checkpoint(path: Path, number: Optional[int] = None) -> Path:
    """The checkpoint directory `path` designates (itself, or the chosen one of the single trial below it); a
    directory that cannot be read is a UserError."""
    try:
        return _resolve_checkpoint(path, number)
    except OSError as error:
        raise UserError(
            f"cannot read {error.filename or path} ({error.strerror or error})",
            "check the directory's permissions",
        ) from None


def require_directory(path: Path) -> None:
    """A checkpoint path that is missing or a file is a UserError."""
    how = "pass a checkpoint_NNNNNN directory, or the trial or run directory holding them"
    if not path.exists():
        raise UserError(f"checkpoint path {path} does not exist", how)
    if not path.is_dir():
        raise UserError(f"{path} is a file, not an RLlib checkpoint directory", how)


def _resolve_checkpoint(path: Path, number: Optional[int]) -> Path:
    require_directory(path)
    if holds_checkpoint(path):
        own = CHECKPOINT_NAME.fullmatch(path.name)
        if number is not None and (own is None or int(own.group(1)) != number):
            raise UserError(
                f"--checkpoint-number {number} was given with the checkpoint {path}",
                "pass the trial directory holding the checkpoints, or omit --checkpoint-number",
            )
        return path
    candidates = find_checkpoints(path)
    if not candidates:
        raise UserError(
            f"no RLlib checkpoint found in {path} or up to {SEARCH_DEPTH} levels below it (looked for "
            "checkpoint_<number> directories holding policies/, rllib_checkpoint.json or "
            "algorithm_state.pkl)",
            "pass the directory of a run of rllib_training_script.py, or a checkpoint directory",
        )
    trials = sorted({candidate.parent for candidate in candidates})
    if len(trials) > 1:
        raise UserError(
            f"{path} holds checkpoints of {len(trials)} trials: {', '.join(str(trial) for trial in trials)}",
            "pass one of these trial directories",
        )
    numbered = sorted(
        (checkpoint_number(candidate), candidate.stat().st_mtime, candidate) for candidate in candidates
    )
    if number is None:
        return numbered[-1][2]
    chosen = [candidate for found, _, candidate in numbered if found == number]
    if not chosen:
        existing = ", ".join(str(found) for found in sorted({found for found, _, _ in numbered}))
        raise UserError(
            f"checkpoint number {number} not found in {trials[0]} (it holds checkpoints {existing})",
            "pass one of those to --checkpoint-number",
        )
    return chosen[-1]


def checkpoint_to_play(path: Path, number: Optional[int] = None) -> Path:
    """The checkpoint a playback of `path` plays; a `checkpoint_N` path is used as it is, whatever `number`
    says (the controller sets --checkpoint-number from the folder it picked)."""
    path = path.expanduser().absolute()
    return resolve_checkpoint(path, None if holds_checkpoint(path) else number)


def _created(trial: Path) -> tuple:
    """When a trial started: its manifest's created_at (then its mtime), for ordering runs."""
    try:
        created = json.loads((trial / MANIFEST).read_text()).get("created_at", "")
        started = datetime.datetime.fromisoformat(str(created).replace("Z", "+00:00")).timestamp()
    except (OSError, ValueError, AttributeError):
        started = 0.0
    try:
        return started, trial.stat().st_mtime
    except OSError:
        return started, 0.0


def newest_trial(experiment_dir: Path, algorithm: Optional[str] = None) -> Path:
    """The trial directory of the newest run under `experiment_dir` (`<ALGO>_<date>/<ALGO>_godot_<id>/`, the
    trainer's layout) that holds a checkpoint; only runs of `algorithm` when it is given."""
    how = "pass the checkpoint, or --experiment_dir where the runs are"
    if not experiment_dir.is_dir():
        raise UserError(f"experiment directory {experiment_dir} does not exist or is not a directory", how)
    trials = []
    try:
        for run in sorted(experiment_dir.iterdir()):
            if not run.is_dir() or (algorithm and not run.name.startswith(f"{algorithm}_")):
                continue
            for trial in sorted(run.iterdir()):
                if trial.is_dir() and find_checkpoints(trial, depth=0):
                    trials.append((_created(trial), trial))
    except OSError as error:
        raise UserError(f"cannot read {error.filename or experiment_dir} ({error.strerror})", how) from None
    if not trials:
        runs = f"{algorithm} runs" if algorithm else "runs"
        raise UserError(f"no {runs} with a checkpoint under {experiment_dir}", how)
    return max(trials)[1]
