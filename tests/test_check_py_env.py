"""check_py_env.py: real report, broken packages and the exit codes the controller reads, and the cache's
speed, freshness and robustness."""

import json
import os
import subprocess
import time

import pytest
from conftest import PYTHON, REPO_ROOT

from godot_rl_cli.env_check import cache_file, check_environment, exit_code

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


def broken_packages(tmp_path, *names: str) -> str:
    """A folder shadowing each named package with one whose import fails; for PYTHONPATH."""
    fake = tmp_path / "site"
    for name in names:
        (fake / name).mkdir(parents=True)
        (fake / name / "__init__.py").write_text(
            "raise ImportError('numpy.core.multiarray failed to import (ABI mismatch)')\n"
        )
    return str(fake)


def test_broken_package_is_unavailable_with_its_reason(tmp_path):
    fake = broken_packages(tmp_path, "stable_baselines3")
    (tmp_path / "site" / "stable_baselines3-9.9.9.dist-info").mkdir()
    (tmp_path / "site" / "stable_baselines3-9.9.9.dist-info" / "METADATA").write_text(
        "Name: stable-baselines3\nVersion: 9.9.9\n"
    )
    env = isolated_env(tmp_path, PYTHONPATH=fake)
    result, report, _ = check(env)
    assert result.returncode == 3, "RLlib only"
    assert report["sb3_available"] is False and report["torch_available"] is True
    assert report["rllib_available"] is True
    assert "ABI mismatch" in report["errors"]["sb3_available"]


@pytest.mark.parametrize(
    "broken, code, unavailable",
    [(["ray"], 2, "rllib_available"), (["onnx"], 1, "onnx_available")],
)
def test_exit_code_tells_the_controller_which_trainer_is_usable(tmp_path, broken, code, unavailable):
    env = isolated_env(tmp_path, PYTHONPATH=broken_packages(tmp_path, *broken))
    result, report, _ = check(env)
    assert result.returncode == code, result.stdout
    assert [flag for flag in FLAGS if not report[flag]] == [unavailable]


def test_exit_codes_of_every_combination():
    def code(**unavailable) -> int:
        return exit_code({flag: not unavailable.get(flag.replace("_available", "")) for flag in FLAGS})

    assert code() == 0
    assert code(rllib=True) == 2 and code(sb3=True) == 3 and code(sb3=True, rllib=True) == 4
    assert code(godot_rl=True) == code(torch=True) == code(onnx=True) == 1, "SB3 and RLlib import"
    assert code(rllib=True, onnx=True) == 2, "onnx is not needed to train"
    assert code(rllib=True, godot_rl=True) == 4 and code(sb3=True, torch=True) == 4, "no trainer runs"


def test_a_bad_cache_file_is_ignored_and_rewritten(tmp_path, monkeypatch):
    """In this process, as the script calls it (imports happen once, so each check is quick)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    check_environment()
    key = json.loads(cache_file().read_text())["key"]
    for content in ["[1]", "{}", "\xff", json.dumps({"key": key, "result": [1]}), json.dumps({"key": key})]:
        cache_file().write_text(content)
        report = check_environment()
        assert report["cached"] is False and all(report[flag] is True for flag in FLAGS), content
        assert check_environment()["cached"] is True, "rewritten"


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
    assert result.returncode == 4 and report["torch_available"] is False
    assert "missing" in report["errors"]["torch_available"]
