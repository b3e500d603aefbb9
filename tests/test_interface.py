"""interface_sb3_raw.py and interface_rllib_raw.py: models trained here, ONNX exports, the example games."""

import json
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from conftest import PYTHON, REPO_ROOT, SIM_DIR, find_free_port_block
from in_process import run_main
from play_helpers import (
    ScriptRun,
    after,
    assert_no_game_left,
    episode_rewards,
    of_kind,
    run_to_end,
    stop_with_sigint,
)
from script_helpers import run_script

from godot_rl_cli.cli import export_rllib, export_sb3
from godot_rl_cli.game.spaces import flatten_observation
from godot_rl_cli.play.sources import PlaybackError, map_agents_to_policies

SB3 = "interface_sb3_raw.py"
RLLIB = "interface_rllib_raw.py"
BALLCHASE = str(SIM_DIR / "BallChase.x86_64")
CAMERA = str(SIM_DIR / "BallChaseCamera.x86_64")
PONG = str(SIM_DIR / "Pong.x86_64")


def trained(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.fixture(scope="module")
def sb3_models(tmp_path_factory) -> dict:
    """PPO on BallChase (2 agents) and a CNN policy on BallChaseCamera, briefly trained, with ONNX exports."""
    directory = tmp_path_factory.mktemp("sb3_play")
    port = find_free_port_block(1)
    common = [f"--experiment_dir={directory}", f"--port={port}", "--policy-hidden-layers=16"]
    trained(
        run_script(
            "stable_baselines3_training_script.py",
            f"--env_path={BALLCHASE}",
            "--experiment_name=ballchase",
            "--timesteps=256",
            "--game_arg",
            "n_agents=2",
            *common,
            cwd=directory,
        )
    )
    trained(
        run_script(
            "stable_baselines3_training_script.py",
            f"--env_path={CAMERA}",
            "--experiment_name=camera",
            "--timesteps=128",
            "--policy-type=cnn",
            "--cnn-channels=8,8",
            *common,
            cwd=directory,
        )
    )
    models = {}
    for name in ("ballchase", "camera"):
        models[name] = directory / f"{name}_final.zip"
        models[f"{name}_onnx"] = directory / f"{name}.onnx"
        # the converters run in this process (their own tests run them as children too)
        args = [str(models[name]), "-o", str(models[f"{name}_onnx"])]
        trained(run_main(export_sb3.main, "convert_sb3_to_onnx.py", *args, cwd=directory))
    return models


@pytest.fixture(scope="module")
def rllib_run(tmp_path_factory) -> SimpleNamespace:
    """One tiny PPO iteration on Pong with two policies (Ray starts once, in the training script), and the
    ONNX export of both policies."""
    directory = tmp_path_factory.mktemp("rllib_play")
    config = {
        "algorithm": "PPO",
        "env_config": {"env_path": PONG, "port": find_free_port_block(1), "speedup": 8, "action_repeat": 8},
        "checkpoint_frequency": 1,
        "stop": {"training_iteration": 1},
        "num_workers": 0,
        "rollout_fragment_length": 100,
        "train_batch_size": 200,
        "sgd_minibatch_size": 100,
        "num_sgd_iter": 1,
        "model": {"fcnet_hiddens": [16, 16]},
    }
    (directory / "pong.yaml").write_text(yaml.safe_dump(config))
    experiment = directory / "exp"
    trained(
        run_script(
            "rllib_training_script.py",
            "--config_file=pong.yaml",
            f"--experiment_dir={experiment}",
            cwd=directory,
        )
    )
    [trial] = [path.parent for path in experiment.glob("*/*/run_manifest.json")]
    onnx = directory / "onnx"
    args = [str(trial), "-o", str(onnx)]
    trained(run_main(export_rllib.main, "convert_rllib_to_onnx.py", *args, cwd=directory))
    return SimpleNamespace(experiment=experiment, trial=trial, onnx=onnx)


def play_each(script: str, agent_paths: list, args: list, cwd: Path) -> list:
    """Run `script` to its end once per agent path, with the same arguments: [(events, actions)] of each."""
    runs = []
    for agent in agent_paths:
        code, events, actions, stderr = run_to_end(script, str(agent), *args, cwd=cwd)
        assert code == 0, stderr[-2000:]
        runs.append((events, actions))
    return runs


def rows(actions: list) -> list:
    return [row for action in actions for row in action["agents"]]


# --- Stable-Baselines3 ------------------------------------------------------------------------------


def test_sb3_model_in_the_editor_with_the_controllers_argv(sb3_models, tmp_path):
    """The Interface tab's argv: an untrimmed relative path, --algo untrimmed and in capitals, no env path."""
    port = find_free_port_block(1)
    game = subprocess.Popen(
        [BALLCHASE, f"--port={port}", "--n_agents=2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    model_dir = sb3_models["ballchase"].parent
    args = [
        "ballchase_final.zip ",
        "--mode=multi",
        "--restart-delay=2.0000",
        "--algo=PPO ",
        "--port",
        str(port),
    ]
    try:
        events, actions = stop_with_sigint(ScriptRun(SB3, *args, cwd=model_dir), after("episode_end", 2))
        assert game.wait(timeout=5) == 0
    finally:
        game.kill()
    settings = events[0]
    assert (
        settings["agent_type"] == "sb3-raw"
        and settings["algo"] == "ppo"
        and settings["deterministic"] is True
    )
    assert settings["agent_path"] == str(sb3_models["ballchase"])
    assert any(
        e["message"].startswith("Loaded PPO model ballchase_final.zip") for e in of_kind(events, "status")
    )
    assert of_kind(events, "connected")[0]["mode"] == "multi"
    for row in rows(actions):
        assert row["agent"] in ("0", "1") and row["policy"] == "shared_policy"
        assert len(row["observation"]) == 4 and len(json.dumps(row["observation"])) <= 48
        assert len(row["action"]["move"]) == 2 and all(-1 <= value <= 1 for value in row["action"]["move"])
    assert all(set(rewards) == {"0", "1"} for rewards in episode_rewards(events))


@pytest.mark.parametrize("name,game,agents", [("ballchase", BALLCHASE, 2), ("camera", CAMERA, 1)])
def test_sb3_model_and_its_onnx_export_play_alike(sb3_models, tmp_path, name, game, agents):
    """Deterministic actions, seeded game: the model and the file the game would ship earn equal rewards."""
    port = find_free_port_block(1)
    args = [
        "--mode=single",
        f"--env-path={game}",
        "--max-episodes=2",
        f"--port={port}",
        f"--game_arg=n_agents={agents}",
    ]
    (model_events, model_actions), (onnx_events, onnx_actions) = play_each(
        SB3, [sb3_models[name], sb3_models[f"{name}_onnx"]], args, tmp_path
    )
    assert onnx_events[0]["agent_type"] == "onnx" and {row["policy"] for row in rows(onnx_actions)} == {name}
    expected, exported = episode_rewards(model_events), episode_rewards(onnx_events)
    assert len(expected) == 2 and list(expected[0]) == [f"agent_{i}" for i in range(agents)]
    for model_rewards, onnx_rewards in zip(expected, exported):
        assert onnx_rewards == pytest.approx(model_rewards, abs=1e-3)
    if name == "camera":
        observations = [row["observation"] for row in rows(model_actions + onnx_actions)]
        assert all(obs["camera_2d"] == "uint8[36x36x1]" and len(obs["obs"]) == 4 for obs in observations)
    assert_no_game_left(port)


def test_model_that_does_not_fit_the_game_is_one_error_event(sb3_models, tmp_path):
    port = find_free_port_block(1)
    args = [str(sb3_models["ballchase"]), f"--env-path={PONG}", "--no-auto-restart", f"--port={port}"]
    code, events, _, stderr = run_to_end(SB3, *args, cwd=tmp_path)
    assert code == 1
    [error] = of_kind(events, "error")
    for shape in ("{obs: (4,)}", "Box(2,)", "{obs: (6,)}", "Discrete(3)"):
        assert shape in error["message"], error["message"]
    assert "Traceback" not in stderr and "ERROR" not in stderr
    assert_no_game_left(port)

    # with auto-restart (the default) the mismatch is retried like any failure, and SIGINT still ends it
    run = ScriptRun(
        SB3,
        str(sb3_models["ballchase_onnx"]),
        f"--env-path={PONG}",
        "--restart-delay=0.1",
        f"--port={port}",
        cwd=tmp_path,
    )
    events, _ = stop_with_sigint(run, after("connected", 2))
    assert [e["attempt"] for e in of_kind(events, "connected")] == [1, 2]
    assert "ONNX model ballchase.onnx does not fit the game" in of_kind(events, "error")[0]["message"]
    assert_no_game_left(port)


# --- RLlib ------------------------------------------------------------------------------------------


def test_rllib_trial_directory_plays_each_agent_with_its_policy(rllib_run, tmp_path):
    port = find_free_port_block(1)
    args = [
        str(rllib_run.trial),
        "--mode=multi",
        "--restart-delay=2.0000",
        "--checkpoint-number=0",
        f"--env-path={PONG}",
        f"--port={port}",
        "--stochastic",
    ]
    events, actions = stop_with_sigint(ScriptRun(RLLIB, *args, cwd=tmp_path), after("episode_end", 2))
    assert events[0]["agent_type"] == "rllib-raw" and events[0]["deterministic"] is False
    assert of_kind(events, "status")[0]["message"].startswith(
        "Loaded RLlib checkpoint checkpoint_000000: left_policy"
    )
    assert {(row["agent"], row["policy"]) for row in rows(actions)} == {
        ("0", "left_policy"),
        ("1", "right_policy"),
    }
    assert all(row["action"]["move"] in (0, 1, 2) and len(row["observation"]) == 6 for row in rows(actions))
    assert all(set(rewards) == {"0", "1"} for rewards in episode_rewards(events))
    assert_no_game_left(port)


def test_rllib_policy_and_its_onnx_export_play_alike(rllib_run, tmp_path):
    port = find_free_port_block(1)
    args = [
        "--policy",
        " left_policy ",
        "--mode=single",
        f"--env-path={PONG}",
        "--max-episodes=2",
        f"--port={port}",
    ]
    runs = play_each(RLLIB, [rllib_run.experiment, rllib_run.onnx / "left_policy.onnx"], args, tmp_path)
    for _, actions in runs:
        assert {(row["agent"], row["policy"]) for row in rows(actions)} == {
            ("agent_0", "left_policy"),
            ("agent_1", "left_policy"),
        }
    checkpoint_rewards, onnx_rewards = [episode_rewards(events) for events, _ in runs]
    assert len(checkpoint_rewards) == 2 and checkpoint_rewards == onnx_rewards
    assert_no_game_left(port)


def test_rllib_bad_inputs_fail_before_any_game(rllib_run, tmp_path):
    for args, text in [
        ([str(rllib_run.trial), "--policy=nobody"], "policy 'nobody' is not in the checkpoint"),
        ([str(rllib_run.trial), "--checkpoint-number=7"], "checkpoint number 7 not found"),
        ([str(tmp_path / "missing")], "does not exist"),
        ([str(tmp_path)], "no RLlib checkpoint found"),
    ]:
        result = subprocess.run(
            [PYTHON, str(REPO_ROOT / RLLIB), *args, f"--env-path={PONG}"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 1 and text in result.stderr and result.stderr.count("ERROR:") == 1, (
            args,
            result.stderr,
        )
        assert "Traceback" not in result.stderr and '"kind":"connected"' not in result.stdout


@pytest.mark.parametrize(
    "agent, message",
    [("model", "is a file, not an RLlib checkpoint directory"), ("empty", "no RLlib checkpoint found")],
)
def test_a_path_without_a_checkpoint_is_refused_before_ray_is_imported(tmp_path, agent, message):
    """A file that is not an .onnx export, or a folder without checkpoints: refused at once, not after seconds
    of imports."""
    (tmp_path / "model").write_text("")
    (tmp_path / "empty").mkdir()
    check = (
        f"import sys; sys.path.insert(0, {str(REPO_ROOT)!r})\n"
        "from godot_rl_cli.cli import watch_rllib\n"
        f"code = watch_rllib.main([{agent!r}, '--env-path={PONG}'])\n"
        "open('outcome', 'w').write(f\"{code} {'ray' in sys.modules}\")"  # print's fd 1 is stderr by now
    )
    result = subprocess.run([PYTHON, "-c", check], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert (tmp_path / "outcome").read_text() == "1 False", result.stdout + result.stderr
    [error] = result.stderr.splitlines()
    assert error.startswith("ERROR: ") and message in error and f"{tmp_path / agent}" in error, error


def test_checkpoint_paths_resolve_as_the_controller_passes_them(rllib_run):
    from godot_rl_cli.rllib.layout import checkpoint_to_play

    checkpoint = rllib_run.trial / "checkpoint_000000"
    assert checkpoint_to_play(rllib_run.experiment) == checkpoint
    assert checkpoint_to_play(rllib_run.trial, 0) == checkpoint
    assert checkpoint_to_play(checkpoint, 5) == checkpoint, "a checkpoint_N path wins over the number"


def test_bad_sb3_command_lines(tmp_path):
    started = time.monotonic()
    for args, code, text in [
        (["model.zip", "--algo=trpo"], 2, "invalid choice 'trpo'"),
        (["missing.zip"], 1, "ERROR: agent path missing.zip does not exist"),
    ]:
        result = subprocess.run(
            [PYTHON, str(REPO_ROOT / SB3), *args], cwd=tmp_path, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == code and text in result.stderr, (args, result.stderr)
    assert time.monotonic() - started < 5, "flags and paths are checked before torch is imported"


# --- pieces, in this process ------------------------------------------------------------------------


def test_agents_map_to_policies_as_in_training():
    assert map_agents_to_policies(["left", "right"], ["left", "right"]) == ["left", "right"]
    assert map_agents_to_policies(["left", "right"], ["left", "right"], forced="right") == ["right", "right"]
    assert map_agents_to_policies(["shared_policy"] * 2, ["default_policy"]) == ["default_policy"] * 2
    with pytest.raises(PlaybackError, match="agents use the policies a, b but the checkpoint holds x, y"):
        map_agents_to_policies(["a", "b"], ["x", "y"])


def test_observations_are_flattened_as_rllib_training_flattens_them():
    """One function serves training and playback: keys in the game's order, not gymnasium's sorted order."""
    from godot_rl_cli.rllib.env import GodotMultiAgentEnv

    observation = {"b": [1.0, 2.0], "a_2d": np.arange(4, dtype=np.uint8).reshape(2, 2, 1), "c": [3.0]}
    order = ["b", "a_2d", "c"]
    trained_on = GodotMultiAgentEnv._flatten(
        SimpleNamespace(game=SimpleNamespace(observation_key_order=order)), observation
    )
    expected = np.array([1.0, 2.0, 0.0, 1.0, 2.0, 3.0, 3.0], dtype=np.float32)
    np.testing.assert_array_equal(trained_on, expected)
    np.testing.assert_array_equal(flatten_observation(observation, order), expected)


def test_onnx_output_is_decoded_as_the_plugin_decodes_it():
    from godot_rl_cli.play.onnx_source import OnnxActions

    decode = OnnxActions._decode
    continuous = [(False, 2), (False, 1)]
    np.testing.assert_allclose(decode(np.array([0.5, 2.0, -3.0]), continuous, True), [0.5, 1.0, -1.0])
    mean_log_std = np.array([0.5, -0.2, 9.0, 9.0, 0.3, 9.0])  # [mean, log_std] per key, RLlib style
    np.testing.assert_allclose(decode(mean_log_std, continuous, False), [0.5, -0.2, 0.3])
    np.testing.assert_array_equal(
        decode(np.array([-3.0, -1.0, -2.0, 0.1, 0.0]), [(True, 3), (True, 2)], False), [1, 0]
    )
    with pytest.raises(PlaybackError, match="fewer than the game's actions need"):
        decode(np.array([0.1]), continuous, True)
