"""The `@METRIC` line of an RLlib iteration: ControllerMetricsCallback collects per-policy custom metrics from
the agents' info and the episode count, and shows the iteration's progress (a bar on a terminal, else one
plain line); the training loop emits the line after the iteration's checkpoint is saved (so `checkpoints` is
what is on disk), with `iteration_payload`."""

import math
from collections import defaultdict
from typing import Any, Dict, Iterable, Optional, Tuple

from ray.rllib.callbacks.callbacks import RLlibCallback
from ray.rllib.utils.metrics import NUM_ENV_STEPS_SAMPLED, NUM_ENV_STEPS_SAMPLED_LIFETIME

from godot_rl_cli import metrics
from godot_rl_cli.progress import Progress, ProgressDisplay
from godot_rl_cli.rllib import league
from godot_rl_cli.rllib.runners import runner_restarts

SEPARATOR = "/"


def number_or_none(value: Any) -> Optional[float]:
    """The value as a float; None for NaN or what is no number."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def info_custom_metrics(last_infos: Iterable[Tuple[str, Dict[str, Any]]]) -> Dict[str, float]:
    """An episode's custom metrics from each agent's (policy, last info): every numeric info value as
    `<policy>/<key>` (the last agent of a policy wins)."""
    custom = {}
    for policy, info in last_infos:
        for key, value in info.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                custom[f"{policy}{SEPARATOR}{key}"] = float(value)
    return custom


class ControllerMetricsCallback(RLlibCallback):
    """Records each agent's numeric info values at episode end as `<policy>/<key>` custom metrics, counts
    episodes across a resumed run (`episodes_total`, logged in result.json), and keeps the result's step
    counters in steps of the game whatever `count_steps_by` says (`env_steps_in_result`)."""

    episodes_offset = 0  # episodes of the run this one resumes (set by the training script)
    episodes_in_run = 0
    env_steps_before = 0  # env steps sampled before this iteration (a resumed checkpoint's included)
    stop_criteria = None  # the run's StopCriteria (set by the training script): the bar's budget
    display: Optional[ProgressDisplay] = None

    def on_episode_end(self, *, episode, **kwargs) -> None:
        episode.custom_metrics.update(
            info_custom_metrics(
                (episode.policy_for(agent_id), episode.last_info_for(agent_id) or {})
                for agent_id in episode.get_agents()
            )
        )

    def on_train_result(self, *, algorithm, result: Dict[str, Any], **kwargs) -> None:
        runners = result.get("env_runners", {})
        self.episodes_in_run += int(runners.get("episodes_this_iter", runners.get("num_episodes", 0)) or 0)
        result["episodes_total"] = (
            self.episodes_offset + self.episodes_in_run
        )  # logged to result.json for resumes
        self.env_steps_before = env_steps_in_result(result, self.env_steps_before)
        self.show_progress(algorithm, result)

    def show_progress(self, algorithm: Any, result: Dict[str, Any]) -> None:
        """The bar on a terminal, else the iteration's plain line."""
        if self.display is None:
            self.display = ProgressDisplay()
        if not self.display.live:
            print(iteration_line(result, runner_restarts(algorithm)), flush=True)
            return
        seconds = float(result.get("time_this_iter_s") or 0.0)
        self.display.show(
            Progress(
                iteration=int(result.get("training_iteration", 0)),
                steps=int(result.get("timesteps_total") or 0),
                reward=number_or_none(result.get("env_runners", {}).get("episode_reward_mean")),
                window=int(algorithm.config.metrics_num_episodes_for_smoothing),
                steps_per_s=result.get(f"{NUM_ENV_STEPS_SAMPLED}_this_iter", 0) / seconds
                if seconds
                else None,
                done=self.stop_criteria.spent(result) if self.stop_criteria else None,
                notes=league.bar_notes(result),
            )
        )

    def on_checkpoint_loaded(self, *, algorithm, **kwargs) -> None:
        self.env_steps_before = env_steps_sampled(algorithm)


def env_steps_sampled(algo: Any) -> int:
    """Steps of the game the algorithm has sampled so far (a restored checkpoint's included): RLlib's own
    counter, which counts steps of the game whatever `count_steps_by` says."""
    return int(algo._counters.get(NUM_ENV_STEPS_SAMPLED, 0))


def env_steps_in_result(result: Dict[str, Any], env_steps_before: int) -> int:
    """Sets `timesteps_total` and the env-step counters of an RLlib result to steps of the game, and returns
    the total. With `count_steps_by: agent_steps` (the suite's default) RLlib puts agent steps there; its own
    `num_env_steps_sampled` counter always counts steps of the game."""
    env_steps = int(result.get(NUM_ENV_STEPS_SAMPLED, 0))
    result["timesteps_total"] = result[NUM_ENV_STEPS_SAMPLED_LIFETIME] = env_steps
    result[f"{NUM_ENV_STEPS_SAMPLED}_this_iter"] = env_steps - env_steps_before
    return env_steps


def iteration_line(result: Dict[str, Any], restarted_runners: int) -> str:
    """The plain progress line of an iteration."""
    runners = result.get("env_runners", {})
    return (
        f"iteration {result['training_iteration']} | steps {result.get('timesteps_total')} | "
        f"episodes {result.get('episodes_total')} | "
        f"reward mean {runners.get('episode_reward_mean', float('nan')):.2f} | "
        f"{result.get('time_this_iter_s', 0):.1f} s | env runner restarts {restarted_runners}"
        f"{league.human_summary(result)}"
    )


def count_env_restarts(algo: Any) -> int:
    """Games relaunched so far (`max_env_restarts`) by every env of every env runner, the evaluation runners'
    included, asked through RLlib."""
    total = 0
    for group in (algo.env_runner_group, getattr(algo, "eval_env_runner_group", None)):
        if group is not None:
            total += sum(
                group.foreach_env_runner(
                    lambda runner: sum(env.restarts.used for env in runner.foreach_env(lambda env: env))
                )
            )
    return total


def iteration_payload(
    result: Dict[str, Any],
    checkpoints: int = 0,
    env_restarts: int = 0,
    identity: Optional[Dict[str, str]] = None,
    env_runner_restarts: int = 0,
) -> Dict[str, Any]:
    """The controller's iteration sample from an RLlib (old API stack) result dict, with the checkpoints on
    disk, the games relaunched, the env runners restarted (also a custom metric, so the controller charts it)
    and the run's identity (`metrics.run_identity`; the result's date)."""
    runners = result.get("env_runners", {})
    custom_by_policy: Dict[str, Dict[str, float]] = defaultdict(dict)
    overall: Dict[str, list] = defaultdict(list)
    for name, value in (runners.get("custom_metrics") or {}).items():
        if not name.endswith("_mean") or SEPARATOR not in name:
            continue
        policy, key = name[: -len("_mean")].split(SEPARATOR, 1)
        if number_or_none(value) is not None:
            custom_by_policy[policy][key] = float(value)
            overall[key].append(float(value))
    learner = result.get("info", {}).get("learner", {})
    hist = runners.get("hist_stats", {})
    policy_ids = set(runners.get("policy_reward_mean", {})) | set(learner) | set(custom_by_policy)
    episodes_this_iter = int(runners.get("episodes_this_iter", runners.get("num_episodes", 0)) or 0)
    policies = {}
    for policy in sorted(policy_ids):
        stats = dict(learner.get(policy, {}).get("learner_stats", {}))
        if "cur_lr" in stats:
            stats["learning_rate"] = stats.pop("cur_lr")
        policies[policy] = metrics.policy_metrics(
            reward_mean=number_or_none(runners.get("policy_reward_mean", {}).get(policy)),
            reward_min=number_or_none(runners.get("policy_reward_min", {}).get(policy)),
            reward_max=number_or_none(runners.get("policy_reward_max", {}).get(policy)),
            episode_len_mean=number_or_none(runners.get("episode_len_mean")),
            completed_episodes=min(episodes_this_iter, len(hist.get(f"policy_{policy}_reward", []))),
            learner_stats=stats,
            custom_metrics=custom_by_policy.get(policy, {}),
        )
    timesteps = int(result.get("timesteps_total") or result.get("num_env_steps_sampled_lifetime") or 0)
    payload = metrics.iteration_payload(
        training_iteration=int(result.get("training_iteration", 0)),
        timesteps_total=timesteps,
        episodes_total=int(result.get("episodes_total", 0)),
        episodes_this_iter=episodes_this_iter,
        episode_reward_mean=number_or_none(runners.get("episode_reward_mean")),
        episode_reward_min=number_or_none(runners.get("episode_reward_min")),
        episode_reward_max=number_or_none(runners.get("episode_reward_max")),
        episode_len_mean=number_or_none(runners.get("episode_len_mean")),
        time_this_iter_s=float(result.get("time_this_iter_s", 0.0)),
        time_total_s=float(result.get("time_total_s", 0.0)),
        env_steps_this_iter=int(result.get("num_env_steps_sampled_this_iter", 0)),
        num_env_steps_sampled=int(result.get(NUM_ENV_STEPS_SAMPLED, timesteps)),
        num_env_steps_trained=int(result.get("num_env_steps_trained", timesteps)),
        num_agent_steps_sampled=int(
            result.get("num_agent_steps_sampled_lifetime", result.get("num_agent_steps_sampled", 0))
        ),
        num_agent_steps_trained=int(result.get("num_agent_steps_trained", 0)),
        custom_metrics={
            **{key: sum(values) / len(values) for key, values in overall.items()},
            "env_runner_restarts": env_runner_restarts,
        },
        policies=policies,
        checkpoints=checkpoints,
        env_restarts=env_restarts,
        env_runner_restarts=env_runner_restarts,
        date=result.get("date"),
        **(identity or {}),
    )
    league.add_to_payload(payload, result.get("self_play"))
    return payload
