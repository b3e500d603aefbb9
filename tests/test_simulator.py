"""simulator.py run as the controller runs it, on the example games: argv, lines, SIGINT, crashes, leaks."""

import json
import shutil
import signal
import subprocess
import time

import pytest
from conftest import IN_CI, PYTHON, REPO_ROOT, SIM_DIR, find_free_port_block
from play_helpers import (
    ScriptRun,
    after,
    assert_no_game_left,
    of_kind,
    parse_lines,
    run_to_end,
    stop_with_sigint,
)
from script_helpers import processes_matching

from godot_rl_cli.play.lines import ActionLineLimiter, LineWriter, compact_observation
from godot_rl_cli.play.loop import EpisodeTracker, agent_ids, resolve_mode

SCRIPT = "simulator.py"
BALLCHASE = str(SIM_DIR / "BallChase.x86_64")
PONG = str(SIM_DIR / "Pong.x86_64")


def test_controller_tui_argv_single_mode_stops_within_a_second_on_sigint(tmp_path):
    port = find_free_port_block(1)
    args = [
        "--mode=single",
        f"--env-path={BALLCHASE}",
        "--headless",
        "--restart-delay=2.0000",
        f"--port={port}",
        "--game_arg",
        "n_agents=2",
    ]
    run = ScriptRun(SCRIPT, *args, cwd=tmp_path)
    events, actions = stop_with_sigint(run, after("episode_end", 3))
    assert [e["kind"] for e in events[:2]] == ["settings", "status"]
    settings = events[0]
    assert (
        settings["mode"] == "single"
        and settings["env_path"] == BALLCHASE
        and settings["show_window"] is False
    )
    assert settings["restart_delay"] == 2.0 and settings["auto_restart"] is True and settings["seed"] == 0
    [connected] = of_kind(events, "connected")
    assert connected["attempt"] == 1 and connected["mode"] == "single" and connected["agents"] == 2
    assert {row["agent"] for action in actions for row in action["agents"]} == {"agent_0", "agent_1"}
    assert all(
        row["policy"] == "shared_policy" and set(row["action"]) == {"move"}
        for action in actions
        for row in action["agents"]
    )
    ends = of_kind(events, "episode_end")
    assert all(end["steps"] == 100 and set(end["rewards"]) == {"agent_0", "agent_1"} for end in ends)
    for end in ends:  # the step where an episode ends is always written
        [last] = [a for a in actions if a["episode"] == end["episode"] and a["step"] == end["steps"]]
        assert all(row["terminated"] and not row["truncated"] for row in last["agents"])
    assert of_kind(events, "status")[-1]["message"].startswith("Simulator stopped")
    assert "Traceback" not in run.stderr
    assert_no_game_left(port)


def test_controller_cli_argv_auto_picks_multi_for_two_policies_and_exits_after_max_episodes(tmp_path):
    port = find_free_port_block(1)
    args = [
        "--mode",
        "auto",
        "--seed",
        "0",
        "--step-delay",
        "0",
        "--restart-delay",
        "2",
        "--env-path",
        PONG,
        "--show-window",
        "--headless",
        "--max-episodes",
        "2",
        "--port",
        str(port),
    ]
    code, events, actions, stderr = run_to_end(SCRIPT, *args, cwd=tmp_path)
    assert code == 0, stderr[-2000:]
    assert of_kind(events, "warning")[0]["message"].startswith("both --show-window and --headless")
    [connected] = of_kind(events, "connected")
    assert connected["mode"] == "multi" and connected["agent_policy_names"] == ["left_policy", "right_policy"]
    rows = [row for action in actions for row in action["agents"]]
    assert {(row["agent"], row["policy"]) for row in rows} == {("0", "left_policy"), ("1", "right_policy")}
    assert all(
        isinstance(row["action"]["move"], int) and {"hits", "misses"} <= set(row["info"]) for row in rows
    )
    ends = of_kind(events, "episode_end")
    assert [end["episode"] for end in ends] == [1, 2] and all(
        set(end["rewards"]) == {"0", "1"} for end in ends
    )
    assert_no_game_left(port)


def test_step_limit_truncates_and_action_lines_are_rate_limited(tmp_path):
    port = find_free_port_block(1)
    args = [
        "--mode=multi",
        f"--env-path={BALLCHASE}",
        "--max-steps=30",
        "--max-episodes=3",
        f"--port={port}",
        "--game_arg=n_agents=3",
    ]
    code, events, actions, stderr = run_to_end(SCRIPT, *args, cwd=tmp_path)
    assert code == 0, stderr[-2000:]
    ends = of_kind(events, "episode_end")
    assert [(end["episode"], end["steps"], end["truncated"]) for end in ends] == [
        (1, 30, True),
        (2, 30, True),
        (3, 30, True),
    ]
    assert all(end["lengths"] == {"0": 30, "1": 30, "2": 30} for end in ends)
    last_steps = [action for action in actions if action["step"] == 30]
    assert len(last_steps) == 3 and all(
        row["truncated"] and not row["terminated"] for a in last_steps for row in a["agents"]
    )
    times = [action["timestamp"] for action in actions]
    assert all(later - earlier >= 0.045 for earlier, later in zip(times, times[1:])), (
        "at most 20 action lines a second"
    )
    assert sum(action.get("skipped_steps", 0) for action in actions) + len(actions) == 90


def test_game_crash_is_an_event_and_the_game_restarts(tmp_path):
    port = find_free_port_block(1)
    args = [
        f"--env-path={BALLCHASE}",
        "--restart-delay=0.2",
        "--max-episodes=2",
        f"--port={port}",
        "--game_arg",
        "crash_after_steps=150",
    ]
    code, events, _, stderr = run_to_end(SCRIPT, *args, cwd=tmp_path)
    assert code == 0, stderr[-2000:]
    [error] = of_kind(events, "error")
    assert (
        "BallChase.x86_64" in error["message"]
        and "exit code 3" in error["message"]
        and "traceback" not in error
    )
    assert any(
        e["kind"] == "status" and e["message"].startswith("Restarting the simulator in 0.2 s") for e in events
    )
    assert [e["attempt"] for e in of_kind(events, "connected")] == [1, 2]
    assert [e["episode"] for e in of_kind(events, "episode_end")] == [1, 3], (
        "episode 2 was cut short by the crash"
    )
    assert "Traceback" not in stderr
    assert_no_game_left(port)


def test_no_auto_restart_exits_1_with_the_traceback_only_when_asked(tmp_path):
    port = find_free_port_block(1)
    args = [
        f"--env-path={BALLCHASE}",
        "--no-auto-restart",
        "--log-tracebacks",
        f"--port={port}",
        "--game_arg",
        "crash_after_steps=20",
    ]
    code, events, _, stderr = run_to_end(SCRIPT, *args, cwd=tmp_path)
    assert code == 1
    [error] = of_kind(events, "error")
    assert "GameDiedError" in error["traceback"] and "Traceback" in stderr
    assert not any("Restarting" in e.get("message", "") for e in events)
    assert_no_game_left(port)


def test_editor_case_waits_on_the_port_and_sigint_closes_the_game(tmp_path):
    port = find_free_port_block(1)
    game = subprocess.Popen(
        [BALLCHASE, f"--port={port}", "--n_agents=2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    run = ScriptRun(
        SCRIPT, "--mode=single", "--headless", "--restart-delay=2.0000", "--port", str(port), cwd=tmp_path
    )
    try:
        events, _ = stop_with_sigint(run, after("episode_end"))
        assert game.wait(timeout=5) == 0, "the game quits when the simulator closes it"
    finally:
        game.kill()
    assert any(
        "Waiting for the Godot editor on port" in e["message"] and "press Play" in e["message"]
        for e in events
    )
    [connected] = of_kind(events, "connected")
    assert connected["env_path"] is None and connected["agents"] == 2


def test_sigint_while_waiting_for_the_editor(tmp_path):
    port = find_free_port_block(1)
    run = ScriptRun(SCRIPT, "--mode", "auto", "--port", str(port), cwd=tmp_path)
    events, _ = stop_with_sigint(
        run, lambda events: any("press Play" in e.get("message", "") for e in events)
    )
    assert of_kind(events, "status")[-1]["message"].startswith("Simulator stopped")


@pytest.mark.parametrize(
    "fault,phase", [("hang_after_steps=5", "episode_start"), ("never_connect=1", "status")]
)
def test_sigint_while_the_game_hangs_or_never_connects_kills_it_within_a_second(tmp_path, fault, phase):
    """A game that cannot be told to close (hung, or started but not connected) is killed."""
    port = find_free_port_block(1)
    run = ScriptRun(SCRIPT, f"--env-path={BALLCHASE}", f"--port={port}", f"--game_arg={fault}", cwd=tmp_path)
    events, _ = stop_with_sigint(run, lambda events: of_kind(events, phase) and time.sleep(0.5) is None)
    assert not of_kind(events, "error") and not of_kind(events, "warning"), "a stop is not an error"
    assert_no_game_left(port)


def test_sigterm_and_a_vanished_reader_stop_the_run_too(tmp_path):
    port = find_free_port_block(1)
    run = ScriptRun(SCRIPT, f"--env-path={BALLCHASE}", f"--port={port}", "--step-delay=0.01", cwd=tmp_path)
    run.wait_for(after("episode_start"))
    run.process.send_signal(signal.SIGTERM)
    assert run.finish(timeout=5) == 0
    assert_no_game_left(port)
    # the controller quits without stopping the simulator: the pipe breaks and the simulator stops
    process = subprocess.Popen(
        [PYTHON, str(REPO_ROOT / SCRIPT), f"--env-path={BALLCHASE}", f"--port={port}"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stdout.readline().startswith(b"@SIM_EVENT ")
        process.stdout.close()
        assert process.wait(timeout=5) == 0
        assert b"Traceback" not in process.stderr.read()
    finally:
        process.kill()
    assert_no_game_left(port)


def test_lines_arrive_at_once_without_unbuffered_mode_and_sigkill_takes_the_game_along(tmp_path):
    port = find_free_port_block(1)
    run = ScriptRun(
        SCRIPT,
        f"--env-path={BALLCHASE}",
        "--step-delay=0.0500",
        f"--port={port}",
        cwd=tmp_path,
        unbuffered=False,
    )
    try:
        run.wait_for(lambda events: of_kind(events, "episode_start"), timeout=20)  # while the script runs
        assert run.process.poll() is None and processes_matching(f"--port={port} ")
        run.process.send_signal(signal.SIGKILL)
        run.process.wait()
        assert_no_game_left(port)
    finally:
        run.close()


def test_real_godot_engine(tmp_path):
    """The real Godot 3 example game (godot3-server), one policy per player, as fast as the engine goes."""
    if shutil.which("godot3-server") is None:
        if IN_CI:
            pytest.fail("godot3-server is not installed (.ci/run installs it)")
        pytest.skip("godot3-server is not installed (apt-get install godot3-server)")
    port = find_free_port_block(1)
    game = REPO_ROOT / "examples" / "godot3" / "BallChase2D.x86_64"
    args = [
        f"--env-path={game}",
        "--framerate=2000",
        "--game_arg=policy_mode=split",
        "--max-episodes=2",
        f"--port={port}",
    ]
    code, events, actions, stderr = run_to_end(SCRIPT, *args, cwd=tmp_path)
    assert code == 0, stderr[-2000:]
    assert of_kind(events, "connected")[0]["mode"] == "multi"
    assert {(row["agent"], row["policy"]) for a in actions for row in a["agents"]} == {
        ("0", "policy_0"),
        ("1", "policy_1"),
    }
    assert [end["steps"] for end in of_kind(events, "episode_end")] == [100, 100]
    assert_no_game_left(port)


def test_bad_command_lines_fail_fast_before_any_game(tmp_path):
    for args, code, text in [
        (["--no-such-flag"], 2, "unrecognized arguments"),
        (["--mode=both"], 2, "invalid choice"),
        (["--step-del=1"], 2, "unrecognized arguments"),  # no prefix matching
        (["--env-path=missing/Game.x86_64"], 1, "ERROR: env_path missing/Game.x86_64 does not exist"),
        ([f"--env-path={SIM_DIR / 'godot_sim.py'}"], 1, "does not end in .x86_64"),
    ]:
        started = time.monotonic()
        result = subprocess.run(
            [PYTHON, str(REPO_ROOT / SCRIPT), *args], cwd=tmp_path, capture_output=True, text=True, timeout=30
        )
        assert result.returncode == code and text in result.stderr, (args, result.returncode, result.stderr)
        assert time.monotonic() - started < 5
        if code == 1:
            assert result.stderr.count("ERROR:") == 1 and "Traceback" not in result.stderr
            events, _ = parse_lines(result.stdout, "SIM")
            assert [e["kind"] for e in events] == ["error"]
    help_text = subprocess.run(
        [PYTHON, str(REPO_ROOT / SCRIPT), "--help"], capture_output=True, text=True, timeout=30
    ).stdout
    assert "--max-episodes" in help_text and "20 action lines" in help_text


# --- pieces of the loop, in this process ------------------------------------------------------------


def test_episodes_of_agents_that_finish_at_different_steps():
    tracker = EpisodeTracker(["0", "1"])
    tracker.start()
    tracker.record([1.0, 2.0], [False, False], truncate=False)
    tracker.record([1.0, 2.0], [True, False], truncate=False)  # agent 0 finished; the game restarts it
    assert not tracker.ended
    tracker.record([5.0, 2.0], [False, True], truncate=False)
    assert (
        tracker.ended
        and tracker.rewards() == {"0": 2.0, "1": 6.0}
        and tracker.lengths_by_agent() == {"0": 2, "1": 3}
    )
    tracker.start()
    tracker.record([1.0, 1.0], [False, False], truncate=True)
    assert tracker.ended and tracker.rewards() == {"0": 6.0, "1": 1.0}, (
        "agent 0's new episode began a step earlier"
    )


def test_rate_limiter_skips_and_counts():
    now = [0.0]
    limiter = ActionLineLimiter(20, clock=lambda: now[0])
    assert limiter.admit() == 0
    now[0] = 0.01
    assert limiter.admit() is None and limiter.wait_time() == pytest.approx(0.04)
    now[0] = 0.02
    assert limiter.admit() is None
    now[0] = 0.05
    assert limiter.admit() == 2
    now[0] = 0.06
    assert limiter.admit(forced=True) == 0


def test_lines_are_strict_json_one_line_and_ascii_in_rows():
    import io

    stream = io.StringIO()
    writer = LineWriter("SIM", stream)
    writer.event("error", message="two\nlines", value=float("nan"))
    writer.action(
        {
            "agents": [
                {"agent": "0", "info": {"label": "Überraschung ✓", "x": float("inf")}, "action": {"move": 1}}
            ]
        }
    )
    events, actions = parse_lines(stream.getvalue(), "SIM")
    assert events[0]["message"] == "two lines" and events[0]["value"] is None
    assert actions[0]["agents"][0]["info"] == {"label": "\\xdcberraschung \\u2713", "x": None}
    assert json.dumps(actions[0]).isascii()


def test_compact_observation_fits_the_column():
    import numpy as np

    assert compact_observation({"obs": [0.12345, -0.00001, 1, 2]}) == [0.123, 0.0, 1.0, 2.0]
    assert compact_observation({"obs": list(range(20))}) == [0.0, 1.0, 2.0, 3.0, 4.0, "+15"]
    image = {"obs": [0.5], "camera_2d": np.zeros((36, 36, 1), np.uint8)}
    assert compact_observation(image) == {"obs": [0.5], "camera_2d": "uint8[36x36x1]"}


def test_modes():
    assert resolve_mode("auto", ["left_policy", "right_policy"]) == "multi"
    assert resolve_mode("auto", ["shared_policy"] * 3) == "single"
    assert resolve_mode("single", ["a", "b"]) == "single"
    assert agent_ids("single", 2) == ["agent_0", "agent_1"] and agent_ids("multi", 2) == ["0", "1"]
