"""What the search says while it runs: a line per trial result, and an `@METRIC` line per trial result
(with the trial's `trial_id`) when CONTROLLER_METRICS is set."""

import math
from typing import Any, Dict, List

from ray.tune import Callback

from godot_rl_cli import metrics


class SearchReporter(Callback):
    def __init__(self, metric: str):
        self.metric = metric

    def on_trial_result(
        self, iteration: int, trials: List[Any], trial: Any, result: Dict, **info: Any
    ) -> None:
        if result.get("interrupted"):
            return
        value = result.get(self.metric, math.nan)
        print(
            f"{trial} | iteration {result.get('training_iteration')} | steps {result.get('steps')} | "
            f"{self.metric} {value:.3f}",
            flush=True,
        )
        if metrics.metrics_enabled():
            metrics.emit_metric(search_payload(trial, result, self.metric))

    def on_trial_complete(self, iteration: int, trials: List[Any], trial: Any, **info: Any) -> None:
        print(f"{trial} ended", flush=True)

    def on_trial_error(self, iteration: int, trials: List[Any], trial: Any, **info: Any) -> None:
        print(f"{trial} failed (the search goes on)", flush=True)


def search_payload(trial: Any, result: Dict[str, Any], metric: str) -> Dict[str, Any]:
    """An iteration sample of one trial: its identity (`trial_id` is in the trial directory's name) and the
    search's numbers as custom metrics."""
    steps = int(result.get("steps") or 0)
    return metrics.iteration_payload(
        training_iteration=int(result.get("training_iteration") or 0),
        timesteps_total=steps,
        episodes_total=0,
        episodes_this_iter=0,
        time_this_iter_s=float(result.get("time_this_iter_s") or 0.0),
        time_total_s=float(result.get("time_total_s") or 0.0),
        env_steps_this_iter=0,
        custom_metrics={
            name: result.get(name) for name in ("reward_recent", "eval_reward_mean") if name in result
        },
        episode_reward_mean=result.get("episode_reward_mean"),
        trial_id=trial.trial_id,
        experiment_id=getattr(trial, "experiment_dir_name", None) or "",
        experiment_tag=str(trial),
        search_metric=metric,
        search_metric_value=result.get(metric),
    )
