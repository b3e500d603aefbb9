"""Which of the suite's packages import in this interpreter, with a cache keyed on what is installed.

Importing everything takes seconds; the answer is cached under the user's cache directory, keyed
on the interpreter and a fingerprint of every sys.path folder's listing, so adding or removing a
package (its files or dist-info folder) changes the key and the next call imports again.
"""

import hashlib
import importlib
import importlib.metadata
import json
import os
import sys
from pathlib import Path
from typing import Dict, List

CHECKS: Dict[str, List[str]] = {
    "sb3_available": ["stable_baselines3"],
    "rllib_available": ["ray", "ray.rllib"],
    "godot_rl_available": ["godot_rl"],
    "torch_available": ["torch"],
    "onnx_available": ["onnx", "onnxruntime"],
}
DISTRIBUTIONS = ["stable-baselines3", "ray", "godot-rl", "torch", "onnx", "onnxruntime", "gymnasium", "numpy"]


def cache_file() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "godot_rl_cli" / "check_py_env.json"


def environment_key() -> str:
    """Fingerprint of the interpreter and every importable location's contents (names and mtimes)."""
    digest = hashlib.sha256()
    digest.update(f"{sys.executable}\0{sys.version}\0".encode())
    for entry in sys.path:
        digest.update(f"{entry}\0".encode())
        try:
            with os.scandir(entry or ".") as listing:
                for item in sorted(listing, key=lambda item: item.name):
                    digest.update(f"{item.name}:{item.stat(follow_symlinks=False).st_mtime_ns}\0".encode())
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
        problems = [f"{module}: {error}" for module in modules for error in [_import_error(module)] if error]
        result[flag] = not problems
        if problems:
            result["errors"][flag] = "; ".join(problems)
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
        try:
            cached = json.loads(path.read_text())
            if cached.get("key") == key:
                return {**cached["result"], "cached": True}
        except (OSError, ValueError, KeyError, AttributeError):
            pass
    result = check_imports()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps({"key": key, "result": result}))
        os.replace(temporary, path)
    except OSError:
        pass  # a read-only home only costs speed
    return {**result, "cached": False}


def all_available(result: dict) -> bool:
    return all(result[flag] for flag in CHECKS)
