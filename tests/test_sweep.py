"""A generated sweep over the nine scripts: bad paths, outputs that would destroy a file, bad numbers and YAML
values, user code in the YAML, stop signals, closed stdout and models of older releases (issue 25).

Each case is a real process in a folder of its own, with a short timeout, judged by sweep_harness: exit code,
exactly one `ERROR:` line or argparse's usage error, no traceback, no hang, no process left, and every file
that was in the folder before byte-identical after unless the case says it is replaced. The cases run in a
small pool of threads (one process each); `python tests/test_sweep.py` prints the summary table that the
README's reliability section shows.
"""

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import pytest
from conftest import SIM_DIR, find_free_port_block
from legacy_models import write_legacy_model
from script_helpers import script_command
from sweep_harness import (
    ERROR,
    OK,
    REFUSED,
    STOPPED,
    Case,
    Outcome,
    Result,
    run_cases,
    selected_cases,
    summary_table,
)

BALLCHASE = str(SIM_DIR / "BallChase.x86_64")
PONG = str(SIM_DIR / "Pong.x86_64")
SB3 = "stable_baselines3_training_script.py"
RLLIB = "rllib_training_script.py"
SB3_ONNX = "convert_sb3_to_onnx.py"
RLLIB_ONNX = "convert_rllib_to_onnx.py"
CHECK = "check_py_env.py"
DEMO = "demo.py"
SIM = "simulator.py"
WATCH_SB3 = "interface_sb3_raw.py"
WATCH_RLLIB = "interface_rllib_raw.py"
ALL_SCRIPTS = (SB3, RLLIB, SB3_ONNX, RLLIB_ONNX, CHECK, DEMO, SIM, WATCH_SB3, WATCH_RLLIB)
POOL = 6
Builder = Callable[[Path], List[str]]

# --- building bad paths ------------------------------------------------------------------------------------


def make_input(kind: str, folder: Path, name: str) -> str:
    """A path argument of `kind` (no file of the expected type), created in `folder`."""
    path = folder / name
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":
        return "/dev/null"
    elif kind == "broken symlink":
        path.symlink_to(folder / "nowhere")
    elif kind == "looping symlink":
        path.symlink_to(folder / f"{name}.loop")
        (folder / f"{name}.loop").symlink_to(path)
    elif kind == "empty file":
        path.write_bytes(b"")
    return name


INPUT_KINDS = ("directory", "fifo", "device", "broken symlink", "looping symlink", "missing", "cwd gone")
DIR_INPUT_KINDS = ("empty file", "fifo", "broken symlink", "looping symlink", "missing", "cwd gone")


def make_output(kind: str, folder: Path, name: str) -> str:
    """An output path of `kind` that must be refused before anything is written."""
    if kind == "existing directory":
        (folder / name).mkdir()
        (folder / name / "keep.txt").write_text("keep")
        return name
    if kind == "below a regular file":
        (folder / "afile").write_text("keep")
        return f"afile/{name}"
    if kind == "fifo":
        os.mkfifo(folder / name)
        return name
    if kind == "device":
        return "/dev/full"
    if kind == "broken symlink":
        (folder / name).symlink_to(folder / "elsewhere" / name)
        (folder / "elsewhere").mkdir()
        return name
    if kind == "unwritable folder":
        (folder / "ro").mkdir()
        (folder / "ro").chmod(0o555)
        return f"ro/{name}"
    raise ValueError(kind)


OUTPUT_KINDS = (
    "existing directory",
    "below a regular file",
    "fifo",
    "device",
    "broken symlink",
    "unwritable folder",
)


def yaml_text(folder: Path, text: str, name: str = "run.yaml") -> str:
    (folder / name).write_text(text.replace("PONG", PONG))
    return name


def sb3_args(*extra: str, env_path: str = BALLCHASE, timesteps: int = 64) -> Builder:
    def build(folder: Path) -> List[str]:
        port = find_free_port_block(4)
        return [
            f"--env_path={env_path}",
            f"--port={port}",
            f"--timesteps={timesteps}",
            "--experiment_dir=exp",
        ] + [item.replace("{folder}", str(folder)) for item in extra]

    return build


def flat_yaml(text: str, *extra: str) -> Builder:
    return lambda folder: [f"--config_file={yaml_text(folder, text)}", "--experiment_dir=exp", *extra]


def fixed(*args: str) -> Builder:
    return lambda folder: list(args)


def with_files(files: Dict[str, bytes], *args: str) -> Builder:
    def build(folder: Path) -> List[str]:
        for name, content in files.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(content)
        return list(args)

    return build


# --- the cases -----------------------------------------------------------------------------------------


def path_cases() -> Dict[str, Case]:
    """Every path argument of every script, given something that is not what it should be."""
    cases = {}
    inputs: List[Tuple[str, str, Callable[[str], Builder]]] = [
        (SB3, "--env_path", lambda p: sb3_args(env_path=p)),
        (SB3, "--resume_model_path", lambda p: sb3_args(f"--resume_model_path={p}")),
        (RLLIB, "--config_file", lambda p: fixed(f"--config_file={p}", "--experiment_dir=exp")),
        (RLLIB, "--env_path", lambda p: flat_yaml("env_config: {}\n", f"--env_path={p}")),
        (SB3_ONNX, "model", lambda p: fixed(p, "-o", "out.onnx")),
        (SIM, "--env-path", lambda p: fixed(f"--env-path={p}", "--max-episodes=1")),
        (WATCH_SB3, "agent", lambda p: fixed(p, f"--env-path={BALLCHASE}", "--max-episodes=1")),
    ]
    for script, flag, builder in inputs:
        for kind in INPUT_KINDS:
            cases[f"{script} {flag} {kind}"] = Case(
                "bad path",
                script,
                _bad_input(builder, kind, "bad.x86_64" if "env" in flag else "bad.zip"),
                REFUSED,
                cwd_gone=kind == "cwd gone",
            )
    directories: List[Tuple[str, str, Callable[[str], Builder]]] = [
        (RLLIB, "--resume", lambda p: flat_yaml(f"env_config: {{env_path: {PONG}}}\n", f"--resume={p}")),
        (RLLIB_ONNX, "checkpoint", lambda p: fixed(p, "-o", "out")),
        (WATCH_RLLIB, "agent", lambda p: fixed(p, f"--env-path={PONG}", "--max-episodes=1")),
    ]
    for script, flag, builder in directories:
        for kind in DIR_INPUT_KINDS:
            cases[f"{script} {flag} {kind}"] = Case(
                "bad path",
                script,
                _bad_input(builder, kind, "checkpoint_000001"),
                REFUSED,
                cwd_gone=kind == "cwd gone",
            )
    names = [
        (SB3, lambda n: sb3_args(f"--experiment_name={n}")),
        (
            RLLIB_ONNX,
            lambda n: with_files(
                {"checkpoint_000001/rllib_checkpoint.json": b"{}"}, "checkpoint_000001", f"--prefix={n}"
            ),
        ),
    ]
    for script, builder in names:
        for name in ("../outside", "a/b"):
            cases[f"{script} plain name {name}"] = Case("bad path", script, builder(name), REFUSED, "name")
    return cases


def _bad_input(builder: Callable[[str], Builder], kind: str, name: str) -> Builder:
    def build(folder: Path) -> List[str]:
        path = make_input(kind, folder, name) if kind != "cwd gone" else name
        return builder(path)(folder)

    return build


def output_cases() -> Dict[str, Case]:
    """Outputs that are inputs, another run's files, or places that cannot be written: refused up front."""
    cases = {}
    outputs: List[Tuple[str, str, Callable[[str], Builder]]] = [
        (SB3, "--save_model_path", lambda p: sb3_args(f"--save_model_path={p}")),
        (SB3, "--onnx_export_path", lambda p: sb3_args(f"--onnx_export_path={p}")),
        (SB3, "--experiment_dir", lambda p: sb3_args(f"--experiment_dir={p}")),
        (SB3_ONNX, "-o", lambda p: with_files({"model.zip": b"PK-not-read"}, "model.zip", "-o", p)),
        (
            RLLIB,
            "--experiment_dir",
            lambda p: flat_yaml(f"env_config: {{env_path: {PONG}}}\n", f"--experiment_dir={p}"),
        ),
        (
            RLLIB,
            "--onnx_export_dir",
            lambda p: flat_yaml(f"env_config: {{env_path: {PONG}}}\n", f"--onnx_export_dir={p}"),
        ),
    ]
    directory_flags = {"--experiment_dir", "--onnx_export_dir"}
    for script, flag, builder in outputs:
        for kind in OUTPUT_KINDS:
            if flag in directory_flags and kind in ("existing directory",):
                continue
            name = (
                "outdir"
                if flag in directory_flags
                else ("out.onnx" if "onnx" in flag or flag == "-o" else "out.zip")
            )
            cases[f"{script} {flag} {kind}"] = Case(
                "output refused",
                script,
                _bad_output(builder, kind, name),
                REFUSED,
                unreadable=kind == "unwritable folder",
            )
    same = {"model.zip": b"PK\x03\x04 a model"}
    cases["sb3 export -o the model itself"] = Case(
        "output refused", SB3_ONNX, with_files(same, "model.zip", "-o", "model.zip"), REFUSED, "model.zip"
    )
    cases["sb3 export -o the model via ./"] = Case(
        "output refused",
        SB3_ONNX,
        with_files(same, "model.zip", "-o", "./sub/../model.zip"),
        REFUSED,
        "model.zip",
    )
    cases["sb3 export -o a hard link to the model"] = Case(
        "output refused", SB3_ONNX, _hard_link_output, REFUSED, "model.zip"
    )
    cases["sb3 train resumes a broken model saving into it"] = Case(
        "output refused", SB3, _resume_into_itself, REFUSED, "model.zip"
    )
    cases["sb3 train --onnx_export_path = --save_model_path"] = Case(
        "output refused",
        SB3,
        sb3_args("--save_model_path=m.zip", "--onnx_export_path=m.zip"),
        REFUSED,
        "m.zip",
    )
    cases["sb3 train into a folder with an earlier final model"] = Case(
        "output refused",
        SB3,
        _another_runs_final_model,
        OK,
        "earlier run's final model",
        timeout=90,
        check=_saved_beside_the_earlier_final_model,
    )
    cases["sb3 train a crashing game never replaces an earlier final model"] = Case(
        "output refused", SB3, _rerun_with_crashing_game, ERROR, "", timeout=90, check=_partial_model_beside
    )
    cases["rllib --resume with --restore"] = Case(
        "output refused", RLLIB, _resume_and_restore, ERROR, "checkpoint", check=_restore_named
    )
    earlier_best = {"exp/best_model.zip": b"PK\x03\x04 the earlier run's best"}
    cases["sb3 train --eval_freq into a folder with an earlier best model"] = Case(
        "output refused", SB3, _beside(earlier_best, sb3_args("--eval_freq=32")), REFUSED, "best_model.zip"
    )
    cases["sb3 train --eval_freq beside an earlier best.onnx"] = Case(
        "output refused",
        SB3,
        _beside({"best.onnx": b"onnx"}, sb3_args("--eval_freq=32", "--onnx_export_path=final.onnx")),
        REFUSED,
        "best.onnx",
    )
    cases["rllib --onnx_export_dir with an earlier run's best ONNX"] = Case(
        "output refused",
        RLLIB,
        _earlier_best_onnx_export,
        ERROR,
        "best_shared_policy.onnx",
    )
    return cases


def _beside(files: Dict[str, bytes], builder: Builder) -> Builder:
    """The files of an earlier run in the case's folder, then the builder's arguments."""
    return lambda folder: with_files(files)(folder) + builder(folder)


def _earlier_best_onnx_export(folder: Path) -> List[str]:
    (folder / "onnx").mkdir()
    (folder / "onnx" / "best_shared_policy.onnx").write_bytes(b"the earlier run's best")
    return flat_yaml(f"env_config: {{env_path: {PONG}}}\n", "--onnx_export_dir=onnx")(folder)


def _resume_and_restore(folder: Path) -> List[str]:
    (folder / "a").mkdir()
    (folder / "b").mkdir()
    return flat_yaml(f"env_config: {{env_path: {PONG}}}\n", "--resume=a", "--restore=b")(folder)


def _restore_named(folder: Path, outcome: Outcome) -> Optional[str]:
    return None if "--restore b" in outcome.stderr else "the ignored --restore is not named"


def _saved_beside_the_earlier_final_model(folder: Path, outcome: Outcome) -> Optional[str]:
    return None if (folder / "exp" / "experiment_final_2.zip").is_file() else "no experiment_final_2.zip"


def _bad_output(builder: Callable[[str], Builder], kind: str, name: str) -> Builder:
    return lambda folder: builder(make_output(kind, folder, name))(folder)


def _hard_link_output(folder: Path) -> List[str]:
    (folder / "model.zip").write_bytes(b"PK\x03\x04 a model")
    os.link(folder / "model.zip", folder / "link.onnx")
    return ["model.zip", "-o", "link.onnx"]


def _resume_into_itself(folder: Path) -> List[str]:
    (folder / "model.zip").write_bytes(b"PK\x03\x04 a model")
    return sb3_args("--resume_model_path=model.zip", "--save_model_path=./model.zip")(folder)


def _another_runs_final_model(folder: Path) -> List[str]:
    (folder / "exp").mkdir()
    (folder / "exp" / "experiment_final.zip").write_bytes(b"PK\x03\x04 the earlier run")
    return sb3_args()(folder)


def _rerun_with_crashing_game(folder: Path) -> List[str]:
    (folder / "exp").mkdir()
    (folder / "exp" / "run_final.zip").write_bytes(b"PK\x03\x04 the earlier run")
    return sb3_args("--experiment_name=run", "--game_arg=crash_after_steps=40", timesteps=5000)(folder)


def _partial_model_beside(folder: Path, outcome: Outcome) -> Optional[str]:
    saved = sorted(path.name for path in (folder / "exp").glob("*.zip"))
    if saved == ["run_final.zip"]:
        return (
            None
            if "nothing" in outcome.stderr or "not saved" in outcome.stderr
            else f"no partial model: {saved}"
        )
    partial = [name for name in saved if name != "run_final.zip"]
    if not partial:
        return f"no model saved beside run_final.zip: {saved}"
    if partial[0] not in outcome.stderr or "run_final.zip" not in outcome.stderr:
        return f"the message names not both files: {outcome.stderr[-500:]}"
    return None


def number_cases() -> Dict[str, Case]:
    """Numbers and YAML values checked where they enter, for flags and YAML alike."""
    cases = {}
    sb3_flags = {
        "--learning_rate=nan": REFUSED,
        "--learning_rate=-1": REFUSED,
        "--gamma=nan": REFUSED,
        "--gamma=1.5": REFUSED,
        "--gae_lambda=2": REFUSED,
        "--ent_coef=nan": REFUSED,
        "--vf_coef=-1": REFUSED,
        "--clip_range=inf": REFUSED,
        "--n_parallel=0": REFUSED,
        "--speedup=nan": REFUSED,
        "--step_timeout=inf": REFUSED,
        "--cnn-channels=0": REFUSED,
        "--policy-hidden-layers=100000000,100000000": REFUSED,
        "--grn-hidden-size=1000000000": REFUSED,
        "--device=cuda": REFUSED,
        "--device=cuda:7": REFUSED,
        "--port=65535 --n_parallel=2": REFUSED,
        "--port=65535 --eval_freq=10": REFUSED,
    }
    for flags, expect in sb3_flags.items():
        cases[f"sb3 {flags}"] = Case("number", SB3, sb3_args(*flags.split()), expect)
    stops = {
        "{training_iteration: .nan}": "training_iteration",
        "{training_iteration: .inf}": "training_iteration",
        "{training_iteration: 0}": "training_iteration",
        "{training_iteration: -1}": "training_iteration",
        "{timesteps_total: .nan}": "timesteps_total",
        "{time_total_s: -5}": "time_total_s",
        "{episode_reward_mean: .nan}": "episode_reward_mean",
        "{sustained_episode_reward_mean: {threshold: 1, window: 0}}": "sustained",
    }
    for stop, key in stops.items():
        cases[f"rllib stop {stop}"] = Case(
            "number", RLLIB, flat_yaml(f"env_config: {{env_path: PONG}}\nstop: {stop}\n"), REFUSED, key
        )
    yaml_values = {
        "lr: .nan": "lr",
        "lr: -1": "lr",
        "gamma: 2": "gamma",
        "lambda: -1": "lambda",
        "num_workers: -1": "num_workers",
        "num_workers: abc": "num_workers",
        "num_workers: 100000": "num_workers",
        "train_batch_size: 0": "train_batch_size",
        "sgd_minibatch_size: -1": "sgd_minibatch_size",
        "model: {fcnet_hiddens: [100000000, 100000000]}": "fcnet_hiddens",
        "model: {fcnet_hiddens: abc}": "fcnet_hiddens",
        "env_config: {env_path: PONG, port: 65535}\nnum_workers: 2": "port",
        "env_config: {env_path: PONG, speedup: .nan}": "speedup",
        "env_config: {env_path: PONG, connect_timeout: .inf}": "connect_timeout",
        "checkpoint_frequency: .nan": "checkpoint_frequency",
    }
    for line, key in yaml_values.items():
        body = line if line.startswith("env_config") else f"env_config: {{env_path: PONG}}\n{line}"
        cases[f"rllib yaml {line}"] = Case("number", RLLIB, flat_yaml(body + "\n"), REFUSED, key)
    cases["rllib yaml duplicate key"] = Case(
        "number", RLLIB, flat_yaml("env_config: {env_path: PONG}\nlr: 0.1\nlr: 0.2\n"), REFUSED, "lr"
    )
    cases["rllib yaml duplicate nested key"] = Case(
        "number",
        RLLIB,
        flat_yaml("env_config: {env_path: PONG, port: 12000, port: 13000}\n"),
        REFUSED,
        "port",
    )
    cases["rllib yaml env the trainer ignores"] = Case(
        "number",
        RLLIB,
        flat_yaml("env: CartPole-v1\nenv_config: {env_path: missing.x86_64}\n"),
        ERROR,
        "env_path",
        check=lambda folder, outcome: None if "CartPole" in outcome.stderr else "no warning about env",
    )
    cases["rllib yaml --device absent"] = Case(
        "number", RLLIB, flat_yaml("env_config: {env_path: PONG}\nnum_gpus: 1\n"), REFUSED, "num_gpus"
    )
    cases["rllib --num_workers=100000"] = Case(
        "number",
        RLLIB,
        flat_yaml("env_config: {env_path: PONG}\n", "--num_workers=100000"),
        REFUSED,
        "num_workers",
    )
    cases["rllib yaml seed 1.5"] = Case(
        "number", RLLIB, flat_yaml("env_config: {env_path: PONG, seed: 1.5}\n"), REFUSED, "seed"
    )
    playback = {
        "--step-delay=nan": REFUSED,
        "--step-delay=inf": REFUSED,
        "--restart-delay=nan": REFUSED,
        "--port=70000": REFUSED,
        "--speedup=0": REFUSED,
        "--connect-timeout=nan": REFUSED,
        "--max-steps=abc": REFUSED,
    }
    for script in (SIM,):
        for flags, expect in playback.items():
            extra = ["model.zip"] if script == WATCH_SB3 else []
            cases[f"{script} {flags}"] = Case(
                "number", script, fixed(*extra, f"--env-path={BALLCHASE}", flags), expect
            )
    for flags in ("--policies=0", "--interval=nan", "--iterations=-3"):
        cases[f"demo {flags}"] = Case("number", DEMO, fixed(flags), REFUSED)
    for flags in ("--opset=0", "--opset=nan", "--ir-version=-1"):
        cases[f"sb3 export {flags}"] = Case("number", SB3_ONNX, fixed("model.zip", flags), REFUSED)
        cases[f"rllib export {flags}"] = Case(
            "number", RLLIB_ONNX, fixed("checkpoint_000001", flags), REFUSED
        )
    cases["rllib export --checkpoint-number=-1"] = Case(
        "number", RLLIB_ONNX, fixed("checkpoint_000001", "--checkpoint-number=-1"), REFUSED
    )
    cases["watch rllib --checkpoint-number=-1"] = Case(
        "number", WATCH_RLLIB, fixed("run", "--checkpoint-number=-1"), REFUSED
    )
    return cases


def mapping_cases() -> Dict[str, Case]:
    """The policy_mapping_fn in the YAML is user code: its check is bounded and each failure is one ERROR."""
    bodies = {
        "exits": "import sys\ndef policy_mapping_fn(agent_id, episode, worker, **kw):\n    sys.exit(0)\n",
        "raises": "def policy_mapping_fn(agent_id, episode, worker, **kw):\n    raise RuntimeError('boom')\n",
        "loops forever": "def policy_mapping_fn(agent_id, *args, **kw):\n    while True:\n        pass\n",
        "sleeps": "import time\ndef policy_mapping_fn(agent_id, *args, **kw):\n    time.sleep(3600)\n",
        "exits at load": "import sys\nsys.exit(3)\n",
        "unknown policy": "def policy_mapping_fn(agent_id, episode, worker, **kw):\n    return 'nope'\n",
        "returns a number": "def policy_mapping_fn(agent_id, episode, worker, **kw):\n    return 1\n",
        "loops at load": "while True:\n    pass\n",
    }
    cases = {}
    for name, body in bodies.items():
        source = "\n".join("    " + line for line in body.splitlines())
        text = (
            "env_config: {env_path: PONG}\nmultiagent:\n  policies: [a, b]\n"
            f"  policy_mapping_fn: |\n{source}\n"
        )
        cases[f"rllib policy_mapping_fn {name}"] = Case(
            "user code", RLLIB, flat_yaml(text), ERROR, "policy_mapping_fn", timeout=60
        )
    return cases


def signal_cases() -> Dict[str, Case]:
    """A stop signal early in each script: exit 0 (130 after a second), no traceback, nothing left."""
    runs = {
        SB3: sb3_args(timesteps=100000),
        RLLIB: flat_yaml(f"env_config: {{env_path: {PONG}}}\nnum_workers: 0\n"),
        SB3_ONNX: with_files({"model.zip": b"PK\x03\x04"}, "model.zip"),
        RLLIB_ONNX: with_files({"run/result.json": b"{}"}, "run"),
        CHECK: fixed("--no-cache"),
        DEMO: fixed("--iterations=1000", "--interval=1"),
        SIM: fixed(f"--env-path={BALLCHASE}"),
        WATCH_SB3: with_files({"model.zip": b"PK\x03\x04"}, "model.zip", f"--env-path={BALLCHASE}"),
        WATCH_RLLIB: with_files({"run/result.json": b"{}"}, "run", f"--env-path={PONG}"),
    }
    cases = {}
    for script, builder in runs.items():
        for delay, number in ((0.0, signal.SIGINT), (0.15, signal.SIGTERM), (0.3, signal.SIGINT)):
            name = f"{script} {signal.Signals(number).name} at {delay} s"
            cases[name] = Case(
                "stop signal", script, builder, STOPPED, signals=(delay,), signal_number=number
            )
        cases[f"{script} two SIGINTs"] = Case("stop signal", script, builder, STOPPED, signals=(0.1, 0.3))
    return cases


def stdout_cases() -> Dict[str, Case]:
    """Nobody reads stdout: the trainers train and save (and say so on stderr), the others exit quietly."""
    cases = {}
    for script in ALL_SCRIPTS:
        cases[f"{script} --help to a closed pipe"] = Case(
            "closed stdout", script, fixed("--help"), OK, stdout_closed=True
        )
    cases["check_py_env to a closed pipe"] = Case(
        "closed stdout", CHECK, fixed(), OK, stdout_closed=True, timeout=150
    )
    cases["demo to a closed pipe"] = Case(
        "closed stdout",
        DEMO,
        fixed("--iterations=2", "--interval=0.01"),
        OK,
        stdout_closed=True,
        env={"CONTROLLER_METRICS": "1"},
    )
    cases["simulator to a closed pipe"] = Case(
        "closed stdout",
        SIM,
        fixed(f"--env-path={BALLCHASE}", "--max-episodes=1", "--max-steps=20"),
        OK,
        stdout_closed=True,
        timeout=60,
    )
    cases["sb3 trainer to a closed pipe"] = Case(
        "closed stdout",
        SB3,
        sb3_args(timesteps=256),
        OK,
        stdout_closed=True,
        timeout=120,
        env={"CONTROLLER_METRICS": "1"},
        check=_final_model_saved,
    )
    return cases


def _final_model_saved(folder: Path, outcome: Outcome) -> Optional[str]:
    return None if (folder / "exp" / "experiment_final.zip").is_file() else "no final model saved"


_MODEL_LOCK = threading.Lock()


def trained_models(base: Path) -> Dict[str, Path]:
    """A model this suite trained (64 steps on BallChase), and the same model as SB3 1.6.2 with gym 0.26
    saved it and as a release this suite cannot read would have: made once per sweep, in `base`."""
    with _MODEL_LOCK:
        folder = base / "models"
        models = {"current": folder / "exp" / "experiment_final.zip", "legacy": folder / "legacy.zip"}
        models["alien"] = folder / "alien.zip"
        if not models["alien"].exists():
            folder.mkdir(exist_ok=True)
            result = subprocess.run(
                script_command(SB3, *sb3_args()(folder)),
                cwd=folder,
                capture_output=True,
                text=True,
                timeout=240,
            )
            assert result.returncode == 0, result.stderr[-2000:]
            write_legacy_model(models["current"], models["legacy"])
            write_legacy_model(models["current"], models["alien"], module_name="gym_v99")
        return models


def copy_of(kind: str, name: str) -> Callable[[Path], str]:
    def build(folder: Path) -> str:
        shutil.copy(trained_models(folder.parent)[kind], folder / name)
        return name

    return build


def with_model(kind: str, name: str, build: Callable[[str], Builder]) -> Builder:
    return lambda folder: build(copy_of(kind, name)(folder))(folder)


def model_cases() -> Dict[str, Case]:
    """Models of older releases load (exported, played, resumed); one that cannot says which releases."""
    played = ["--max-episodes=1", "--max-steps=30"]
    return {
        "an SB3 1.6.2/gym 0.26 model exports to ONNX": Case(
            "older model",
            SB3_ONNX,
            with_model("legacy", "old.zip", lambda p: fixed(p, "-o", "old.onnx")),
            OK,
            timeout=120,
            check=lambda folder, outcome: None if (folder / "old.onnx").is_file() else "no old.onnx",
        ),
        "an SB3 1.6.2/gym 0.26 model plays": Case(
            "older model",
            WATCH_SB3,
            with_model(
                "legacy",
                "old.zip",
                lambda p: (
                    lambda f: [p, f"--env-path={BALLCHASE}", *played, f"--port={find_free_port_block(2)}"]
                ),
            ),
            OK,
            timeout=120,
            check=lambda folder, outcome: None if "episode_end" in outcome.stdout else "no episode played",
        ),
        "an SB3 1.6.2/gym 0.26 model resumes training": Case(
            "older model",
            SB3,
            with_model("legacy", "old.zip", lambda p: sb3_args(f"--resume_model_path={p}")),
            OK,
            timeout=150,
            check=_final_model_saved,
        ),
        "a model needing a module no release has names the versions": Case(
            "older model",
            SB3_ONNX,
            with_model("alien", "alien.zip", lambda p: fixed(p, "-o", "alien.onnx")),
            ERROR,
            "Stable-Baselines3 1.6.2",
            timeout=120,
        ),
        "sb3 resume into the same file with a crashing game keeps the model": Case(
            "output refused",
            SB3,
            with_model(
                "current",
                "model.zip",
                lambda p: sb3_args(
                    f"--resume_model_path={p}",
                    f"--save_model_path={p}",
                    "--game_arg=crash_after_steps=40",
                    timesteps=5000,
                ),
            ),
            ERROR,
            timeout=150,
            check=_incomplete_model_beside,
        ),
    }


def _incomplete_model_beside(folder: Path, outcome: Outcome) -> Optional[str]:
    if not (folder / "model.incomplete.zip").is_file():
        return "no model.incomplete.zip"
    return (
        None if "model.incomplete.zip" in outcome.stderr else "the message does not name model.incomplete.zip"
    )


def all_cases() -> Dict[str, Case]:
    cases: Dict[str, Case] = {}
    for group in (
        path_cases,
        output_cases,
        number_cases,
        mapping_cases,
        signal_cases,
        stdout_cases,
        model_cases,
    ):
        cases.update(group())
    return cases


CASES = all_cases()


@pytest.fixture(scope="module")
def results(request, tmp_path_factory) -> Dict[str, Result]:
    """Run the selected cases in a small pool (each case is one process, mostly waiting)."""
    return run_cases(selected_cases(request, __name__, CASES), tmp_path_factory.mktemp("sweep"), POOL)


@pytest.mark.parametrize("name", sorted(CASES))
def test_case(name, results):
    case, outcome, problems = results[name]
    assert not problems, f"{problems}\nstderr:\n{outcome.stderr[-3000:]}"


def test_the_sweep_is_wide():
    categories = {case.category for case in CASES.values()}
    assert len(CASES) >= 150 and len(categories) >= 6
    assert {case.script for case in CASES.values()} == set(ALL_SCRIPTS)


if __name__ == "__main__":
    import tempfile

    started = time.monotonic()
    chosen = {
        name: case for name, case in CASES.items() if not sys.argv[1:] or any(a in name for a in sys.argv[1:])
    }
    with tempfile.TemporaryDirectory() as base:
        found = run_cases(chosen, Path(base), POOL)
    for name, (_case, outcome, problems) in sorted(found.items()):
        if problems:
            print(
                f"FAIL {name}: {problems} | rc={outcome.returncode} {outcome.seconds:.1f}s | "
                f"{outcome.stderr.strip()[-300:]!r}"
            )
    print(summary_table(list(found.values())))
    slowest = sorted(found.items(), key=lambda item: -item[1][1].seconds)[:15]
    print("slowest: " + "; ".join(f"{name} {outcome.seconds:.0f} s" for name, (_, outcome, _) in slowest))
    print(f"{len(found)} cases in {time.monotonic() - started:.0f} s")
