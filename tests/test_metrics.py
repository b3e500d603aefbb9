"""The @METRIC emitter: strict JSON, enable switch, flushing through a pipe, thread safety."""

import json
import re
import subprocess
import threading
import time

import numpy as np
import pytest
from conftest import PYTHON, REPO_ROOT
from script_helpers import IDENTITY_FIELDS, SCHEMA_FIELDS, metric_lines

from godot_rl_cli import metrics


def emitted(capsys, payload, monkeypatch, value="1"):
    monkeypatch.setenv("CONTROLLER_METRICS", value)
    metrics.emit_metric(payload)
    return capsys.readouterr()


def test_non_finite_numbers_become_null_and_numpy_is_unwrapped(capsys, monkeypatch):
    payload = {
        "a": float("nan"),
        "b": [1.0, float("inf"), -float("inf")],
        "c": {"d": np.float32(2.5), "e": np.int64(7)},
        "f": np.array([[1.0, np.nan]]),
        "g": np.bool_(True),
        3: "int key",
    }
    out = emitted(capsys, payload, monkeypatch).out
    assert out.startswith("@METRIC ") and out.endswith("\n") and out.count("\n") == 1
    data = metric_lines(out)[0]
    assert data["a"] is None and data["b"] == [1.0, None, None]
    assert (
        data["c"] == {"d": 2.5, "e": 7}
        and data["f"] == [[1.0, None]]
        and data["g"] is True
        and data["3"] == "int key"
    )
    assert data["timestamp"].endswith("Z")


def test_unserialisable_value_is_dropped_with_a_warning(capsys, monkeypatch):
    captured = emitted(capsys, {"ok": 1, "bad": {"inner": object()}}, monkeypatch)
    assert metric_lines(captured.out)[0]["ok"] == 1
    assert "bad" in metric_lines(captured.out)[0] and metric_lines(captured.out)[0]["bad"] == {}
    assert "WARNING: metric bad.inner" in captured.err


def test_given_timestamp_is_kept(capsys, monkeypatch):
    out = emitted(capsys, {"timestamp": "2025-11-05T14:30:00Z"}, monkeypatch).out
    assert metric_lines(out)[0]["timestamp"] == "2025-11-05T14:30:00Z"


@pytest.mark.parametrize("value", ["", "0", "false", "FALSE", "no", "Off", " off "])
def test_disabled_values_print_nothing(capsys, monkeypatch, value):
    assert emitted(capsys, {"kind": "iteration"}, monkeypatch, value).out == ""


def test_unset_prints_nothing(capsys, monkeypatch):
    monkeypatch.delenv("CONTROLLER_METRICS", raising=False)
    metrics.emit_metric({"kind": "iteration"})
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("value", ["1", "controller", "true", "yes"])
def test_truthy_values_enable(capsys, monkeypatch, value):
    assert emitted(capsys, {"kind": "iteration"}, monkeypatch, value).out.startswith("@METRIC ")


def test_iteration_payload_has_every_schema_field():
    policy = metrics.policy_metrics(
        reward_mean=1.0, completed_episodes=3, learner_stats={"policy_loss": -0.1}, custom_metrics={"hits": 2}
    )
    payload = metrics.iteration_payload(
        training_iteration=2,
        timesteps_total=100,
        episodes_total=5,
        episodes_this_iter=3,
        time_this_iter_s=2.0,
        time_total_s=4.0,
        env_steps_this_iter=50,
        policies={"p": policy},
    )
    assert set(payload) == SCHEMA_FIELDS | IDENTITY_FIELDS
    assert payload["env_throughput"] == 25.0 and payload["num_agent_steps_trained"] == 100
    assert (
        payload["policies"]["p"]["learner"]
        == payload["policies"]["p"]["learner_stats"]
        == {"policy_loss": -0.1}
    )
    assert payload["policies"]["p"]["learner"] is not payload["policies"]["p"]["learner_stats"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d", payload["date"]), "RLlib's date format"


def test_run_identity_names_the_run():
    identity = metrics.run_identity("tag", "abc12")
    assert identity["trial_id"] == "abc12" and identity["experiment_tag"] == "tag"
    made_up = metrics.run_identity("tag")
    assert made_up["trial_id"] and made_up["experiment_id"] != metrics.run_identity("tag")["experiment_id"]


def test_lines_from_many_threads_never_interleave(capsys, monkeypatch):
    monkeypatch.setenv("CONTROLLER_METRICS", "1")
    big = {"values": list(range(2000))}

    def emit_many(worker: int) -> None:
        for index in range(50):
            metrics.emit_metric({**big, "worker": worker, "index": index})

    threads = [threading.Thread(target=emit_many, args=(worker,)) for worker in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    samples = metric_lines(capsys.readouterr().out)
    assert len(samples) == 400
    assert {(s["worker"], s["index"]) for s in samples} == {(w, i) for w in range(8) for i in range(50)}


def test_child_without_unbuffered_flag_delivers_first_line_within_a_second(tmp_path):
    child = (
        f"import sys, time; sys.path.insert(0, {str(REPO_ROOT)!r})\n"
        "from godot_rl_cli.metrics import emit_metric\n"
        "emit_metric({'kind': 'iteration', 'training_iteration': 1})\n"
        "time.sleep(5)\n"
    )
    env = {"CONTROLLER_METRICS": "1", "PATH": "/usr/bin:/bin"}
    process = subprocess.Popen([PYTHON, "-c", child], stdout=subprocess.PIPE, env=env)
    try:
        started = time.monotonic()
        line = process.stdout.readline().decode()
        elapsed = time.monotonic() - started
    finally:
        process.kill()
        process.wait()
    assert line.startswith("@METRIC ") and json.loads(line[8:])["training_iteration"] == 1
    assert elapsed < 1.0 + 1.5, f"first line took {elapsed:.2f} s (interpreter start-up included)"
    assert process.returncode != 0, (
        "the child was still running (killed), so the line was not flushed by exit"
    )
