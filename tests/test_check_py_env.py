"""check_py_env.py: real report, a broken package, and the cache's speed and freshness."""

import json
import os
import subprocess
import time

from conftest import PYTHON, REPO_ROOT

FLAGS = ["sb3_available", "rllib_available", "godot_rl_available", "torch_available", "onnx_available"]


def check(env: dict, *args: str):
    started = time.monotonic()
    result = subprocess.run(
        [PYTHON, str(REPO_ROOT / "check_py_env.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    return result, json.loads(result.stdout), time.monotonic() - started


def isolated_env(tmp_path, **extra) -> dict:
    return dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"), **extra)


def test_everything_available_in_this_venv_and_warm_call_uses_cache(tmp_path):
    env = isolated_env(tmp_path)
    cold, report, cold_seconds = check(env)
    assert cold.returncode == 0, cold.stdout
    assert all(report[flag] is True for flag in FLAGS) and report["cached"] is False
    assert report["versions"]["stable-baselines3"] == "2.4.0" and report["versions"]["ray"] == "2.48.0"
    warm, warm_report, warm_seconds = check(env)
    assert warm.returncode == 0 and warm_report["cached"] is True
    assert {k: v for k, v in warm_report.items() if k != "cached"} == {
        k: v for k, v in report.items() if k != "cached"
    }
    print(f"check_py_env.py cold {cold_seconds:.2f} s, warm {warm_seconds:.2f} s")


def test_broken_package_is_unavailable_with_its_reason(tmp_path):
    fake = tmp_path / "site"
    (fake / "stable_baselines3").mkdir(parents=True)
    (fake / "stable_baselines3" / "__init__.py").write_text(
        "raise ImportError('numpy.core.multiarray failed to import (ABI mismatch)')\n"
    )
    (fake / "stable_baselines3-9.9.9.dist-info").mkdir()
    (fake / "stable_baselines3-9.9.9.dist-info" / "METADATA").write_text(
        "Name: stable-baselines3\nVersion: 9.9.9\n"
    )
    env = isolated_env(tmp_path, PYTHONPATH=str(fake))
    result, report, _ = check(env)
    assert result.returncode == 1
    assert report["sb3_available"] is False and report["torch_available"] is True
    assert "ABI mismatch" in report["errors"]["sb3_available"]


def test_cache_is_never_stale_after_a_package_is_added_or_removed(tmp_path):
    extra = tmp_path / "extra"
    extra.mkdir()
    env = isolated_env(tmp_path, PYTHONPATH=str(extra))
    first = check(env)[1]
    assert first["godot_rl_available"] is True and check(env)[1]["cached"] is True
    (extra / "godot_rl").mkdir()
    (extra / "godot_rl" / "__init__.py").write_text("raise RuntimeError('shadowing package')\n")
    added = check(env)[1]
    assert added["cached"] is False and added["godot_rl_available"] is False
    (extra / "godot_rl" / "__init__.py").unlink()
    (extra / "godot_rl").rmdir()
    removed = check(env)[1]
    assert removed["cached"] is False and removed["godot_rl_available"] is True


def test_missing_package_reason(tmp_path):
    env = isolated_env(tmp_path, PYTHONNOUSERSITE="1")
    result = subprocess.run(
        [PYTHON, "-S", str(REPO_ROOT / "check_py_env.py"), "--no-cache"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    report = json.loads(result.stdout)
    assert result.returncode == 1 and report["torch_available"] is False
    assert "missing" in report["errors"]["torch_available"]
