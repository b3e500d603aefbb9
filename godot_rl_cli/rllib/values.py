"""The values of the RLlib YAML's algorithm settings and stop criteria, checked where they enter (the YAML
file), as the SB3 trainer's flags check theirs: a NaN, an infinity, a number out of its range or a value of
the wrong type is one UserError naming the key and what it takes. Also a YAML loader that refuses duplicate
keys (PyYAML keeps the last one without a word)."""

import math
from typing import Any, Callable, Collection, Dict, Optional

import yaml

from godot_rl_cli.errors import UserError
from godot_rl_cli.memory import network_too_large, too_many_workers

Rule = Callable[[Any], Optional[str]]  # why a value does not fit, or None


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def finite_in(low: float, high: float = math.inf, low_open: bool = False) -> Rule:
    def rule(value: Any) -> Optional[str]:
        ok = _number(value) and math.isfinite(value) and (value > low if low_open else value >= low)
        if ok and value <= high:
            return None
        bound = "above" if low_open else "from"
        return f"a finite number {bound} {low:g}" + (f" to {high:g}" if math.isfinite(high) else "")

    return rule


def whole_number(low: int) -> Rule:
    def rule(value: Any) -> Optional[str]:
        if isinstance(value, int) and not isinstance(value, bool) and value >= low:
            return None
        return f"a whole number, {low} or more"

    return rule


def or_auto(rule: Rule) -> Rule:
    return lambda value: None if value == "auto" else (rule(value) and f"{rule(value)}, or auto")


def workers(value: Any) -> Optional[str]:
    problem = whole_number(0)(value)
    return problem or too_many_workers(value)


def layer_sizes(value: Any) -> Optional[str]:
    if not isinstance(value, list) or not all(whole_number(1)(size) is None for size in value):
        return "a list of layer sizes (whole numbers, 1 or more), e.g. [64, 64]"
    return network_too_large(value)


# Each algorithm setting with a number (legacy and Ray 2.48 names alike) and what it takes.
SETTING_RULES: Dict[str, Rule] = {
    "lr": finite_in(0, low_open=True),
    "gamma": finite_in(0, 1),
    "lambda": finite_in(0, 1),
    "lambda_": finite_in(0, 1),
    "num_workers": workers,
    "num_env_runners": workers,
    "num_envs_per_worker": whole_number(1),
    "num_envs_per_env_runner": whole_number(1),
    "train_batch_size": whole_number(1),
    "sgd_minibatch_size": whole_number(1),
    "minibatch_size": whole_number(1),
    "num_sgd_iter": whole_number(1),
    "num_epochs": whole_number(1),
    "rollout_fragment_length": or_auto(whole_number(1)),
    "entropy_coeff": finite_in(0),
    "vf_loss_coeff": finite_in(0),
    "kl_coeff": finite_in(0),
    "kl_target": finite_in(0),
    "clip_param": finite_in(0, low_open=True),
    "num_gpus": finite_in(0),
    "evaluation_interval": whole_number(0),
    "evaluation_duration": whole_number(1),
}
MODEL_RULES: Dict[str, Rule] = {"fcnet_hiddens": layer_sizes, "lstm_cell_size": whole_number(1)}
# Stop criteria: budgets must be reachable; a reward threshold is any finite number.
STOP_RULES: Dict[str, Rule] = {
    "time_total_s": finite_in(0, low_open=True),
    "timesteps_total": finite_in(0, low_open=True),
    "training_iteration": finite_in(0, low_open=True),
    "episode_reward_mean": finite_in(-math.inf),
}


def check_settings(settings: Dict[str, Any], path: str) -> None:
    """Every known numeric setting (and `model`'s layer sizes) has a value it takes; UserError naming the
    first that does not."""
    for key, rule in SETTING_RULES.items():
        if key in settings:
            _check(rule, settings[key], key, path)
    model = settings.get("model")
    if isinstance(model, dict):
        for key, rule in MODEL_RULES.items():
            if key in model:
                _check(rule, model[key], f"model.{key}", path)
    if settings.get("num_gpus"):
        _check_gpus(settings["num_gpus"], path)


def check_stop_values(stop: Dict[str, Any], path: str) -> None:
    for key, rule in STOP_RULES.items():
        if key in stop:
            _check(rule, stop[key], f"stop.{key}", path)


def _check(rule: Rule, value: Any, key: str, path: str) -> None:
    problem = rule(value)
    if problem:
        raise UserError(f"{key} in {path} must be {problem}, not {value!r}", f"fix {key} in the YAML file")


def _check_gpus(count: Any, path: str) -> None:
    import torch

    if torch.cuda.device_count() < count:
        raise UserError(
            f"num_gpus {count} in {path}: this machine has {torch.cuda.device_count()} CUDA device(s)",
            "set num_gpus: 0 (or remove it) to train on the CPU",
        )


class UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> Dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:
                continue  # an unhashable key: SafeLoader's own error follows
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice in one mapping", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def block_mapping(value: Any, name: str, path: str, known: Collection[str], example: str) -> Optional[Dict]:
    """A block of the YAML file at `path` (`demos:`, `self_play:`): None when absent or null, else the mapping
    with only `known` keys; anything else is one UserError naming the block and the known keys."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise UserError(f"{name} in {path} must be a mapping, not {value!r}", example)
    unknown = sorted(set(map(str, value)) - set(known))
    if unknown:
        raise UserError(
            f"unknown {name} key(s) {', '.join(unknown)} in {path}", f"use {', '.join(sorted(known))}"
        )
    return value
