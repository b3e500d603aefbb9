"""Lost env runners (a killed process, a preempted or removed node), handled by Ray's own fault tolerance.

Ray restarts a lost env runner actor (`restart_failed_env_runners`), at most `max_num_env_runner_restarts`
times per runner; the restarted runner builds its env again, which starts its game on the same port. RLlib
counts the runners brought back into service (`EnvRunnerGroup.num_remote_worker_restarts()`). What Ray does
not do is end the run once a runner is gone for good (its restarts spent, or no node left to place it on):
it samples with the others, or waits. `LostRunnerWatch` says when that is the case, so the training script
ends with one error and the last checkpoint. A runner whose game failed beyond `max_env_restarts` exits (Ray
only reports that it died), so its env leaves the game's error in Ray's key-value store (`report_game_error`)
for that one error line to name.
"""

import time
from typing import Any, Dict, Optional

import ray
from ray.exceptions import ActorDiedError
from ray.experimental import internal_kv

# Ray's names; the YAML overrides each (Ray's 60 s delay and 1000 restarts suit long jobs, not a game that
# restarts in seconds).
FAULT_TOLERANCE_DEFAULTS: Dict[str, Any] = {
    "restart_failed_env_runners": True,
    "max_num_env_runner_restarts": 3,
    "delay_between_env_runner_restarts_s": 1.0,
    "env_runner_health_probe_timeout_s": 30.0,
}
# How long a lost runner may take to come back (placed, started, its game connected) before the run ends.
RUNNER_RETURN_TIMEOUT_S = 120.0


def _game_error_key(runner: int) -> str:
    return f"godot_rl_cli:{ray.get_runtime_context().get_job_id()}:game_error:{runner}"


def report_game_error(runner: Optional[int], error: Optional[Exception]) -> None:
    """Keeps the error of the game that ends training env runner `runner` for the driver's `LostRunnerWatch`;
    None forgets an earlier one (a restarted runner starts clean). A no-op in the driver's own env runner (0)
    or outside Ray."""
    if not (runner and ray.is_initialized() and internal_kv._internal_kv_initialized()):
        return
    if error is None:
        internal_kv._internal_kv_del(_game_error_key(runner))
    else:
        internal_kv._internal_kv_put(_game_error_key(runner), str(error), overwrite=True)


def reported_game_error(runner: int) -> Optional[str]:
    """The error `report_game_error` kept for `runner`, if any."""
    value = internal_kv._internal_kv_get(_game_error_key(runner))
    return value.decode("utf-8", "replace") if value else None


def runner_restarts(algo: Any) -> int:
    """Env runners restarted and back in service so far (RLlib's own count)."""
    group = algo.env_runner_group
    return int(group.num_remote_worker_restarts()) if group else 0


class LostRunnerWatch:
    """Tells after an iteration whether an env runner is gone for good: dead with its restarts spent, or not
    back within `timeout_s` (no node can take it)."""

    def __init__(self, algo: Any, timeout_s: float = RUNNER_RETURN_TIMEOUT_S):
        self.algo = algo
        self.timeout_s = timeout_s
        self.lost_since: Dict[int, float] = {}

    def lost_runner(self) -> Optional[str]:
        """None while every runner is in service or on its way back; else why the run cannot go on."""
        group = self.algo.env_runner_group
        if not group or group.num_remote_workers() == 0:
            return None
        config = self.algo.config
        manager = group._worker_manager  # RLlib's FaultTolerantActorManager: per-runner health and errors
        unhealthy = [i for i in manager.actor_ids() if not manager.is_actor_healthy(i)]
        now = time.monotonic()
        self.lost_since = {i: self.lost_since.get(i, now) for i in unhealthy}
        if not unhealthy:
            return None
        results = manager.foreach_actor(  # RLlib's probe, but keeping each runner's error
            "ping",
            remote_actor_ids=unhealthy,
            healthy_only=False,
            timeout_seconds=config.env_runner_health_probe_timeout_s,
            mark_healthy=True,
        )
        for result in results:
            if result.ok:
                self.lost_since.pop(result.actor_id, None)
            elif isinstance(result.get(), ActorDiedError):
                limit = config.max_num_env_runner_restarts if config.restart_failed_env_runners else 0
                game_error = reported_game_error(result.actor_id)
                return (
                    f"env runner {result.actor_id} was lost and cannot be restarted "
                    f"(max_num_env_runner_restarts {limit} spent, or restarts are off); "
                    + (f"its game failed: {game_error}" if game_error else "Ray logged its last error above")
                )
        missing = ", ".join(f"{name} {amount}" for name, amount in self._missing_resources().items())
        for runner, since in self.lost_since.items():
            if missing:
                return (
                    f"env runner {runner} was lost and no node of the cluster has the resources it needs "
                    f"({missing}; its node is gone?)"
                )
            if now - since >= self.timeout_s:
                return (
                    f"env runner {runner} was lost and has not come back within {self.timeout_s:.0f} s "
                    "(no node with the resources it needs, e.g. its worker node is gone)"
                )
        return None

    def _missing_resources(self) -> Dict[str, float]:
        """What a runner needs (Ray's resources per env runner) beyond the totals of the live nodes."""
        config = self.algo.config
        needed = {
            "CPU": config.num_cpus_per_env_runner,
            "GPU": config.num_gpus_per_env_runner,
            **(config.custom_resources_per_env_runner or {}),
        }
        total = ray.cluster_resources()
        return {name: amount for name, amount in needed.items() if amount and total.get(name, 0) < amount}
