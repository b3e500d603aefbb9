"""The suite as a package: console commands, main() entry points, fast --help, no flag abbreviations,
and the one wrapper of godot-rl's private message call."""

import importlib
import inspect
import shutil
import subprocess
import tomllib

import numpy as np
import pytest
from conftest import PYTHON, REPO_ROOT, SIM_DIR, find_free_port_block
from godot_rl.core.godot_env import GodotEnv

from godot_rl_cli.game import GameSettings, RobustGodotEnv

SCRIPTS = {
    "stable_baselines3_training_script.py": "--time=5",
    "rllib_training_script.py": "--config=x.yaml",
    "convert_sb3_to_onnx.py": "--use-obs",
    "convert_rllib_to_onnx.py": "--checkpoint-num=3",  # not --checkpoint-number (nor --checkpoint)
    "check_py_env.py": "--no-c",
    "demo.py": "--iter=3",
    "simulator.py": "--step-del=1",
    "interface_sb3_raw.py": "--stoch",
    "interface_rllib_raw.py": "--checkpoint=3",
}
HEAVY_MODULES = ("torch", "ray", "stable_baselines3", "onnx", "onnxruntime")


def console_commands() -> dict:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def test_every_script_is_a_shim_over_the_main_of_a_console_command():
    """The controller runs the top-level scripts by path, a user the console commands: both call the one
    main in godot_rl_cli/cli/."""
    targets = set(console_commands().values())
    assert all(target.startswith("godot_rl_cli.cli.") and target.endswith(":main") for target in targets)
    for script in SCRIPTS:
        shim = importlib.import_module(script[: -len(".py")])
        assert f"{shim.main.__module__}:main" in targets, script
        assert len((REPO_ROOT / script).read_text().splitlines()) <= 15, "a shim holds no code of its own"


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_help_imports_no_ml_library(script):
    """Flags are parsed before torch, Ray, SB3 or ONNX are imported: --help answers at once."""
    module = script[: -len(".py")]
    probe = (
        f"import sys; import {module}\n"
        "try:\n"
        f"    {module}.main(['--help'])\n"
        "except SystemExit as stop:\n"
        "    assert stop.code == 0, stop.code\n"
        f"loaded = [name for name in {HEAVY_MODULES!r} if name in sys.modules]\n"
        "print('LOADED', loaded)\n"
    )
    result = subprocess.run([PYTHON, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout
    assert result.stdout.strip().endswith("LOADED []"), result.stdout[-300:]


@pytest.mark.parametrize("script, abbreviation", sorted(SCRIPTS.items()))
def test_abbreviated_flags_are_refused(script, abbreviation, tmp_path):
    result = subprocess.run(
        [PYTHON, str(REPO_ROOT / script), abbreviation],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert (
        "unrecognized arguments" in result.stderr or "the following arguments are required" in result.stderr
    )


def test_pip_install_gives_working_console_commands(tmp_path):
    """`pip install .` (here without dependencies, into a folder) installs the package alone and the commands;
    each answers --help from a directory that is not the checkout."""
    source = tmp_path / "source"
    files = subprocess.run(
        ["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout
    for name in files.split():
        if (REPO_ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / name, source / name)
    target = tmp_path / "installed"
    install = subprocess.run(
        [
            PYTHON,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    top_level = {path.name for path in target.iterdir() if not path.name.endswith(".dist-info")}
    assert top_level == {"godot_rl_cli", "bin"}, "nothing but the package lands in site-packages"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for command in console_commands():
        result = subprocess.run(
            [str(target / "bin" / command), "--help"],
            cwd=elsewhere,
            capture_output=True,
            text=True,
            timeout=60,
            env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        )
        assert result.returncode == 0, (command, result.stderr[-1000:])
        assert "usage:" in result.stdout


def test_send_actions_is_the_wrapper_of_godot_rl_private_call():
    """`send_actions` relies on godot-rl's private `_send_as_json(dictionary)`: fail here if godot-rl changes
    it."""
    assert list(inspect.signature(GodotEnv._send_as_json).parameters) == ["self", "dictionary"]
    env = RobustGodotEnv(
        GameSettings(
            env_path=str(SIM_DIR / "BallChase.x86_64"),
            port=find_free_port_block(1),
            game_args={"n_agents": 2},
        )
    )
    try:
        observations, _ = env.reset()
        env.send_actions([{"move": [0.5, -0.5]}, {"move": [0.0, 1.0]}])
        next_observations, rewards, dones, _, infos = env.step_recv()
        assert len(next_observations) == len(rewards) == len(dones) == 2
        assert all(np.isfinite(rewards))
        assert not np.allclose(next_observations[0]["obs"], observations[0]["obs"])
    finally:
        env.close()


def test_scripts_run_from_a_plain_checkout_without_sys_path_edits():
    for script in SCRIPTS:
        assert "sys.path" not in (REPO_ROOT / script).read_text(), script


def test_models_pickled_under_the_earlier_module_names_still_load():
    """RLlib checkpoints and SB3 models saved before the package was split into folders refer to their classes
    by the old module paths; unpickling in a fresh process must find them (the old names are the new
    modules)."""
    child = (
        "import importlib, pickle\n"
        "cls = pickle.loads(b'cgodot_rl_cli.rllib_callbacks\\nControllerMetricsCallback\\n.')\n"
        "from godot_rl_cli.rllib.callbacks import ControllerMetricsCallback\n"
        "assert cls is ControllerMetricsCallback, cls\n"
        "from godot_rl_cli.moved import MOVED\n"
        "for old, new in MOVED.items():\n"
        "    assert importlib.import_module(old) is importlib.import_module(new), old\n"
        "assert b'rllib_callbacks' not in pickle.dumps(ControllerMetricsCallback)\n"
        "print(len(MOVED))\n"
    )
    result = subprocess.run([PYTHON, "-c", child], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert int(result.stdout) == 15
