"""Models saved by older releases: SB3 1.x pickled its spaces as `gym` classes (godot_rl_agents' own example
models: SB3 1.6.2 with gym 0.26), and unpickling them needs `gym`, which this suite does not install. Such
pickles are read here with `gym.*` names mapped to the same `gymnasium.*` classes (gymnasium is gym's
continuation, with the same space classes and pickled state) and handed to SB3's `load(custom_objects=...)`,
which then skips its own unpickling of those keys."""

import base64
import io
import json
import pickle
import zipfile
from pathlib import Path
from typing import Any, Dict

LEGACY_PACKAGES = ("gym",)  # pickled module prefixes that now live under gymnasium


class _LegacyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        root, _, rest = module.partition(".")
        if root in LEGACY_PACKAGES:
            module = "gymnasium" + ("." + rest if rest else "")
        return super().find_class(module, name)


def _needs_legacy(serialized: str) -> bool:
    """Whether a pickle names a module of a legacy package (read from its opcodes, nothing is run)."""
    try:
        raw = base64.b64decode(serialized.encode())
    except ValueError:
        return False
    return b"gym." in raw or b"\x03gym" in raw


def legacy_custom_objects(model_path: Path) -> Dict[str, Any]:
    """The model's pickled objects that reference `gym`, unpickled with gymnasium's classes; {} for a model
    of this SB3 (or an unreadable one: SB3's own load then reports it)."""
    try:
        with zipfile.ZipFile(model_path) as archive:
            data = json.loads(archive.read("data").decode())
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return {}
    objects = {}
    for key, item in data.items():
        serialized = item.get(":serialized:") if isinstance(item, dict) else None
        if serialized and _needs_legacy(serialized):
            try:
                objects[key] = _LegacyUnpickler(io.BytesIO(base64.b64decode(serialized.encode()))).load()
            except Exception:
                continue  # SB3's own load names what it cannot read
    return objects


def saved_versions(model_path: Path) -> str:
    """'Stable-Baselines3 1.6.2, Gym 0.26.2' from the model's system_info.txt ('' when it has none)."""
    try:
        with zipfile.ZipFile(model_path) as archive:
            info = archive.read("system_info.txt").decode(errors="replace")
    except (OSError, KeyError, zipfile.BadZipFile):
        return ""
    wanted = ("Stable-Baselines3", "Gym", "Gymnasium", "PyTorch")
    pairs = [line.lstrip("- ").split(":", 1) for line in info.splitlines() if ":" in line]
    return ", ".join(f"{name.strip()} {value.strip()}" for name, value in pairs if name.strip() in wanted)


def version_note(model_path: Path, error: Exception) -> str:
    """For a model that needs a module this suite lacks: which releases saved it and which run here."""
    if not isinstance(error, ImportError):
        return ""
    import stable_baselines3

    saved = saved_versions(model_path)
    return (f"; it was saved with {saved}" if saved else "") + (
        f", this suite runs Stable-Baselines3 {stable_baselines3.__version__} with Gymnasium"
    )
