"""Which of the suite's packages import in this interpreter, with a cache keyed on what is installed.

Each flag is true when every module the trainers import from that package imports here, each module
tried on its own (one broken package never hides another). Importing everything takes seconds; the
answer is cached under the user's cache directory, keyed on the interpreter and a fingerprint of every
sys.path folder's listing, so adding or removing a package (its files or dist-info folder) changes the
key and the next call imports again. A cache file that cannot be read or does not hold a report is
ignored and rewritten.

The exit code is what the Training Controller reads (its Home tab shows SB3 and RLlib as usable or
not): see `exit_code`.
"""

import hashlib
import importlib
import importlib.metadata
import json
import os
import sys
from pathlib import Path
from typing import Dict, List, Optional

# Per flag, the modules the scripts really import from that package (not just its top level).
CHECKS: Dict[str, List[str]] = {
    "sb3_available": [
        "stable_baselines3",
        "stable_baselines3.common.callbacks",
        "stable_baselines3.common.vec_env",
        "stable_baselines3.common.torch_layers",
    ],
    "rllib_available": [
        "ray",
        "ray.rllib",
        "ray.rllib.algorithms.callbacks",
        "ray.rllib.algorithms.ppo",
        "ray.rllib.env.multi_agent_env",
        "ray.tune.logger",
        "ray.tune.registry",
        "yaml",
    ],
    "godot_rl_available": ["godot_rl", "godot_rl.core.godot_env"],
    "torch_available": ["torch"],
    "onnx_available": ["onnx", "onnxruntime"],
}
# Exit codes, as the controller reads them (0 = SB3 and RLlib usable, 2 = SB3 only, 3 = RLlib only,
# 4 = neither; any other code shows "unknown"); 1: SB3 and RLlib import but godot-rl, torch or onnx
# does not.
EXIT_ALL = 0
EXIT_SUPPORT_MISSING = 1
EXIT_SB3_ONLY = 2
EXIT_RLLIB_ONLY = 3
EXIT_NEITHER = 4
DISTRIBUTIONS = ["stable-baselines3", "ray", "godot-rl", "torch", "onnx", "onnxruntime", "gymnasium", "numpy"]


def cache_file() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "godot_rl_cli" / "check_py_env.json"


def environment_key() -> str:
    """Fingerprint of the interpreter and every importable location's contents: every entry's name, and
    each file's mtime. A folder's mtime is left out: it moves whenever anything is created inside it (a
    __pycache__, git's index lock in .git beside a script), while an install, upgrade or removal changes
    the names (package folders, versioned .dist-info folders)."""
    digest = hashlib.sha256()
    digest.update(f"{sys.executable}\0{sys.version}\0".encode())
    for entry in sys.path:
        digest.update(f"{entry}\0".encode())
        try:
            with os.scandir(entry or ".") as listing:
                for item in sorted(listing, key=lambda item: item.name):
                    changed = (
                        ""
                        if item.is_dir(follow_symlinks=False)
                        else item.stat(follow_symlinks=False).st_mtime_ns
                    )
                    digest.update(f"{item.name}:{changed}\0".encode())
        except OSError:
            digest.update(b"-\0")
    return digest.hexdigest()


def _import_error(module: str) -> str:
    try:
        importlib.import_module(module)
        return ""
    except ModuleNotFoundError as error:
        return (
            "missing" if error.name and module.startswith(error.name) else f"{type(error).__name__}: {error}"
        )
    except BaseException as error:  # an installed package can fail in any way while importing
        return f"{type(error).__name__}: {error}".strip()


def check_imports() -> dict:
    result: dict = {"versions": {}, "errors": {}}
    for flag, modules in CHECKS.items():
        result[flag] = True
        for module in modules:  # the first module that fails is the reason
            error = _import_error(module)
            if error:
                result[flag] = False
                result["errors"][flag] = f"{module}: {error}"
                break
    for distribution in DISTRIBUTIONS:
        try:
            result["versions"][distribution] = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            result["versions"][distribution] = None
    result["python"] = sys.version.split()[0]
    return result


def check_environment(use_cache: bool = True) -> dict:
    """The availability report, from the cache when the environment is unchanged."""
    key = environment_key()
    path = cache_file()
    if use_cache:
        cached = _read_cache(path, key)
        if cached is not None:
            return {**cached, "cached": True}
    result = check_imports()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps({"key": key, "result": result}))
        os.replace(temporary, path)
    except OSError:
        pass  # a read-only home only costs speed
    return {**result, "cached": False}


def _read_cache(path: Path, key: str) -> Optional[dict]:
    """The cached report for `key`, or None when the file is missing, unreadable, stale or not a report."""
    try:
        cached = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(cached, dict) or cached.get("key") != key:
        return None
    result = cached.get("result")
    if not (
        isinstance(result, dict)
        and all(isinstance(result.get(flag), bool) for flag in CHECKS)
        and isinstance(result.get("versions"), dict)
        and isinstance(result.get("errors"), dict)
    ):
        return None
    return result


def all_available(result: dict) -> bool:
    return all(result[flag] for flag in CHECKS)


def exit_code(result: dict) -> int:
    """0 when both trainers are usable, 2 SB3 only, 3 RLlib only, 4 neither; 1 when SB3 and RLlib import
    but godot-rl, torch or onnx does not. A trainer is usable when its package, godot-rl and torch import."""
    sb3, rllib = result["sb3_available"], result["rllib_available"]
    if sb3 and rllib:
        return EXIT_ALL if all_available(result) else EXIT_SUPPORT_MISSING
    shared = result["godot_rl_available"] and result["torch_available"]
    usable = (sb3 and shared, rllib and shared)
    return {(True, False): EXIT_SB3_ONLY, (False, True): EXIT_RLLIB_ONLY}.get(usable, EXIT_NEITHER)
