"""RobustGodotEnv: every protocol fault ends in a clear GameError within seconds, and no game outlives its
trainer."""

import shutil
import signal
import socket
import subprocess
import textwrap
import time

import numpy as np
import pytest
from conftest import PYTHON, REPO_ROOT, SIM_DIR, find_free_port_block
from script_helpers import processes_matching

from godot_rl_cli.errors import UserError
from godot_rl_cli.game import (
    GameConnectError,
    GameDiedError,
    GameHungError,
    GameProtocolError,
    GameSettings,
    RobustGodotEnv,
    StopRequested,
    clear_stop_request,
    request_stop,
)

BALLCHASE = str(SIM_DIR / "BallChase.x86_64")
ACTION = np.zeros((1, 1, 2), np.float32)


def run_until_error(steps: int = 20, step_timeout: float = 3.0, **game_args):
    env = RobustGodotEnv(
        GameSettings(
            env_path=BALLCHASE, port=find_free_port_block(1), step_timeout=step_timeout, game_args=game_args
        )
    )
    try:
        env.reset()
        for _ in range(steps):
            env.step(ACTION, order_ij=True)
    finally:
        env.close()
        assert env.proc.poll() is not None, "close() must end the game"


@pytest.mark.parametrize(
    "fault,error,message",
    [
        ("truncated", GameDiedError, "closed the connection"),
        ("oversized", GameProtocolError, "announced a"),
        ("wrong_type", GameProtocolError, "'reset' message where 'step' was expected"),
        ("missing_fields", GameProtocolError, "'reward' that is not a list"),
        ("wrong_shape", GameProtocolError, "that is not a list of 1 values"),
        ("bad_info", GameProtocolError, "'info' entry that is not a JSON object"),
        ("garbage", GameProtocolError, "not UTF-8"),
        ("out_of_order", GameProtocolError, "nobody asked for"),
        ("not_object", GameProtocolError, "not a JSON object"),
    ],
)
def test_protocol_fault_is_a_clear_error_within_seconds(fault, error, message):
    started = time.monotonic()
    with pytest.raises(error, match=message) as raised:
        run_until_error(step_timeout=30, fault=fault, fault_after_steps=3)
    assert time.monotonic() - started < 10, "the fault is seen at once, not after the 30 s step timeout"
    assert "BallChase.x86_64" in str(raised.value) and "\n" not in str(raised.value)


def test_non_ascii_text_is_valid_protocol():
    env = RobustGodotEnv(
        GameSettings(
            env_path=BALLCHASE,
            port=find_free_port_block(1),
            game_args={"fault": "non_ascii", "fault_after_steps": 0},
        )
    )
    try:
        env.reset()
        info = env.step(ACTION, order_ij=True)[4]
        assert info[0]["label"] == "Überraschung ✓ 日本"
    finally:
        env.close()


@pytest.mark.parametrize(
    "game_args,error,message",
    [
        (
            {"crash_after_steps": 3},
            GameDiedError,
            r"closed the connection \(exit code 3; last output: .*simulated engine crash",
        ),
        ({"hang_after_steps": 3}, GameHungError, "sent nothing for 1.5 s"),
        ({"bad_json_after_steps": 3}, GameProtocolError, "sent invalid JSON"),
        ({"nan_reward_after_steps": 3}, GameProtocolError, "non-finite number .* in 'reward'"),
    ],
)
def test_game_faults(game_args, error, message):
    started = time.monotonic()
    with pytest.raises(error, match=message):
        run_until_error(step_timeout=1.5, **game_args)
    # Far below the 60 s default timeout, with room for a game start on a loaded machine.
    assert time.monotonic() - started < 20, "within the 1.5 s step timeout and a game start"


def test_never_connecting_game_names_path_and_port():
    port = find_free_port_block(1)
    started = time.monotonic()
    with pytest.raises(
        GameConnectError, match=f"BallChase.x86_64 on port {port} did not connect within 1.5 s"
    ):
        RobustGodotEnv(
            GameSettings(env_path=BALLCHASE, port=port, connect_timeout=1.5, game_args={"never_connect": 1})
        )
    assert time.monotonic() - started < 12, "the 1.5 s connect timeout, not the default one"
    time.sleep(0.2)
    assert processes_matching(f"--port={port} ") == []


def test_busy_port_is_a_user_error_before_the_game_starts():
    port = find_free_port_block(1)
    with socket.create_server(("127.0.0.1", port)):
        with pytest.raises(UserError, match=f"port {port} on 127.0.0.1 is already in use"):
            RobustGodotEnv(GameSettings(env_path=BALLCHASE, port=port))
    assert processes_matching(f"--port={port} ") == []


def test_stop_request_abandons_a_wait_on_a_silent_game():
    env = RobustGodotEnv(
        GameSettings(
            env_path=BALLCHASE,
            port=find_free_port_block(1),
            step_timeout=60,
            game_args={"hang_after_steps": 0},
        )
    )
    try:
        env.reset()
        env.step_send(ACTION, order_ij=True)
        request_stop()
        started = time.monotonic()
        with pytest.raises(StopRequested):
            env.step_recv()
        assert time.monotonic() - started < 1
    finally:
        clear_stop_request()
        env.close()


def test_send_to_a_game_that_stopped_reading_is_bounded():
    """A hung game stops reading: once the socket buffers are full, a send waits at most step_timeout, and a
    stop request ends that wait at once."""
    env = RobustGodotEnv(
        GameSettings(
            env_path=BALLCHASE,
            port=find_free_port_block(1),
            step_timeout=1,
            game_args={"hang_after_steps": 0},
        )
    )
    big = "x" * (32 * 1024 * 1024)  # more than the kernel buffers both ways hold
    try:
        env.reset()
        env.step_send(ACTION, order_ij=True)
        started = time.monotonic()
        with pytest.raises(GameHungError, match="accepted no data for 1 s"):
            env.connection.send(big)
        assert 1 <= time.monotonic() - started < 3
        request_stop()
        started = time.monotonic()
        with pytest.raises(StopRequested):
            env.connection.send(big)
        assert time.monotonic() - started < 1
    finally:
        clear_stop_request()
        env.kill_game()  # it would not read the close message
        env.close()


def test_env_path_with_spaces(tmp_path):
    folder = tmp_path / "My Games" / "ball chase"
    folder.mkdir(parents=True)
    for name in ("BallChase.x86_64", "godot_sim.py"):
        shutil.copy2(SIM_DIR / name, folder / name)
    env = RobustGodotEnv(
        GameSettings(env_path=str(folder / "BallChase.x86_64"), port=find_free_port_block(1))
    )
    try:
        obs, _ = env.reset()
        assert len(obs[0]["obs"]) == 4
    finally:
        env.close()


def test_game_dies_with_a_killed_trainer():
    port = find_free_port_block(1)
    trainer = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(REPO_ROOT)!r})
        from godot_rl_cli.game import GameSettings, RobustGodotEnv
        env = RobustGodotEnv(GameSettings(env_path={BALLCHASE!r}, port={port}))
        print("ready", flush=True)
        time.sleep(60)
        """
    )
    process = subprocess.Popen(
        [PYTHON, "-c", trainer], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        lines = iter(process.stdout.readline, "")  # the game's relayed output shares the trainer's stdout
        assert "ready" in (line.strip() for line in lines)
        assert processes_matching(f"--port={port} ")
        process.send_signal(signal.SIGKILL)
        process.wait()
        deadline = time.monotonic() + 5
        while processes_matching(f"--port={port} ") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert processes_matching(f"--port={port} ") == []
    finally:
        process.kill()


def test_debug_panel_that_fails_is_one_warning_line(capsys):
    from godot_rl_cli.game.debug_panel import print_debug_panel

    env = RobustGodotEnv(
        GameSettings(
            env_path=BALLCHASE,
            port=find_free_port_block(1),
            game_args={"fault": "wrong_shape", "fault_after_steps": 0},
        )
    )
    try:
        print_debug_panel(env, "test")
    finally:
        env.close()
    captured = capsys.readouterr()
    assert "=== end of debug panel ===" not in captured.out
    [warning] = captured.err.splitlines()
    assert (
        warning.startswith("WARNING: debug panel failed: GameProtocolError: game ") and "BallChase" in warning
    )
