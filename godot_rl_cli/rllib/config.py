"""The RLlib YAML file, in either shape, as one run description; legacy RLlib keys translated for Ray 2.48.

Two shapes are read unchanged:
- the controller's: `algorithm`, `env_is_multiagent`, `checkpoint_frequency`, `stop`, `config: {env,
  env_config, lr, lambda, sgd_minibatch_size, num_workers, model, ...}`;
- the API reference's flat one: `env`, `env_config`, `multiagent: {policies, policy_mapping_fn (Python
  source), policies_to_train}` and the algorithm settings at the top level (`stop`,
  `checkpoint_frequency` and `algorithm` may stand there too).
"""

import difflib
import hashlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import yaml

from godot_rl_cli.algorithms import RLLIB_ALGORITHMS
from godot_rl_cli.errors import UserError, print_warning
from godot_rl_cli.game.settings import FIELD_NAMES, PORT_MAX, GameSettings
from godot_rl_cli.path_types import same_file
from godot_rl_cli.rllib.demo_block import DemoBlock, parse_demo_block
from godot_rl_cli.rllib.league import SelfPlaySettings, parse_self_play
from godot_rl_cli.rllib.user_code import call_user_code
from godot_rl_cli.rllib.values import UniqueKeyLoader, check_settings, check_stop_values

RUN_KEYS = {"algorithm", "env_is_multiagent", "checkpoint_frequency", "stop", "config", "demos", "self_play"}
FLAT_KEYS = {"env", "env_config", "multiagent", "framework"}  # the flat shape's keys besides settings
DEFAULT_CHECKPOINT_FREQUENCY = 10
SAMPLERS = ("batched", "rllib")
ENV_CONFIG_KEYS = set(FIELD_NAMES)
STOP_KEYS = {
    "time_total_s",
    "timesteps_total",
    "training_iteration",
    "episode_reward_mean",
    "sustained_episode_reward_mean",
    "stop_file",
}

# Legacy key -> the AlgorithmConfig attribute Ray 2.48 reads (it ignores or rejects the old names).
RENAMED = {
    "lambda": "lambda_",
    "sgd_minibatch_size": "minibatch_size",
    "num_sgd_iter": "num_epochs",
    "num_workers": "num_env_runners",
    "num_rollout_workers": "num_env_runners",
    "num_envs_per_worker": "num_envs_per_env_runner",
}
IGNORED = {
    "framework": "torch is the only framework of this suite",
    "env": "the env is always the Godot game",
}


@dataclass
class RunSpec:
    """Everything a run needs, read from the YAML file."""

    source: Path
    config_sha1: str = ""  # of the file's bytes as read, for run_manifest.json
    algorithm: str = "PPO"
    env_is_multiagent: bool = True
    checkpoint_frequency: int = DEFAULT_CHECKPOINT_FREQUENCY  # 0: only the final checkpoint
    stop: Dict[str, Any] = field(default_factory=dict)
    env_config: Dict[str, Any] = field(default_factory=dict)  # as written in the YAML
    game: GameSettings = field(default_factory=GameSettings)  # env_config's game settings, checked
    policies: Optional[List[str]] = None
    mapping_source: Optional[str] = None
    policies_to_train: Optional[List[str]] = None
    sampler: str = "batched"  # "rllib": RLlib's own sampler even where rllib/sampler.py's can stand in
    demos: Optional[DemoBlock] = None  # behaviour cloning of one policy before RL (godot_rl_cli/demos/)
    self_play: Optional[SelfPlaySettings] = None  # the `self_play:` block (rllib/league.py)
    settings: Dict[str, Any] = field(default_factory=dict)


def load_run_spec(path: str) -> RunSpec:
    """Read and check the YAML file; every problem is a one-line UserError (with the line number for
    syntax). Unknown top-level keys of the controller's shape are warnings naming the closest known key
    (the flat shape's are settings, checked by `apply_settings`)."""
    source = Path(path).expanduser().absolute()
    data, config_sha1 = _read_yaml(source, path)
    controller_shape = "config" in data
    if controller_shape:
        if not isinstance(data["config"], dict):
            raise UserError(f"'config' in {path} must be a mapping of settings", "e.g. config: {lr: 0.0003}")
        for key in data:
            if key not in RUN_KEYS:
                warn_unknown_key(key, RUN_KEYS, f"top-level key {key!r} in {path} is not known")
        settings = dict(data["config"])
    else:
        settings = {k: v for k, v in data.items() if k not in RUN_KEYS}
    spec = RunSpec(source=source, config_sha1=config_sha1)
    algorithm = data.get("algorithm") or settings.get("algorithm") or "PPO"
    settings.pop("algorithm", None)
    spec.algorithm = _typed(algorithm, str, "algorithm", path).upper()
    if spec.algorithm not in RLLIB_ALGORITHMS:
        raise UserError(
            f"unknown algorithm {spec.algorithm!r} in {path}", f"use one of {', '.join(RLLIB_ALGORITHMS)}"
        )
    spec.env_is_multiagent = _typed(data.get("env_is_multiagent", True), bool, "env_is_multiagent", path)
    spec.checkpoint_frequency = _checkpoint_frequency(
        data.get("checkpoint_frequency", settings.pop("checkpoint_frequency", None)), path
    )
    settings.pop("checkpoint_frequency", None)
    spec.stop = _stop_criteria(data.get("stop", settings.pop("stop", None)), path)
    spec.self_play = parse_self_play(data.get("self_play", settings.pop("self_play", None)), path)
    settings.pop("self_play", None)
    spec.sampler = _typed(settings.pop("sampler", "batched"), str, "sampler", path)
    if spec.sampler not in SAMPLERS:
        raise UserError(
            f"sampler in {path} must be one of {', '.join(SAMPLERS)}, not {spec.sampler!r}",
            "sampler: batched (the suite's, for PPO) or sampler: rllib (RLlib's own)",
        )
    spec.demos = parse_demo_block(data.get("demos", settings.pop("demos", None)), path)
    spec.env_config = dict(_typed(settings.pop("env_config", None) or {}, dict, "env_config", path))
    spec.game = GameSettings.from_env_config(spec.env_config)
    for key in sorted(set(spec.env_config) - ENV_CONFIG_KEYS, key=str):
        close = difflib.get_close_matches(str(key), ENV_CONFIG_KEYS, n=1)
        print_warning(
            f"env_config key {key!r} is not a game setting; it is passed to the game as --{key}=VALUE"
            + (f" (did you mean {close[0]!r}?)" if close else "")
        )
    multiagent = _typed(settings.pop("multiagent", None) or {}, dict, "multiagent", path)
    policies = _typed(multiagent.get("policies") or [], (list, dict), "multiagent.policies", path)
    spec.policies = [str(name) for name in policies] or None
    spec.mapping_source = _typed(
        multiagent.get("policy_mapping_fn"), (str, type(None)), "policy_mapping_fn", path
    )
    if spec.mapping_source:
        check_mapping_function(compile_mapping_function(spec.mapping_source), spec.policies)
    to_train = _typed(multiagent.get("policies_to_train") or [], list, "multiagent.policies_to_train", path)
    spec.policies_to_train = [str(name) for name in to_train] or None
    _warn_ignored(settings, path)
    if settings.get("restart_failed_sub_environments"):
        raise UserError(
            "restart_failed_sub_environments does not work with Godot games on Ray 2.48's old API stack (Ray "
            "hands the error on as an observation)",
            "set max_env_restarts: N in env_config instead",
        )
    check_settings(settings, path)
    check_ports(spec.game.port, settings, path)
    spec.settings = settings
    return spec


def _warn_ignored(settings: Dict[str, Any], path: str) -> None:
    """Drop the settings the trainer ignores, with a warning for a value that asks for something else."""
    for key, reason in IGNORED.items():
        value = settings.pop(key, None)
        if key == "framework" and value not in (None, "torch"):
            print_warning(f"framework {value!r} ignored: {reason}")
        if key == "env" and value is not None and "godot" not in str(value).lower():
            print_warning(f"env {value!r} in {path} ignored: {reason} of env_config.env_path")


def _read_yaml(source: Path, path: str) -> Tuple[Dict[str, Any], str]:
    """The YAML mapping in `source` and the SHA-1 of its bytes; a missing, unreadable, non-UTF-8 or invalid
    file is a UserError."""
    how = "pass --config_file with the path of your RLlib YAML file"
    try:
        if source.is_dir():
            raise UserError(f"config file {path} is a directory", how)
        if not source.is_file():
            raise UserError(f"config file {path} not found", how)
        raw = source.read_bytes()
        text = raw.decode("utf-8")
    except OSError as error:
        raise UserError(f"cannot read config file {path} ({error.strerror or error})", how) from None
    except UnicodeDecodeError as error:
        raise UserError(
            f"config file {path} is not UTF-8 text (byte {error.object[error.start]:#04x} at offset "
            f"{error.start})",
            "pass the YAML file, saved as UTF-8",
        ) from None
    try:
        data = yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        raise UserError(f"invalid YAML in {path}{where}: {problem}", "fix the file's syntax") from None
    if not isinstance(data, dict):
        raise UserError(
            f"{path} does not hold a YAML mapping of settings", "see rllib_config.yaml for the expected shape"
        )
    return data, hashlib.sha1(raw).hexdigest()


TYPE_NAMES = {str: "a string", bool: "true or false", dict: "a mapping", list: "a list", type(None): "null"}


def _typed(value: Any, expected: Any, key: str, path: str) -> Any:
    """`value` if it is of the `expected` type(s), else a UserError naming the key, what it is and what it
    should be."""
    types = expected if isinstance(expected, tuple) else (expected,)
    if isinstance(value, types) and not (bool not in types and isinstance(value, bool)):
        return value
    wanted = " or ".join(TYPE_NAMES.get(kind, kind.__name__) for kind in types)
    raise UserError(f"{key} in {path} must be {wanted}, not {value!r}", f"fix {key} in the YAML file")


def _checkpoint_frequency(value: Any, path: str) -> int:
    """Iterations between checkpoints: missing or null is 10; 0 means only the final checkpoint."""
    if value is None:
        return DEFAULT_CHECKPOINT_FREQUENCY
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UserError(
            f"checkpoint_frequency in {path} must be a whole number of iterations, 0 or more, not {value!r}",
            "e.g. checkpoint_frequency: 10 (0: only the final checkpoint)",
        )
    return value


def warn_unknown_key(key: Any, known: Any, what: str) -> None:
    """A warning that `what` (naming `key`) is ignored, with the closest known key (or the few known ones)."""
    close = difflib.get_close_matches(str(key), sorted(known), n=1)
    if close:
        hint = f"did you mean {close[0]!r}?"
    else:
        hint = f"known: {', '.join(sorted(known))}" if len(known) <= 12 else "no similar name"
    print_warning(f"{what}; ignored ({hint})")


def _stop_criteria(stop: Any, path: str) -> Dict[str, Any]:
    if stop is None:
        return {}
    if not isinstance(stop, dict):
        raise UserError(f"'stop' in {path} must be a mapping or null", "e.g. stop: {training_iteration: 100}")
    unknown = set(stop) - STOP_KEYS
    if unknown:
        close = [
            match for key in sorted(unknown) for match in difflib.get_close_matches(str(key), STOP_KEYS, 1)
        ]
        raise UserError(
            f"unknown stop criteria {', '.join(sorted(map(str, unknown)))} in {path}"
            + (f" (did you mean {', '.join(close)}?)" if close else ""),
            f"use {', '.join(sorted(STOP_KEYS))}",
        )
    for key in ("time_total_s", "timesteps_total", "training_iteration", "episode_reward_mean"):
        if key in stop and not _is_number(stop[key]):
            raise UserError(f"stop.{key} in {path} must be a number, not {stop[key]!r}", f"e.g. {key}: 100")
    sustained = stop.get("sustained_episode_reward_mean")
    if sustained is not None and not (
        isinstance(sustained, dict)
        and {"threshold", "window"} <= set(sustained)
        and _is_number(sustained["threshold"])
        and isinstance(sustained["window"], int)
        and not isinstance(sustained["window"], bool)
        and sustained["window"] > 0
    ):
        raise UserError(
            f"sustained_episode_reward_mean in {path} needs a numeric threshold and a window of iterations",
            "e.g. {threshold: 10, window: 5}",
        )
    check_stop_values(stop, path)
    if "stop_file" in stop:
        _typed(stop["stop_file"], str, "stop.stop_file", path)
    return dict(stop)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def compile_mapping_function(source: str) -> Callable:
    """The `policy_mapping_fn` given as Python source text in the user's own YAML file (it is executed)."""
    namespace: Dict[str, Any] = {}
    try:
        code = compile(source, "<policy_mapping_fn>", "exec")
    except SyntaxError as error:
        raise UserError(
            f"policy_mapping_fn does not compile (line {error.lineno}: {error.msg})",
            "fix the Python source in the YAML file",
        ) from None
    call_user_code("policy_mapping_fn's source, when loaded,", exec, code, namespace)  # the user's own file
    functions = [value for name, value in namespace.items() if callable(value) and not name.startswith("__")]
    if "policy_mapping_fn" in namespace:
        return namespace["policy_mapping_fn"]
    if len(functions) == 1:
        return functions[0]
    raise UserError(
        "policy_mapping_fn source defines no function named policy_mapping_fn",
        "define def policy_mapping_fn(agent_id, episode, worker, **kwargs)",
    )


def check_mapping_function(function: Callable, policies: Optional[List[str]]) -> None:
    """Before any game starts: the function returns, in time, a listed policy for agent 0 (every agent is
    checked once the game says how many there are)."""
    policy = call_user_code("policy_mapping_fn for agent 0", function, 0, None, None)
    if policies and policy not in policies:
        raise UserError(
            f"policy_mapping_fn maps agent 0 to {policy!r}, which is not a policy ({', '.join(policies)})",
            "map every agent to a policy listed under multiagent.policies",
        )


def check_ports(port: int, settings: Dict[str, Any], path: str) -> None:
    """The training games' ports (port + game index) exist, for the YAML's numbers of env runners and envs
    (rllib/setup.py checks again with the evaluation games and a --num_workers flag)."""
    runners = settings.get("num_workers", settings.get("num_env_runners", 0))
    envs = settings.get("num_envs_per_worker", settings.get("num_envs_per_env_runner", 1))
    last = port + (runners + 1) * envs - 1
    if last > PORT_MAX:
        raise UserError(
            f"env_config port {port} in {path} with {runners} env runner(s) of {envs} env(s) needs ports "
            f"up to {last}, past {PORT_MAX}",
            "set a lower env_config port",
        )


# The controller's policy types as RLlib models (rllib/models.py): their keys it writes beside custom_model.
CONTROLLER_MODEL_KEYS = {"tui_cnn": ("channels",), "tui_grn": ("hidden_size",)}


def controller_model(model: Any) -> Any:
    """A `model` setting with the controller's `channels`/`hidden_size` moved into `custom_model_config`,
    where RLlib hands them to the model (it refuses unknown keys in `model`)."""
    keys = CONTROLLER_MODEL_KEYS.get(model.get("custom_model")) if isinstance(model, dict) else None
    if not keys:
        return model
    model = dict(model)
    custom = dict(model.get("custom_model_config") or {})
    custom.update({key: model.pop(key) for key in keys if key in model})
    return {**model, "custom_model_config": custom}


def apply_settings(config, settings: Dict[str, Any]) -> Dict[str, Any]:
    """Set each setting on the AlgorithmConfig under its Ray 2.48 name; warn about keys it does not know."""
    effective = {}
    for key, value in settings.items():
        name = RENAMED.get(key, key)
        if name == "vf_clip_param" and isinstance(value, str):
            value = float(value.replace(".inf", "inf").replace(".Inf", "inf"))  # ".inf" quoted in YAML
        if not hasattr(config, name):
            known = RUN_KEYS | FLAT_KEYS | set(RENAMED) | {a for a in vars(config) if not a.startswith("_")}
            warn_unknown_key(key, known, f"setting {key!r} is not known to {type(config).__name__}")
            continue
        if name == "model":
            value = {**config.model, **controller_model(value)}
        setattr(config, name, value)
        effective[name] = value
    return effective


# Budgets counted from the start of this run, so that a resumed run trains them again (as the controller's
# reference script does); other keys, `training_iteration` among them, compare the result's own value.
RUN_BUDGETS = {"time_total_s": "time_this_iter_s", "timesteps_total": "num_env_steps_sampled_this_iter"}
BUDGETS = ("time_total_s", "timesteps_total", "training_iteration")


class StopCriteria:
    """Decides after each iteration whether the YAML's `stop` section is met, or a `STOP` file appeared in the
    trial directory."""

    def __init__(self, stop: Dict[str, Any], trial_dir: Optional[Path] = None):
        self.stop = stop
        self.rewards: List[float] = []
        self.run_start: Dict[str, float] = {}  # each budget's value when this run started (0 unless resumed)
        self.trial_stop_file = trial_dir / "STOP" if trial_dir else None
        stop_file = stop.get("stop_file")
        self.stop_file = Path(stop_file).expanduser().absolute() if stop_file else None
        self.stale_stop_file_mtime = (
            self.stop_file.stat().st_mtime if self.stop_file and self.stop_file.exists() else None
        )

    def reason(self, result: Dict[str, Any]) -> Optional[str]:
        """Why to stop now, or None."""
        reward = result.get("env_runners", {}).get("episode_reward_mean")
        if reward is not None and not math.isnan(reward):
            self.rewards.append(reward)
        self._note_run_start(result)
        for key in BUDGETS:
            if key in self.stop and result.get(key, 0) - self.run_start.get(key, 0) >= self.stop[key]:
                return f"{key} reached {self.stop[key]}" + (" in this run" if self.run_start.get(key) else "")
        if (
            "episode_reward_mean" in self.stop
            and self.rewards
            and self.rewards[-1] >= self.stop["episode_reward_mean"]
        ):
            return f"episode_reward_mean reached {self.stop['episode_reward_mean']}"
        sustained = self.stop.get("sustained_episode_reward_mean")
        if sustained:
            window = int(sustained["window"])
            recent = self.rewards[-window:]
            if len(recent) == window and min(recent) >= sustained["threshold"]:
                return (
                    f"episode_reward_mean stayed at or above {sustained['threshold']} for {window} iterations"
                )
        if self.trial_stop_file and self.trial_stop_file.exists():
            return f"stop file {self.trial_stop_file} appeared"
        if self.stop_file and self.stop_file.exists():
            if (
                self.stale_stop_file_mtime is None
                or self.stop_file.stat().st_mtime != self.stale_stop_file_mtime
            ):
                return f"stop file {self.stop_file} appeared"
        return None

    def spent(self, result: Dict[str, Any]) -> Optional[float]:
        """The part (0..1) of the nearest budget of the `stop` section that this run has used, or None
        when it has none (a reward goal or a stop file only)."""
        self._note_run_start(result)
        parts = [
            (result.get(key, 0) - self.run_start.get(key, 0)) / self.stop[key]
            for key in BUDGETS
            if _is_number(self.stop.get(key)) and self.stop[key] > 0
        ]
        return max(parts) if parts else None

    def _note_run_start(self, result: Dict[str, Any]) -> None:
        """Each budget's value when this run started, from its first result (0 unless resumed)."""
        if not self.run_start:
            self.run_start = {
                key: result.get(key, 0) - result.get(this_iter, result.get(key, 0))
                for key, this_iter in RUN_BUDGETS.items()
            }


def choose_resume(resume: Optional[str], restore: Optional[str]) -> Optional[str]:
    """--resume wins over --restore (the reference script's choice), said in a warning when they differ."""
    if resume and restore and not same_file(resume, restore):
        print_warning(
            f"--resume {resume} and --restore {restore} both given: resuming from {resume} (--resume wins)"
        )
    return resume or restore


def resolve_env_path(env_path: Optional[str], override: Optional[str]) -> Optional[str]:
    """--env_path wins over the YAML's; a relative env_path resolves against the current directory."""
    env_path = override or env_path
    return os.path.abspath(os.path.expanduser(env_path)) if env_path else None
