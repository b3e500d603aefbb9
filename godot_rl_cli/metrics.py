"""The `@METRIC` emitter: one strict-JSON line per sample on stdout, for the Training Controller.

The controller keeps only lines that start with exactly `@METRIC ` followed by one JSON object
of `kind: "iteration"`; its parser is strict, so NaN and infinities are written as `null`.
Each line is flushed at once, whatever the buffering of stdout, and lines never interleave.
"""

import datetime
import json
import math
import os
import sys
import threading
import uuid
from typing import Any, Dict, Optional, Sequence

PREFIX = "@METRIC "
_DISABLED_VALUES = {"", "0", "false", "no", "off"}
_DROPPED = object()
_lock = threading.Lock()


def metrics_enabled() -> bool:
    """True when CONTROLLER_METRICS is set to a truthy string (read at call time)."""
    return os.environ.get("CONTROLLER_METRICS", "").strip().lower() not in _DISABLED_VALUES


def utc_timestamp() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def result_date() -> str:
    """The local time as RLlib writes a result's `date` (YYYY-mm-dd_HH-MM-SS)."""
    return datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")


def run_identity(
    experiment_tag: str, trial_id: Optional[str] = None, experiment_id: Optional[str] = None
) -> Dict[str, str]:
    """The fields that say which run a metric line belongs to: `trial_id` (for RLlib, part of the trial
    directory's name, which the controller looks for), `experiment_id` and `experiment_tag`; missing ids are
    made up (random hex)."""
    return {
        "trial_id": trial_id or uuid.uuid4().hex[:8],
        "experiment_id": experiment_id or uuid.uuid4().hex,
        "experiment_tag": experiment_tag,
    }


def to_strict_json_value(value: Any, path: str = "") -> Any:
    """Convert `value` into plain JSON types: numpy/torch scalars and arrays unwrapped, non-finite floats
    as None. A value that cannot be represented is dropped with a warning naming its key path."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        converted = {}
        for key, item in value.items():
            item_path = f"{path}.{key}" if path else str(key)
            item_value = to_strict_json_value(item, item_path)
            if item_value is not _DROPPED:
                converted[str(key)] = item_value
        return converted
    if isinstance(value, (list, tuple)):
        items = [to_strict_json_value(item, f"{path}[{index}]") for index, item in enumerate(value)]
        return [item for item in items if item is not _DROPPED]
    if hasattr(value, "tolist"):  # numpy arrays and scalars, torch tensors
        return to_strict_json_value(value.tolist(), path)
    if hasattr(value, "item"):
        return to_strict_json_value(value.item(), path)
    print(
        f"WARNING: metric {path or '(root)'} of type {type(value).__name__} dropped (not JSON)",
        file=sys.stderr,
        flush=True,
    )
    return _DROPPED


def _plain_value(value: Any) -> Any:
    """json.dumps hook for numpy and torch values; anything else goes to the slow, dropping path."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(type(value).__name__)


def format_metric_line(payload: Dict[str, Any]) -> str:
    """The `@METRIC <json>` line for `payload`, with a timestamp added when absent.

    Fast path: plain encoding, which fails on NaN, infinities and unknown types; only then is the payload
    walked to replace non-finite numbers with null and drop what cannot be encoded."""
    data = dict(payload)
    data.setdefault("timestamp", utc_timestamp())
    try:
        return PREFIX + json.dumps(data, allow_nan=False, separators=(",", ":"), default=_plain_value)
    except (ValueError, TypeError):
        return PREFIX + json.dumps(to_strict_json_value(data), allow_nan=False, separators=(",", ":"))


def emit_metric(payload: Dict[str, Any]) -> None:
    """Write one `@METRIC` line to stdout and flush it, when metrics are enabled. Never raises on bad
    values."""
    if not metrics_enabled():
        return
    line = format_metric_line(payload) + "\n"
    with _lock:
        sys.stdout.write(line)
        sys.stdout.flush()


def policy_metrics(
    *,
    reward_mean: Optional[float] = None,
    reward_min: Optional[float] = None,
    reward_max: Optional[float] = None,
    episode_len_mean: Optional[float] = None,
    completed_episodes: int = 0,
    learner_stats: Optional[Dict[str, Any]] = None,
    custom_metrics: Optional[Dict[str, Any]] = None,
) -> Dict[str, Any]:
    """One policy's entry: the learner numbers appear under both `learner_stats` (spec) and `learner`
    (controller)."""
    learner = dict(learner_stats or {})
    return {
        "reward_mean": reward_mean,
        "reward_min": reward_min,
        "reward_max": reward_max,
        "episode_len_mean": episode_len_mean,
        "completed_episodes": max(0, int(completed_episodes)),
        "learner_stats": learner,
        "learner": dict(learner),
        "custom_metrics": dict(custom_metrics or {}),
    }


EPISODE_FIELDS = ("episode_reward_mean", "episode_reward_min", "episode_reward_max", "episode_len_mean")
POLICY_EPISODE_KEYS = ("reward_mean", "reward_min", "reward_max", "episode_len_mean")  # the same, per policy
STEP_COUNTERS = (
    "num_env_steps_sampled",
    "num_env_steps_trained",
    "num_agent_steps_sampled",
    "num_agent_steps_trained",
)


def episode_statistics(rewards: Sequence[float], lengths: Sequence[int]) -> Dict[str, Optional[float]]:
    """A policy's POLICY_EPISODE_KEYS over finished episodes (None when none ended)."""
    if not rewards:
        return dict.fromkeys(POLICY_EPISODE_KEYS)
    values = (sum(rewards) / len(rewards), min(rewards), max(rewards), sum(lengths) / len(lengths))
    return dict(zip(POLICY_EPISODE_KEYS, values, strict=True))


def run_episode_fields(policy: Dict[str, Any]) -> Dict[str, Optional[float]]:
    """The top-level EPISODE_FIELDS of a run whose only policy is `policy`."""
    return {field: policy[key] for field, key in zip(EPISODE_FIELDS, POLICY_EPISODE_KEYS, strict=True)}


def iteration_payload(
    *,
    training_iteration: int,
    timesteps_total: int,
    episodes_total: int,
    episodes_this_iter: int,
    time_this_iter_s: float,
    time_total_s: float,
    env_steps_this_iter: int,
    custom_metrics: Optional[Dict[str, Any]] = None,
    policies: Optional[Dict[str, Dict[str, Any]]] = None,
    checkpoints: int = 0,
    trial_id: Optional[str] = None,
    experiment_id: Optional[str] = None,
    experiment_tag: Optional[str] = None,
    date: Optional[str] = None,
    **fields: Any,
) -> Dict[str, Any]:
    """A full `iteration` sample with every field of the spec's schema and the run's identity (see
    `run_identity`; `date` defaults to now); counters are non-negative ints.

    `fields` may hold the EPISODE_FIELDS (None when no episode ended), `env_throughput` (default: steps
    per second of this iteration), the STEP_COUNTERS (default: `timesteps_total`) and any extra field.
    """
    if fields.get("env_throughput") is None and time_this_iter_s > 0:
        fields["env_throughput"] = env_steps_this_iter / time_this_iter_s

    def counter(value: Optional[int], default: int = 0) -> int:
        return max(0, int(default if value is None else value))

    return {
        "kind": "iteration",
        "timestamp": utc_timestamp(),
        "training_iteration": counter(training_iteration),
        "timesteps_total": counter(timesteps_total),
        "episodes_total": counter(episodes_total),
        "episodes_this_iter": counter(episodes_this_iter),
        **{name: fields.pop(name, None) for name in EPISODE_FIELDS},
        "time_this_iter_s": time_this_iter_s,
        "time_total_s": time_total_s,
        "env_steps_this_iter": counter(env_steps_this_iter),
        "env_throughput": fields.pop("env_throughput", None),
        **{name: counter(fields.pop(name, None), timesteps_total) for name in STEP_COUNTERS},
        "custom_metrics": dict(custom_metrics or {}),
        "policies": dict(policies or {}),
        "checkpoints": counter(checkpoints),
        "trial_id": trial_id,
        "experiment_id": experiment_id,
        "experiment_tag": experiment_tag,
        "date": date or result_date(),
        **fields,
    }
