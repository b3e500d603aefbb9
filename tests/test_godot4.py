"""The suite against a real Godot 4 engine: the examples/godot4 games (BallChase, Pong, PongDuel) on Debian's
`godot`.

The engine is GODOT4 if set, else the repository's .godot4/godot4 (scripts/install_godot4.sh, which .ci/run
runs). Under CI=true a missing engine fails these tests; elsewhere they are skipped with the reason. The
trained models are shared between tests through module fixtures, so the module stays short.
"""

import json
import os
import shutil
import subprocess
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator, List

import numpy as np
import pytest
import yaml
from conftest import IN_CI, REPO_ROOT, find_free_port_block
from gymnasium import spaces
from onnx_helpers import assert_godot_interface
from play_helpers import ScriptRun, after, check_fields, episode_rewards, of_kind, run_to_end
from script_helpers import (
    interrupt,
    metric_lines,
    processes_matching,
    run_script,
    start_script,
    wait_for_line,
)
from wire_helpers import RawTrainer

from godot_rl_cli.demos.files import demo_spaces, load_demonstrations

SB3 = "stable_baselines3_training_script.py"
RLLIB = "rllib_training_script.py"
FAST = ("--fixed-fps", "2000", "--disable-render-loop", "--headless")
PLAYBACK_SPEED = ("--speedup=8", "--framerate=2000")


@pytest.fixture(scope="module", autouse=True)
def godot4_engine() -> Iterator[str]:
    """The engine the game launchers use, exported as GODOT4 for every process the tests start."""
    engine = os.environ.get("GODOT4") or str(REPO_ROOT / ".godot4" / "godot4")
    if shutil.which(engine) is None:
        message = f"no Godot 4 engine at {engine} (run: bash scripts/install_godot4.sh, or set GODOT4)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GODOT4", str(Path(engine).resolve()))
        yield engine


@pytest.fixture(scope="module")
def games(tmp_path_factory) -> SimpleNamespace:
    """The Godot 4 examples copied under a directory whose name contains spaces, as users' paths often do."""
    target = tmp_path_factory.mktemp("godot4") / "my games" / "godot 4"
    shutil.copytree(REPO_ROOT / "examples" / "godot4", target, symlinks=True)
    yield SimpleNamespace(
        ballchase=str(target / "BallChase.x86_64"),
        pong=str(target / "Pong.x86_64"),
        pong_duel=str(target / "PongDuel.x86_64"),
    )
    time.sleep(0.5)
    assert processes_matching(str(target)) == [], "a Godot 4 engine outlived the module's tests"


def engine_pids(port: int) -> List[int]:
    """Live Godot 4 engines started for the game on `port` (the launchers exec the engine: one process)."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if (
            state != "Z"
            and any(arg.endswith(b"/godot") for arg in argv)
            and f"--port={port}".encode() in argv
        ):
            pids.append(int(pid))
    return pids


def assert_no_engine_left(port: int, n_games: int = 1) -> None:
    time.sleep(0.5)
    for index in range(n_games):
        assert engine_pids(port + index) == [], (
            f"the Godot 4 engine for port {port + index} outlived its script"
        )


def sb3_args(directory: Path, game: str, port: int, timesteps: int, n_parallel: int = 1) -> List[str]:
    return [
        f"--env_path={game}",
        f"--experiment_dir={directory / 'exp'}",
        "--experiment_name=run",
        f"--timesteps={timesteps}",
        f"--n_parallel={n_parallel}",
        f"--port={port}",
        "--speedup=8",
        "--framerate=2000",
        "--seed=1",
    ]


def metrics_env() -> dict:
    return dict(os.environ, CONTROLLER_METRICS="1")


# --- the games themselves ----------------------------------------------------------------------------


def test_ballchase_speaks_the_plugin_protocol_like_its_simulated_twin(games):
    trainer = RawTrainer(games.ballchase, *FAST, env_seed=7, n_agents=3)
    try:
        info, reset = trainer.connect(timeout=30)
        assert info["type"] == "env_info" and info["n_agents"] == 3
        assert info["agent_policy_names"] == ["shared_policy"] * 3
        assert info["observation_space"] == [{"obs": {"size": [4], "space": "box"}}] * 3
        assert info["action_space"] == [{"move": {"size": 2, "action_type": "continuous"}}] * 3
        assert reset["type"] == "reset" and [len(obs["obs"]) for obs in reset["obs"]] == [4, 4, 4]
        start = [obs["obs"][2:] for obs in reset["obs"]]
        moves = [{"move": [1.0, 0.0]}, {"move": [0.0, 0.0]}, {"move": [-1.0, 0.0]}]
        dones = []
        for _ in range(60):  # 480 physics ticks: more than the arena's width at full speed
            trainer.send({"type": "action", "action": moves})
            step = trainer.receive()
            assert step["type"] == "step" and len(step["reward"]) == len(step["done"]) == 3
            dones.append(step["done"])
        end = [obs["obs"][2:] for obs in step["obs"]]
        assert end[0][0] == 1.0 and end[2][0] == -1.0, "the arena's edges stop the runners"
        assert end[1] == pytest.approx(start[1]), "the idle player stays put"
        assert not any(any(flags) for flags in dones), "an episode lasts 100 steps"
        assert set(step["info"][0]) == {"targets_reached", "distance"}
        trainer.send({"type": "call", "method": "get_info"})
        assert trainer.receive()["returns"][1]["distance"] == pytest.approx(step["info"][1]["distance"])
        trainer.conn.close()
        trainer.conn = None
        assert trainer.proc.wait(timeout=10) == 0, "the game quits when the trainer goes away"
        assert b"the trainer went away" in trainer.proc.stdout.read()
    finally:
        trainer.close()


def test_pong_has_two_policies_and_discrete_actions(games):
    trainer = RawTrainer(games.pong, *FAST)
    try:
        info, reset = trainer.connect(timeout=30)
        assert info["agent_policy_names"] == ["left_policy", "right_policy"]
        assert info["observation_space"] == [{"obs": {"size": [6], "space": "box"}}] * 2
        assert info["action_space"] == [{"move": {"size": 3, "action_type": "discrete"}}] * 2
        rewards, steps_to_done = [], None
        for index in range(300):
            trainer.send({"type": "action", "action": [{"move": 0}, {"move": 0}]})
            step = trainer.receive()
            rewards.append(step["reward"])
            if any(step["done"]):
                assert step["done"] == [True, True], "both paddles' episode ends together"
                steps_to_done = index + 1
                break
        assert steps_to_done is not None and steps_to_done <= 300
        assert min(min(pair) for pair in rewards) == -1.0, "a miss costs 1"
        trainer.send({"type": "close"})
        assert trainer.proc.wait(timeout=10) == 0
    finally:
        trainer.close()


def test_pong_duel_is_zero_sum_and_its_scripted_opponent_wins_against_a_still_paddle(games):
    """The duel's rules as its simulated twin's: `opponent=scripted` leaves one agent; a miss is -1 for the
    side that missed (+1 for the other, a hit earns nothing); three points end it and `won` says who won."""
    trainer = RawTrainer(games.pong_duel, *FAST, opponent="scripted", opponent_skill="1.0")
    try:
        info, reset = trainer.connect(timeout=30)
        assert info["agent_policy_names"] == ["left_policy"]
        assert reset["info"] == [{"hits": 0, "points": 0, "opponent_points": 0, "won": 0}]
        rewards = []
        for _ in range(300):
            trainer.send({"type": "action", "action": [{"move": 0}]})
            step = trainer.receive()
            rewards += [reward for reward in step["reward"] if reward]
            if step["done"][0]:
                break
        assert step["done"] == [True] and rewards == [-1.0, -1.0, -1.0]
        assert step["info"][0]["opponent_points"] == 3 and step["info"][0]["won"] == -1
        trainer.send({"type": "close"})
        assert trainer.proc.wait(timeout=10) == 0
        assert b"PongDuel: connected" in trainer.proc.stdout.read()
    finally:
        trainer.close()


def test_ballchase_records_its_experts_demos_in_the_plugins_layout(games, tmp_path):
    path = tmp_path / "expert demos.json"
    result = subprocess.run(
        [games.ballchase, *FAST, "--speedup=8", f"--record_demos={path}", "--demo_episodes=3"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    episodes = json.loads(path.read_text())
    assert len(episodes) == 3 and all(len(episode) == 2 for episode in episodes)
    for observations, actions in episodes:
        assert len(observations) == len(actions) + 1 and len(actions) >= 99
        assert all(len(obs) == 4 for obs in observations) and all(len(act) == 2 for act in actions)
        assert all(-1.0 <= value <= 1.0 for act in actions for value in act)
        distances = [np.hypot(obs[0], obs[1]) for obs in observations[:20]]
        assert min(distances) < distances[0], "the expert closes in on its target"
    assert "wrote 3 demo episodes" in result.stdout
    # the suite's demo reader takes the recording against the game's spaces (as the trainers check it)
    observation_space = spaces.Dict({"obs": spaces.Box(-1.0, 1.0, (4,), np.float32)})
    action_heads = spaces.Dict({"move": spaces.Box(-1.0, 1.0, (2,), np.float32)})
    demos = load_demonstrations([str(path)], demo_spaces(observation_space, action_heads, "BallChase"))
    assert demos.episodes == 3 and demos.steps == sum(len(actions) for _, actions in episodes)
    assert demos.actions.shape == (demos.steps, 2)


# --- Stable-Baselines3 --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sb3_run(games, tmp_path_factory) -> SimpleNamespace:
    """PPO on BallChase: 2 games of 4 players, --framerate, an evaluation game, an ONNX export; the second
    game's engine crashes once (at its step 301 of 512) and is relaunched."""
    directory = tmp_path_factory.mktemp("sb3")
    port = find_free_port_block(4)
    args = sb3_args(directory, games.ballchase, port, 4096, n_parallel=2) + [
        "--game_arg=n_agents=4",
        "--eval_freq=2048",
        "--eval_episodes=1",
        f"--onnx_export_path={directory / 'ballchase.onnx'}",
        "--max_env_restarts=1",
        "--game_arg=crash_after_steps=300",
        "--game_arg=fault_seed=2",  # --seed=1: the games have seeds 1, 2 and the evaluation game 3
    ]
    result = run_script(SB3, *args, cwd=directory, env=metrics_env(), timeout=240)
    return SimpleNamespace(
        directory=directory, port=port, result=result, model=directory / "exp" / "run_final.zip"
    )


def test_sb3_trains_two_real_games_with_rising_reward(sb3_run):
    result = sb3_run.result
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Game ready: 8 agent(s) in 2 process(es)" in result.stdout
    samples = metric_lines(result.stdout)
    assert samples[-1]["timesteps_total"] >= 4096
    rewards = [
        sample["episode_reward_mean"] for sample in samples if sample["episode_reward_mean"] is not None
    ]
    early, late = np.mean(rewards[:2]), np.mean(rewards[-2:])
    assert late > early + 5, f"mean episode reward went from {early:.1f} to {late:.1f}"
    finished = [sample for sample in samples if sample["episodes_this_iter"] > 0]
    assert finished[0]["episode_len_mean"] == 100.0, "episodes last 100 steps (until the crash cuts one)"
    assert {"distance", "targets_reached"} <= set(finished[-1]["custom_metrics"])
    assert zipfile.is_zipfile(sb3_run.model)
    assert_no_engine_left(sb3_run.port, 3)


def test_sb3_evaluates_on_its_own_real_game(sb3_run):
    port, result = sb3_run.port, sb3_run.result
    assert f"[game:{port + 2}] BallChase: connected to 127.0.0.1:{port + 2}" in result.stdout
    evaluated = [sample for sample in metric_lines(result.stdout) if "eval_reward_mean" in sample]
    assert len(evaluated) >= 2 and all(sample["eval_episode_len_mean"] == 100.0 for sample in evaluated)


def test_sb3_export_verifies(sb3_run):
    assert_godot_interface(sb3_run.directory / "ballchase.onnx", ["obs"])


def test_sb3_survives_an_engine_crash_with_a_restart(sb3_run):
    result = sb3_run.result
    assert f"[game:{sb3_run.port + 1}] simulated engine crash after 300 steps" in result.stdout
    assert "restarting it (1 of --max_env_restarts 1)" in result.stderr
    assert metric_lines(result.stdout)[-1]["env_restarts"] == 1


def test_sb3_resumes_survives_a_hang_and_sigint_saves_and_stops_the_engine(sb3_run, games, tmp_path):
    """Resumed from the trained model; the engine hangs after 100 steps, is relaunched, then SIGINT."""
    port = find_free_port_block(2)
    args = sb3_args(tmp_path, games.ballchase, port, 10_000_000) + [
        f"--resume_model_path={sb3_run.model}",
        "--step_timeout=2",
        "--max_env_restarts=5",
        "--game_arg=hang_after_steps=100",
    ]
    process = start_script(SB3, *args, cwd=tmp_path, env=metrics_env())
    try:
        stdout = "".join(wait_for_line(process, "@METRIC ", timeout=90))
        samples = metric_lines(stdout)
        while samples[-1]["env_restarts"] == 0:
            lines = "".join(wait_for_line(process, "@METRIC ", timeout=60))
            stdout += lines
            samples += metric_lines(lines)
        assert len(engine_pids(port)) == 1
        rest, stderr = interrupt(process)
    finally:
        process.kill()
    assert process.returncode == 0, stderr[-3000:]
    assert samples[0]["timesteps_total"] > 4096, "the counters continue from the model"
    assert f"[game:{port}] simulated hang after 100 steps" in stdout + rest
    assert "restarting it (1 of --max_env_restarts 5)" in stderr
    assert zipfile.is_zipfile(tmp_path / "exp" / "run_final.zip")
    assert_no_engine_left(port)


# --- playback: the simulator and the interfaces --------------------------------------------------------


def test_simulator_streams_from_the_real_engine_and_stops_on_sigint(games, tmp_path):
    port = find_free_port_block(1)
    args = ["--mode=single", f"--env-path={games.ballchase}", "--headless", f"--port={port}", *PLAYBACK_SPEED]
    run = ScriptRun("simulator.py", *args, "--game_arg", "n_agents=2", cwd=tmp_path)
    try:
        run.wait_for(after("episode_end", 2), timeout=90)
        run.interrupt()
    finally:
        run.close()
    assert run.process.returncode == 0, run.stderr[-2000:]
    events, actions = run.parsed()
    check_fields(events, actions)
    [connected] = of_kind(events, "connected")
    assert connected["agents"] == 2
    assert all(end["steps"] == 100 for end in of_kind(events, "episode_end"))
    assert {row["agent"] for action in actions for row in action["agents"]} == {"agent_0", "agent_1"}
    assert of_kind(events, "status")[-1]["message"].startswith("Simulator stopped")
    assert_no_engine_left(port)


def test_sb3_zip_and_its_onnx_play_alike_on_the_real_engine(sb3_run, games, tmp_path):
    """Deterministic actions, seeded deterministic game: the model and its export earn equal rewards."""
    port = find_free_port_block(1)
    rewards = []
    for agent in (sb3_run.model, sb3_run.directory / "ballchase.onnx"):
        args = [
            str(agent),
            "--mode=single",
            f"--env-path={games.ballchase}",
            "--max-episodes=1",
            *PLAYBACK_SPEED,
            f"--port={port}",
        ]
        code, events, _, stderr = run_to_end("interface_sb3_raw.py", *args, cwd=tmp_path)
        assert code == 0, stderr[-2000:]
        rewards.append(episode_rewards(events))
    assert len(rewards[0]) == 1 and rewards[1][0] == pytest.approx(rewards[0][0], abs=1e-3)
    assert_no_engine_left(port)


# --- RLlib ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rllib_run(games, tmp_path_factory) -> SimpleNamespace:
    """PPO on Pong with its two policies (one Ray, started by the training script), exported to ONNX."""
    directory = tmp_path_factory.mktemp("rllib")
    port = find_free_port_block(1)
    config = {
        "algorithm": "PPO",
        "env_config": {"env_path": games.pong, "port": port, "speedup": 8, "framerate": 2000},
        "checkpoint_frequency": 1,
        "stop": {"training_iteration": 2},
        "num_workers": 0,
        "rollout_fragment_length": 200,
        "train_batch_size": 400,
        "sgd_minibatch_size": 100,
        "num_sgd_iter": 2,
        "model": {"fcnet_hiddens": [16, 16]},
    }
    (directory / "pong.yaml").write_text(yaml.safe_dump(config))
    experiment = directory / "exp"
    result = run_script(
        RLLIB, "--config_file=pong.yaml", f"--experiment_dir={experiment}", cwd=directory, env=metrics_env()
    )
    assert result.returncode == 0, result.stderr[-3000:]
    [trial] = [path.parent for path in experiment.glob("*/*/run_manifest.json")]
    export = run_script("convert_rllib_to_onnx.py", str(trial), "-o", str(directory / "onnx"), cwd=directory)
    assert export.returncode == 0, export.stderr[-3000:]
    return SimpleNamespace(port=port, result=result, trial=trial, onnx=directory / "onnx")


def test_rllib_trains_the_two_policy_game(rllib_run):
    samples = metric_lines(rllib_run.result.stdout)
    assert [sample["training_iteration"] for sample in samples] == [1, 2]
    assert all(set(sample["policies"]) == {"left_policy", "right_policy"} for sample in samples)
    assert samples[-1]["episodes_total"] > 0
    assert len(list(rllib_run.trial.glob("checkpoint_*"))) == 2
    assert_no_engine_left(rllib_run.port)


def test_rllib_exports_verify(rllib_run):
    assert sorted(path.name for path in rllib_run.onnx.glob("*.onnx")) == [
        "left_policy.onnx",
        "right_policy.onnx",
    ]
    for path in rllib_run.onnx.glob("*.onnx"):
        assert_godot_interface(path, ["obs"])


def test_rllib_checkpoint_plays_the_real_engine(rllib_run, games, tmp_path):
    port = find_free_port_block(1)
    args = ["--mode=multi", f"--env-path={games.pong}", "--max-episodes=1", f"--port={port}", *PLAYBACK_SPEED]
    code, events, actions, stderr = run_to_end(
        "interface_rllib_raw.py", str(rllib_run.trial), *args, cwd=tmp_path
    )
    assert code == 0, stderr[-2000:]
    assert {(row["agent"], row["policy"]) for action in actions for row in action["agents"]} == {
        ("0", "left_policy"),
        ("1", "right_policy"),
    }
    assert all(row["action"]["move"] in (0, 1, 2) for action in actions for row in action["agents"])
    assert_no_engine_left(port)


# --- RLlib self-play ------------------------------------------------------------------------------------

SELF_PLAY_ITERATIONS = 2


@pytest.fixture(scope="module")
def self_play_run(games, tmp_path_factory) -> SimpleNamespace:
    """The shipped examples/self_play_pong_godot4.yaml, small: one game, 2 iterations of 200 steps, a snapshot
    every iteration, a window of 2, every episode against a snapshot (ratio 0: each one is rated; the share of
    episodes against the latest learner is test_self_play's), who won by the game's `won` info."""
    directory = tmp_path_factory.mktemp("self_play")
    config = yaml.safe_load((REPO_ROOT / "examples" / "self_play_pong_godot4.yaml").read_text())
    config["env_config"].update(env_path=games.pong_duel, port=find_free_port_block(1))
    config["self_play"].update(snapshot_every=1, window=2, play_against_latest_model_ratio=0.0)
    config.update(
        checkpoint_frequency=1,
        stop={"training_iteration": SELF_PLAY_ITERATIONS},
        num_envs_per_worker=1,
        rollout_fragment_length=100,
        train_batch_size=400,
        sgd_minibatch_size=100,
        num_sgd_iter=2,
        model={"fcnet_hiddens": [16, 16]},
    )
    (directory / "duel.yaml").write_text(yaml.safe_dump(config))
    experiment = directory / "exp"
    result = run_script(
        RLLIB,
        "--config_file=duel.yaml",
        f"--experiment_dir={experiment}",
        "--torch_threads=1",
        cwd=directory,
        env=metrics_env(),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    [trial] = [path.parent for path in experiment.glob("*/*/run_manifest.json")]
    return SimpleNamespace(port=config["env_config"]["port"], result=result, trial=trial)


def test_self_play_snapshots_the_learner_on_the_real_engine(self_play_run):
    found = sorted(self_play_run.trial.glob("checkpoint_*"))
    assert len(found) == SELF_PLAY_ITERATIONS
    for iteration, checkpoint in enumerate(found, start=1):
        league = json.loads((checkpoint / "self_play.json").read_text())
        assert league["snapshots"] == [f"left_policy_it{iteration - 1}", f"left_policy_it{iteration}"]
        assert set(league["snapshots"]) <= {path.name for path in (checkpoint / "policies").iterdir()}
    assert f"[game:{self_play_run.port}] PongDuel: connected" in self_play_run.result.stdout
    assert_no_engine_left(self_play_run.port)


def test_self_play_league_rates_the_real_games_outcomes(self_play_run):
    """The game's `won` info decides each episode; the learner's record and Elo on @METRIC lines follow."""
    samples = metric_lines(self_play_run.result.stdout)
    assert [sample["training_iteration"] for sample in samples] == [1, 2]
    for sample in samples:
        league = sample["self_play"]
        assert league["learner"] == "left_policy" and league["opponent"].startswith("left_policy_it")
        assert sample["policies"]["left_policy"]["elo"] == league["elo"]
    last, league = samples[-1], samples[-1]["self_play"]
    rated = league["wins"] + league["draws"] + league["losses"]
    assert rated == last["episodes_total"] > 0 and league["episodes_vs_latest"] == 0
    # every episode so far is in the smoothing window: the mean of the game's `won` is the league's record
    won = last["policies"]["left_policy"]["custom_metrics"]["won"]
    assert won == pytest.approx((league["wins"] - league["losses"]) / rated)
    assert league["elo"] != 1200.0 or league["draws"] == rated
