"""manifest.json: what produced a saved model, written beside every SB3 model and in every RLlib checkpoint.

It answers "works in Python, wrong in Godot" questions: the script and its arguments, the game and the
spaces and action keys (in order) it reported, the algorithm and hyperparameters, timesteps, seeds, the
versions of every package that shaped the model, the ONNX opset/IR of the trainer's exports and the suite's
git commit. The converters read it and refuse a model whose spaces differ from the recorded ones.

Where: `<model>.manifest.json` beside an SB3 `<model>.zip` (several models share a folder), and
`manifest.json` inside an RLlib `checkpoint_NNNNNN/` (`manifest_path`). No ML import here.
"""

import datetime
import functools
import importlib.metadata
import json
import math
import os
import platform
import subprocess
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from godot_rl_cli.errors import UserError

FILE_NAME = "manifest.json"
SUITE_ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {
    "torch": "torch",
    "stable_baselines3": "stable-baselines3",
    "ray": "ray",
    "godot_rl": "godot-rl",
    "onnx": "onnx",
    "onnxruntime": "onnxruntime",
    "gymnasium": "gymnasium",
    "numpy": "numpy",
}


def manifest_path(model_path: Path) -> Path:
    """Where the manifest of a saved model lives: inside a checkpoint directory, beside a model file."""
    model_path = Path(model_path)
    if model_path.is_dir():
        return model_path / FILE_NAME
    return model_path.with_name(f"{model_path.stem}.{FILE_NAME}")


def versions() -> Dict[str, Optional[str]]:
    """Python's and each package's installed version (None when it is not installed)."""
    found: Dict[str, Optional[str]] = {"python": platform.python_version()}
    for key, distribution in PACKAGES.items():
        try:
            found[key] = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            found[key] = None
    return found


def git_commit(root: Path = SUITE_ROOT) -> Optional[str]:
    """The suite's git commit (with `+dirty` when files are modified), or None when the suite is not a git
    checkout of its own (e.g. installed into a virtualenv that lies inside another project's repository)."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--show-toplevel", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
        )
        if commit.returncode != 0:
            return None
        toplevel, head = commit.stdout.split()
        if Path(toplevel).resolve() != root.resolve():
            return None
        status = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if status.stdout.strip() else "")


@functools.cache
def suite_commit() -> Optional[str]:
    """`git_commit()` once per process (two git calls): the code that runs is the code loaded at its start,
    and a run writes a manifest with every model or checkpoint."""
    return git_commit()


def game_record(game: Any) -> Dict[str, Any]:
    """What the game reported (a RobustGodotEnv): its path, agents, observation keys and action heads in the
    game's order."""
    return {
        "env_path": game.env_path,
        "n_agents": game.num_envs,
        "agent_policy_names": list(game.agent_policy_names),
        "observation_keys": list(game.observation_key_order),
        "observation_space": {
            key: str(game.observation_spaces[0][key]) for key in game.observation_key_order
        },
        "action_keys": list(game.action_spaces[0].keys()),
        "action_space": {name: str(space) for name, space in game.action_spaces[0].items()},
    }


def space_record(observation_space: Any, action_space: Any) -> Dict[str, str]:
    """One policy's spaces as the model sees them (their gymnasium text, which is what is compared)."""
    return {"observation_space": str(observation_space), "action_space": str(action_space)}


def build(
    *,
    trainer: str,
    script: str,
    argv: List[str],
    arguments: Mapping[str, Any],
    game: Mapping[str, Any],
    policies: Mapping[str, Mapping[str, str]],
    algorithm: str,
    hyperparameters: Mapping[str, Any],
    timesteps: int,
    seeds: Mapping[str, Any],
    onnx_versions: Mapping[str, int],
    **extra: Any,
) -> Dict[str, Any]:
    """The manifest of one saved model; `onnx_versions`: the opset and IR version the trainer exports with;
    `extra` adds fields (e.g. the evaluation that made it the best)."""
    return {
        "created_at": datetime.datetime.now(datetime.UTC)
        .isoformat(timespec="seconds")
        .replace("+00:00", "Z"),
        "trainer": trainer,
        "script": script,
        "argv": list(argv),
        "arguments": dict(arguments),
        "game": dict(game),
        "policies": {name: dict(spaces) for name, spaces in policies.items()},
        "algorithm": algorithm,
        "hyperparameters": dict(hyperparameters),
        "timesteps": int(timesteps),
        "seeds": dict(seeds),
        "versions": versions(),
        "onnx": dict(onnx_versions),
        "suite_commit": suite_commit(),
        **extra,
    }


def _json_value(value: Any) -> Any:
    """Strict-JSON form of a value: infinities and NaN (e.g. a YAML `vf_clip_param: .inf`) and anything that
    is not JSON (paths, functions) become text."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {str(key): _json_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(item) for item in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def write(path: Path, manifest: Mapping[str, Any]) -> Path:
    """Write the manifest atomically (temporary file, then rename), as strict JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(json.dumps(_json_value(manifest), indent=2, allow_nan=False) + "\n")
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def read(model_path: Path) -> Optional[Dict[str, Any]]:
    """The manifest of a saved model, or None when there is none; an unreadable one is a UserError."""
    path = manifest_path(model_path)
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise UserError(f"cannot read {path} ({error})", "fix or delete the manifest file") from None
    if not isinstance(manifest, dict):
        raise UserError(f"{path} is not a manifest (not a JSON object)", "fix or delete the manifest file")
    return manifest


def check_spaces(
    model_path: Path, observation_space: Any, action_space: Any, policy: Optional[str] = None
) -> None:
    """Refuse to export a policy whose spaces differ from those the model's manifest recorded for it (when
    there is a manifest; `policy` None: its only policy): the ONNX file would not fit the game it names."""
    manifest = read(model_path)
    policies = (manifest or {}).get("policies") or {}
    if policy is None and len(policies) == 1:
        policy = next(iter(policies))
    recorded = policies.get(policy)
    if not isinstance(recorded, dict):
        return
    actual = space_record(observation_space, action_space)
    for kind in ("observation_space", "action_space"):
        if kind in recorded and recorded[kind] != actual[kind]:
            raise UserError(
                f"{model_path} has {kind.replace('_', ' ')} {actual[kind]}, but its "
                f"manifest {manifest_path(model_path)} records {recorded[kind]}",
                "export the model the manifest was written for, or delete the stale manifest",
            )
