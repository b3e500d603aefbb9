"""Every script, fed bad input for real: one error line, a non-zero exit, no traceback, nothing left running.

One row per case: the script, its arguments (built in a fresh folder), the exit code and a fragment of the
error line. Exit 1 cases print one `ERROR: <what> (<how to fix>)` line; exit 2 cases are argparse's usage
errors (usage lines, then one `error:` line). Each script runs in its own session, and no process of that
session (a game, Ray) may outlive it. "Unreadable" cases drop root's permission override (setpriv), so a
file with mode 000 is unreadable as it is for any user. Add a row for every bad input found.
"""

import os
import shutil
import zipfile
from pathlib import Path
from typing import Callable, List, NamedTuple

import pytest
from conftest import SIM_DIR, find_free_port_block
from script_helpers import run_in_own_session, script_command

PONG = str(SIM_DIR / "Pong.x86_64")
BALLCHASE = str(SIM_DIR / "BallChase.x86_64")
RLLIB = "rllib_training_script.py"
SB3 = "stable_baselines3_training_script.py"
SB3_ONNX = "convert_sb3_to_onnx.py"
RLLIB_ONNX = "convert_rllib_to_onnx.py"


class Case(NamedTuple):
    script: str
    args: Callable[[Path], List[str]]  # built in the case's folder (its cwd)
    code: int
    message: str
    unreadable: bool = False  # run without root's permission override


def yaml_file(content: str) -> Callable[[Path], List[str]]:
    def args(folder: Path) -> List[str]:
        (folder / "bad.yaml").write_text(content.replace("PONG", PONG))
        return ["--config_file=bad.yaml", "--experiment_dir=exp"]

    return args


def binary_yaml(folder: Path) -> List[str]:
    (folder / "bad.yaml").write_bytes(b"\xff\xfe\x00binary\x00")
    return ["--config_file=bad.yaml", "--experiment_dir=exp"]


def unreadable(name: str, content: bytes = b"env_config: {}\n") -> Path:
    path = Path(name)
    path.write_bytes(content)
    path.chmod(0)
    return path


def good_yaml_and_a_file_as_experiment_dir(folder: Path) -> List[str]:
    (folder / "good.yaml").write_text(f"env_config: {{env_path: {PONG}}}\n")
    (folder / "afile").write_text("")
    return ["--config_file=good.yaml", "--experiment_dir=afile"]


def sb3(*extra: str) -> Callable[[Path], List[str]]:
    def args(folder: Path) -> List[str]:
        port = find_free_port_block(2)
        return [f"--env_path={BALLCHASE}", f"--port={port}", "--timesteps=64", "--experiment_dir=exp", *extra]

    return args


def sb3_file_as_experiment_dir(folder: Path) -> List[str]:
    (folder / "afile").write_text("")
    return sb3("--experiment_dir=afile/sub")(folder)


def model_zip(path: Path, policy: bytes = b"\x00" * 64) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("data", "{}")
        archive.writestr("policy.pth", policy)
    return path


def bad_crc_zip(folder: Path) -> List[str]:
    path = model_zip(folder / "model.zip", b"A" * 64)
    content = path.read_bytes()
    path.write_bytes(content.replace(b"A" * 64, b"B" + b"A" * 63))  # same size, other bytes: CRC mismatch
    return [str(path), "-o", "model.onnx"]


def unreadable_zip(folder: Path) -> List[str]:
    path = model_zip(folder / "model.zip")
    path.chmod(0)
    return [str(path), "-o", "model.onnx"]


def sb3_unreadable_resume(folder: Path) -> List[str]:
    path = model_zip(folder / "model.zip")
    path.chmod(0)
    return sb3(f"--resume_model_path={path}")(folder)


def unreadable_checkpoint(folder: Path) -> List[str]:
    checkpoint = folder / "run" / "checkpoint_000000"
    (checkpoint / "policies" / "p").mkdir(parents=True)
    (checkpoint / "rllib_checkpoint.json").write_text("{}")
    checkpoint.chmod(0)
    return [str(checkpoint), "-o", "out"]


def fixed(*args: str) -> Callable[[Path], List[str]]:
    return lambda folder: list(args)


CASES = {
    # rllib_training_script.py: the YAML file
    "rllib env_config is a list": Case(
        RLLIB, yaml_file("env_config: [1, 2]\n"), 1, "env_config in bad.yaml must be"
    ),
    "rllib checkpoint_frequency abc": Case(
        RLLIB,
        yaml_file("checkpoint_frequency: abc\nenv_config: {env_path: PONG}\n"),
        1,
        "checkpoint_frequency",
    ),
    "rllib multiagent is a list": Case(
        RLLIB,
        yaml_file("multiagent: [a, b]\nenv_config: {env_path: PONG}\n"),
        1,
        "multiagent in bad.yaml must be",
    ),
    "rllib policies is a string": Case(
        RLLIB,
        yaml_file("multiagent: {policies: abc}\nenv_config: {env_path: PONG}\n"),
        1,
        "multiagent.policies",
    ),
    "rllib env_is_multiagent is a string": Case(
        RLLIB, yaml_file("env_is_multiagent: 'no'\nenv_config: {env_path: PONG}\n"), 1, "true or false"
    ),
    "rllib stop value abc": Case(
        RLLIB,
        yaml_file("stop: {training_iteration: abc}\nenv_config: {env_path: PONG}\n"),
        1,
        "stop.training_iteration in bad.yaml must be a number",
    ),
    "rllib config is a list": Case(
        RLLIB, yaml_file("algorithm: PPO\nconfig: [1]\n"), 1, "'config' in bad.yaml"
    ),
    "rllib env_config port abc": Case(
        RLLIB, yaml_file("env_config: {env_path: PONG, port: abc}\n"), 1, "env_config port must be a number"
    ),
    "rllib env_config port out of range": Case(
        RLLIB, yaml_file("env_config: {env_path: PONG, port: 80}\n"), 1, "env_config port 80 is not valid"
    ),
    "rllib env_config seed -1": Case(
        RLLIB, yaml_file("env_config: {env_path: PONG, seed: -1}\n"), 1, "env_config seed -1 is not valid"
    ),
    "rllib env_config game_args is a list": Case(
        RLLIB, yaml_file("env_config: {env_path: PONG, game_args: [1]}\n"), 1, "env_config game_args must be"
    ),
    "rllib binary file": Case(RLLIB, binary_yaml, 1, "is not UTF-8 text"),
    "rllib unreadable file": Case(
        RLLIB,
        lambda folder: [f"--config_file={unreadable(str(folder / 'bad.yaml'))}", "--experiment_dir=exp"],
        1,
        "cannot read config file",
        unreadable=True,
    ),
    "rllib experiment_dir is a file": Case(RLLIB, good_yaml_and_a_file_as_experiment_dir, 2, "is a file"),
    "rllib --seed=-1": Case(RLLIB, fixed("--seed=-1"), 2, "out of range"),
    "rllib --num_workers=-1": Case(RLLIB, fixed("--num_workers=-1"), 2, "out of range"),
    # stable_baselines3_training_script.py
    "sb3 --seed=-1": Case(SB3, sb3("--seed=-1"), 2, "out of range"),
    "sb3 --n_steps=1 --batch_size=2": Case(SB3, sb3("--n_steps=1", "--batch_size=2"), 1, "n_steps * n_envs"),
    "sb3 --device=nonsense": Case(SB3, sb3("--device=nonsense"), 1, "cannot be built with these settings"),
    "sb3 experiment_dir below a file": Case(SB3, sb3_file_as_experiment_dir, 2, "which is a file"),
    "sb3 unreadable resume model": Case(SB3, sb3_unreadable_resume, 1, "cannot read", unreadable=True),
    "sb3 --speedup=0": Case(SB3, sb3("--speedup=0"), 2, "out of range"),
    # the playback scripts
    "simulator --seed=-1": Case(
        "simulator.py", fixed(f"--env-path={BALLCHASE}", "--seed=-1"), 2, "out of range"
    ),
    "interface --seed=-1": Case("interface_sb3_raw.py", fixed("model.zip", "--seed=-1"), 2, "out of range"),
    # the converters
    "sb3 export zip with a bad CRC": Case(SB3_ONNX, bad_crc_zip, 1, "policy.pth is corrupt"),
    "sb3 export unreadable zip": Case(SB3_ONNX, unreadable_zip, 1, "cannot read", unreadable=True),
    "sb3 export --opset abc": Case(SB3_ONNX, fixed("model.zip", "--opset", "abc"), 2, "--opset"),
    "rllib export unreadable checkpoint": Case(
        RLLIB_ONNX, unreadable_checkpoint, 1, "cannot read", unreadable=True
    ),
    "rllib export --checkpoint-number x": Case(
        RLLIB_ONNX, fixed("run", "--checkpoint-number", "x"), 2, "invalid"
    ),
    # demo.py and check_py_env.py
    "demo --interval inf": Case("demo.py", fixed("--interval", "inf"), 2, "out of range"),
    "demo --interval 1e300": Case("demo.py", fixed("--interval", "1e300"), 2, "out of range"),
    "demo --iterations 0": Case("demo.py", fixed("--iterations", "0"), 2, "out of range"),
    "check_py_env --bogus": Case("check_py_env.py", fixed("--bogus"), 2, "unrecognized arguments"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_one_error_line_and_nothing_left_running(name, tmp_path):
    case = CASES[name]
    if case.unreadable and os.geteuid() == 0 and not shutil.which("setpriv"):
        pytest.skip("root reads any file; setpriv (util-linux) is needed to drop that")
    folder = tmp_path / "case"
    folder.mkdir()
    previous = Path.cwd()
    os.chdir(folder)  # relative paths the builders write land in the case's folder
    try:
        args = case.args(folder)
    finally:
        os.chdir(previous)
    command = script_command(case.script, *args)
    if case.unreadable and os.geteuid() == 0:
        command = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *command]
    result = run_in_own_session(command, folder, timeout=120)
    stderr = result.stderr
    assert result.returncode == case.code, stderr[-2000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    if case.code == 2:
        errors = [line for line in stderr.splitlines() if ": error: " in line]
        assert stderr.startswith("usage:") and len(errors) == 1, stderr
    else:
        errors = [line for line in stderr.splitlines() if line.startswith("ERROR: ")]
        others = [line for line in stderr.splitlines() if not line.startswith(("ERROR: ", "WARNING: "))]
        assert len(errors) == 1 and others == [], stderr
        assert errors[0].endswith(")"), "ERROR: <what> (<how to fix>)"
    assert case.message in errors[0], errors[0]
