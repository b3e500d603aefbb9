"""The example games, driven through godot-rl's own GodotEnv over real TCP, and their fault flags."""

import json
import math
import socket
import statistics
import time

import numpy as np
import pytest
from conftest import SIM_DIR, find_free_port_block
from godot_rl.core.godot_env import GodotEnv
from wire_helpers import RawTrainer


def game_path(name: str) -> str:
    return str(SIM_DIR / f"{name}.x86_64")


def open_env(name: str, **kwargs) -> GodotEnv:
    return GodotEnv(env_path=game_path(name), port=find_free_port_block(1), **kwargs)


def random_actions(env: GodotEnv, rng: np.random.Generator) -> np.ndarray:
    space = env.action_spaces[0]["move"]
    if hasattr(space, "n"):
        return rng.integers(0, space.n, size=(env.num_envs, 1))
    return rng.uniform(-1, 1, size=(env.num_envs, 1, space.shape[0])).astype(np.float32)


def roll(env: GodotEnv, steps: int, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    trace = [env.reset()[0]]
    for _ in range(steps):
        trace.append(env.step(random_actions(env, rng), order_ij=True)[:3])
    return trace


@pytest.mark.parametrize(
    "name,obs_shapes,action,policies",
    [
        ("BallChase", {"obs": (4,)}, ("continuous", 2), ["shared_policy"]),
        ("BallChaseDiscrete", {"obs": (4,)}, ("discrete", 5), ["shared_policy"]),
        ("BallChaseCamera", {"obs": (4,), "camera_2d": (36, 36, 1)}, ("continuous", 2), ["shared_policy"]),
        ("Pong", {"obs": (6,)}, ("discrete", 3), ["left_policy", "right_policy"]),
    ],
)
def test_game_speaks_the_protocol_through_godot_env(name, obs_shapes, action, policies):
    env = open_env(name)
    try:
        assert env.num_envs == len(policies) and env.agent_policy_names == policies
        assert {key: space.shape for key, space in env.observation_space.spaces.items()} == obs_shapes
        head = env.action_spaces[0]["move"]
        assert (head.n if action[0] == "discrete" else head.shape[0]) == action[1]
        obs, _ = env.reset()
        assert len(obs) == len(policies)
        if "camera_2d" in obs_shapes:
            image = obs[0]["camera_2d"]
            assert image.dtype == np.uint8 and image.shape == (36, 36, 1) and image.max() == 255
        rng = np.random.default_rng(0)
        dones, infos = 0, []
        for _ in range(320):
            obs, reward, done, _, info = env.step(random_actions(env, rng), order_ij=True)
            assert len(reward) == len(done) == len(info) == len(policies)
            assert all(math.isfinite(value) for value in reward)
            dones += sum(done)
            infos = info
        assert dones >= len(policies), "episodes end inside the game"
        assert all(isinstance(value, (int, float)) for value in infos[0].values()) and infos[0]
        assert env.call("get_info") == infos
    finally:
        env.close()
    assert env.proc.wait(timeout=5) == 0


def test_n_agents_puts_several_agents_in_one_process():
    env = open_env("BallChase", n_agents=4)
    try:
        obs, _ = env.reset()
        assert env.num_envs == 4 and len(obs) == 4 and env.agent_policy_names == ["shared_policy"] * 4
    finally:
        env.close()


def test_same_seed_same_run_and_other_seed_differs():
    traces = []
    for seed in (3, 3, 4):
        env = open_env("BallChase", seed=seed, n_agents=2)
        try:
            traces.append(json.dumps(roll(env, 150), default=lambda value: np.asarray(value).tolist()))
        finally:
            env.close()
    assert traces[0] == traces[1] != traces[2]


def test_action_repeat_and_speedup_are_read():
    positions = {}
    for repeat in (1, 8):
        env = open_env("BallChase", action_repeat=repeat, seed=9)
        try:
            start = np.asarray(env.reset()[0][0]["obs"][2:])
            end = np.asarray(env.step(np.ones((1, 1, 2), np.float32), order_ij=True)[0][0]["obs"][2:])
            positions[repeat] = np.abs(end - start).max()
        finally:
            env.close()
    assert positions[8] == pytest.approx(positions[1] * 8, rel=0.01)


def test_crash_after_steps_exits_3_and_closes_socket():
    trainer = RawTrainer(game_path("BallChase"), crash_after_steps=5)
    try:
        trainer.connect()
        for _ in range(5):
            trainer.step()
            trainer.receive()
        trainer.step()
        with pytest.raises(ConnectionError):
            trainer.receive()
        assert trainer.proc.wait(timeout=5) == 3
        assert b"simulated engine crash" in trainer.proc.stderr.read()
    finally:
        trainer.close()


def test_hang_after_steps_stops_answering():
    trainer = RawTrainer(game_path("BallChase"), hang_after_steps=2)
    try:
        trainer.connect()
        for _ in range(2):
            trainer.step()
            trainer.receive()
        trainer.step()
        trainer.conn.settimeout(1.5)
        with pytest.raises(socket.timeout):
            trainer.receive()
        assert trainer.proc.poll() is None
    finally:
        trainer.close()


def test_never_connect():
    trainer = RawTrainer(game_path("BallChase"), never_connect=1)
    try:
        with pytest.raises(socket.timeout):
            trainer.connect(timeout=2)
        assert trainer.proc.poll() is None
    finally:
        trainer.close()


def test_bad_json_after_steps():
    trainer = RawTrainer(game_path("BallChase"), bad_json_after_steps=1)
    try:
        trainer.connect()
        trainer.step()
        trainer.receive()
        trainer.step()
        with pytest.raises(json.JSONDecodeError):
            json.loads(trainer.receive_raw())
    finally:
        trainer.close()


def test_nan_reward_after_steps():
    trainer = RawTrainer(game_path("BallChase"), nan_reward_after_steps=1)
    try:
        trainer.connect()
        trainer.step()
        assert math.isfinite(trainer.receive()["reward"][0])
        trainer.step()
        assert math.isnan(trainer.receive()["reward"][0])
    finally:
        trainer.close()


def test_step_cost_slows_each_physics_tick():
    """step_cost_ms=2 with action_repeat=4 adds 4 x 2 ms to each step (medians: a hiccup does not count)."""
    step_seconds = {}
    for cost in (0, 2):
        trainer = RawTrainer(game_path("BallChase"), step_cost_ms=cost, action_repeat=4)
        try:
            trainer.connect()
            durations = []
            for _ in range(20):
                started = time.perf_counter()
                trainer.step()
                trainer.receive()
                durations.append(time.perf_counter() - started)
            step_seconds[cost] = statistics.median(durations)
        finally:
            trainer.close()
    assert step_seconds[2] >= 4 * 0.002
    assert step_seconds[2] - step_seconds[0] >= 0.9 * 4 * 0.002, step_seconds


def test_game_quits_when_trainer_goes_away():
    trainer = RawTrainer(game_path("Pong"))
    try:
        trainer.connect()
        trainer.conn.close()
        trainer.conn = None
        assert trainer.proc.wait(timeout=5) == 0
    finally:
        trainer.close()


def test_close_message_quits_with_code_0():
    trainer = RawTrainer(game_path("BallChaseDiscrete"))
    try:
        trainer.connect()
        trainer.send({"type": "close"})
        assert trainer.proc.wait(timeout=5) == 0
    finally:
        trainer.close()
