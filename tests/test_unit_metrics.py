"""The `@METRIC` line's pure parts (metrics.py): its text, strict JSON, the payload's fields and counters."""

import json
import math

import numpy as np
import pytest

from godot_rl_cli import metrics

pytestmark = pytest.mark.fast


def decoded(line: str) -> dict:
    assert line.startswith("@METRIC {") and "\n" not in line
    return json.loads(line[len(metrics.PREFIX) :], parse_constant=lambda name: pytest.fail(name))


def test_the_line_is_the_prefix_and_compact_json_with_a_timestamp():
    line = metrics.format_metric_line({"kind": "iteration", "training_iteration": 3})
    assert line.startswith('@METRIC {"kind":"iteration","training_iteration":3,"timestamp":"')
    assert decoded(line)["timestamp"].endswith("Z")


def test_a_given_timestamp_is_kept():
    assert decoded(metrics.format_metric_line({"timestamp": "then"}))["timestamp"] == "then"


def test_non_finite_and_numpy_values_become_strict_json():
    line = metrics.format_metric_line(
        {
            "a": float("nan"),
            "b": [float("inf"), 1.5],
            "c": np.float32(0.5),
            "d": np.arange(3),
            "e": {"f": -math.inf},
        }
    )
    assert {key: value for key, value in decoded(line).items() if key != "timestamp"} == {
        "a": None,
        "b": [None, 1.5],
        "c": 0.5,
        "d": [0, 1, 2],
        "e": {"f": None},
    }


def test_a_value_that_is_not_json_is_dropped_naming_its_path(capsys):
    payload = decoded(metrics.format_metric_line({"kind": "iteration", "policies": {"p": {"x": object()}}}))
    assert payload["policies"] == {"p": {}}
    assert capsys.readouterr().err == "WARNING: metric policies.p.x of type object dropped (not JSON)\n"


def test_iteration_payload_counters_are_non_negative_ints_and_steps_default_to_timesteps():
    payload = metrics.iteration_payload(
        training_iteration=2,
        timesteps_total=400,
        episodes_total=-1,
        episodes_this_iter=3.0,
        time_this_iter_s=2.0,
        time_total_s=4.0,
        env_steps_this_iter=200,
        num_env_steps_trained=350,
    )
    assert payload["kind"] == "iteration"
    assert (payload["episodes_total"], payload["episodes_this_iter"]) == (0, 3)
    assert payload["env_throughput"] == 100.0
    assert payload["num_env_steps_sampled"] == payload["num_agent_steps_trained"] == 400
    assert payload["num_env_steps_trained"] == 350
    assert all(payload[field] is None for field in metrics.EPISODE_FIELDS + metrics.IDENTITY_FIELDS)
    assert payload["custom_metrics"] == {} and payload["policies"] == {} and payload["checkpoints"] == 0


def test_iteration_payload_keeps_identity_episode_and_extra_fields():
    identity = metrics.run_identity("tag", trial_id="abc12345", experiment_id="e1")
    payload = metrics.iteration_payload(
        training_iteration=1,
        timesteps_total=10,
        episodes_total=1,
        episodes_this_iter=1,
        time_this_iter_s=0.0,
        time_total_s=0.0,
        env_steps_this_iter=10,
        episode_reward_mean=1.5,
        date="2026-01-01_00-00-00",
        evaluation={"reward_mean": 2.0},
        **identity,
    )
    assert payload["env_throughput"] is None  # no time passed
    assert (payload["trial_id"], payload["experiment_id"], payload["experiment_tag"]) == (
        "abc12345",
        "e1",
        "tag",
    )
    assert payload["episode_reward_mean"] == 1.5 and payload["date"] == "2026-01-01_00-00-00"
    assert payload["evaluation"] == {"reward_mean": 2.0}


def test_made_up_run_ids_are_hex_and_differ():
    first, second = metrics.run_identity("x"), metrics.run_identity("x")
    assert len(first["trial_id"]) == 8 and len(first["experiment_id"]) == 32
    assert int(first["trial_id"], 16) >= 0 and int(first["experiment_id"], 16) >= 0
    assert first["experiment_id"] != second["experiment_id"]


def test_policy_entry_and_episode_statistics():
    statistics = metrics.episode_statistics([1.0, 3.0], [10, 20])
    assert statistics == {"reward_mean": 2.0, "reward_min": 1.0, "reward_max": 3.0, "episode_len_mean": 15.0}
    assert metrics.episode_statistics([], []) == dict.fromkeys(metrics.POLICY_EPISODE_KEYS)
    entry = metrics.policy_metrics(**statistics, completed_episodes=-2, learner_stats={"kl": 0.1})
    assert entry["completed_episodes"] == 0
    assert entry["learner_stats"] == entry["learner"] == {"kl": 0.1}
    assert metrics.run_episode_fields(entry) == {
        "episode_reward_mean": 2.0,
        "episode_reward_min": 1.0,
        "episode_reward_max": 3.0,
        "episode_len_mean": 15.0,
    }


@pytest.mark.parametrize(
    "value, enabled", [("1", True), ("yes", True), ("0", False), ("off", False), ("", False)]
)
def test_controller_metrics_variable_switches_the_lines(monkeypatch, capsys, value, enabled):
    monkeypatch.setenv("CONTROLLER_METRICS", value)
    metrics.emit_metric({"kind": "iteration"})
    out = capsys.readouterr().out
    assert (out.startswith("@METRIC ") and out.endswith("\n")) if enabled else out == ""
