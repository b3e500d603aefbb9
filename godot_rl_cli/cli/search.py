"""hyperparameter_search.py / godot-search: tune the SB3 or RLlib trainer on a game with Ray Tune.

Exit codes: 0 search done or stopped by SIGINT/SIGTERM (finished trials kept; --resume continues); 1 error
(one ERROR line), or no trial finished; 2 bad command line; 130 second SIGINT.
"""

import math
import os
import signal
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from godot_rl_cli.errors import UserError, exit_with_error, print_error, print_warning
from godot_rl_cli.search.options import SearchOptions, parse_args

TUNE_STATE_FILES = ("tuner.pkl",)
PRUNING_METRIC = "reward_recent"


@dataclass
class Prepared:
    """Everything checked before Ray starts."""

    options: SearchOptions
    space: Any  # SearchSpace
    plan: Any  # SearchPlan
    metric: str
    trial_cpus: int  # what Tune reserves per trial
    cpus_per_trial: int  # what a trial keeps busy in all (its games and its learner)


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    options = parse_args(argv)
    try:
        prepared = prepare(options)
    except UserError as error:
        exit_with_error(error.what, error.how)
    return run(prepared)


def prepare(options: SearchOptions) -> Prepared:
    """Check the flags, the space, the trainer's arguments, the metric and the experiment directory."""
    from godot_rl_cli.game import validate_env_path
    from godot_rl_cli.search.options import check_budget, choose_metric
    from godot_rl_cli.search.plan import SearchPlan
    from godot_rl_cli.search.space import default_space_path, load_space

    args = options.args
    check_budget(args)
    if args.trainer == "sb3":
        from godot_rl_cli.search.options import sb3_known_hyperparameters, sb3_trainer_namespace

        if not args.env_path:
            raise UserError("--env_path is required for --trainer sb3", "pass the exported game (.x86_64)")
        env_path = validate_env_path(args.env_path)
        trainer = sb3_trainer_namespace(options.trainer_args, env_path, args.algo)
        evaluating = trainer.eval_freq is not None
        games = trainer.n_parallel + (1 if evaluating else 0)
        trial_cpus = cpus_per_trial = games + 1
        algorithm, base_config = args.algo, None
        known = sb3_known_hyperparameters(args.algo)
        what, hint = f"SB3 flag searchable for {args.algo}", "see stable_baselines3_training_script.py --help"
    else:
        import yaml

        from godot_rl_cli.rllib.config import load_run_spec, resolve_env_path
        from godot_rl_cli.search.options import rllib_known_keys

        spec = load_run_spec(args.config_file)
        env_path = resolve_env_path(spec.game.env_path, args.env_path)
        if not env_path:
            raise UserError(
                f"no env_path in {args.config_file}", "set env_config.env_path or pass --env_path"
            )
        env_path = validate_env_path(env_path)
        base_config = yaml.safe_load(Path(args.config_file).read_text(encoding="utf-8"))
        evaluating = bool(spec.settings.get("evaluation_interval"))
        workers = int(spec.settings.get("num_workers", spec.settings.get("num_env_runners", 0)) or 0)
        envs = int(spec.settings.get("num_envs_per_worker", spec.settings.get("num_envs_per_env_runner", 1)))
        games = max(1, workers) * envs + (1 if evaluating else 0)
        cpus_per_trial = games + 1
        trial_cpus = cpus_per_trial if workers == 0 else 1  # env runners ask Ray for their own CPUs
        algorithm = spec.algorithm
        known = rllib_known_keys(algorithm)
        what, hint = f"RLlib {algorithm} setting", "use the YAML key names of rllib_config.yaml"
    space_path = Path(args.search_space) if args.search_space else default_space_path(args.trainer, algorithm)
    space = load_space(space_path, known, what, hint)
    metric = choose_metric(args.metric, evaluating)
    check_experiment_dir(options)
    plan = SearchPlan(
        trainer=args.trainer,
        env_path=env_path,
        timesteps=args.timesteps,
        base_port=args.port,
        games_per_trial=games,
        seed=args.seed,
        stop_key=f"godot_search_stop_{uuid.uuid4().hex}",
        trainer_args=options.trainer_args,
        game_args=dict(args.game_args),
        algorithm=algorithm,
        base_config=base_config,
    )
    last_port = plan.trial_port(args.num_trials)
    if args.port < 1024 or last_port > 65535:
        raise UserError(
            f"{args.num_trials} trials of {plan.port_block} ports from --port {args.port} end at {last_port}",
            "pass a lower --port or fewer --num_trials (ports 1024-65535)",
        )
    return Prepared(options, space, plan, metric, trial_cpus, cpus_per_trial)


def check_experiment_dir(options: SearchOptions) -> None:
    path = options.experiment_path
    has_search = any((path / name).exists() for name in TUNE_STATE_FILES)
    if options.args.resume and not has_search:
        raise UserError(
            f"--resume: no search in {path}", "pass the --experiment_dir/--experiment_name it used"
        )
    if not options.args.resume and path.exists() and any(path.iterdir()):
        raise UserError(
            f"{path} already holds a search", "pass --resume to continue it, or another --experiment_name"
        )


def run(prepared: Prepared) -> int:
    """Start Ray, run the search, report it; SIGINT/SIGTERM stops the trials (each saves)."""
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # ours stops the trainers first, then Tune (SIGUSR1)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    import ray

    from godot_rl_cli.rllib.cluster import runtime_env

    args = prepared.options.args
    ray.init(
        address=args.ray_address or "local",
        num_cpus=None if args.ray_address else os.cpu_count(),
        include_dashboard=False,
        runtime_env=runtime_env(args.ray_address),
        log_to_driver=False,
        configure_logging=False,
    )
    try:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        if prepared.trial_cpus > cpus:  # else Tune waits forever for a trial it cannot place
            print_warning(
                f"a trial runs {prepared.trial_cpus} processes (games, learner) on {cpus} CPUs, shared"
            )
            prepared.trial_cpus = prepared.cpus_per_trial = cpus
        max_concurrent = args.max_concurrent or max(1, cpus // prepared.cpus_per_trial)
        print(
            f"Search: {args.num_trials} trials of {args.timesteps} steps, up to {max_concurrent} at once "
            f"({prepared.cpus_per_trial} CPUs each: games and learner), maximising {prepared.metric}; "
            f"{prepared.options.experiment_path}",
            flush=True,
        )
        stopper = SearchStop(prepared.plan.stop_key)
        result_grid = fit(prepared, max_concurrent)
        from godot_rl_cli.search.trial import wait_for_trainers

        wait_for_trainers(prepared.options.experiment_path, ray.util.get_node_ip_address())
        return report(prepared, result_grid, stopper.requested)
    except KeyboardInterrupt:
        return 130
    finally:
        ray.shutdown()


class SearchStop:
    """First SIGINT/SIGTERM: tell every trial to stop its trainer (they save), then Tune (SIGUSR1) to end
    the search keeping its state. Second: KeyboardInterrupt."""

    def __init__(self, stop_key: str):
        self.stop_key = stop_key
        self.requested = False
        signal.signal(signal.SIGINT, self._handle)
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        from ray.experimental.internal_kv import _internal_kv_put

        self.requested = True
        print(
            "Stopping the search: each running trial saves; --resume continues it",
            file=sys.stderr,
            flush=True,
        )
        _internal_kv_put(self.stop_key, b"1")
        os.kill(os.getpid(), signal.SIGUSR1)


def fit(prepared: Prepared, max_concurrent: int) -> Any:
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, MedianStoppingRule
    from ray.tune.search.optuna import OptunaSearch

    from godot_rl_cli.search.reporting import SearchReporter
    from godot_rl_cli.search.trial import GameTrial

    args = prepared.options.args
    path = prepared.options.experiment_path
    trainable = tune.with_resources(
        tune.with_parameters(GameTrial, plan=prepared.plan), {"cpu": prepared.trial_cpus}
    )
    if args.resume:
        tuner = tune.Tuner.restore(str(path), trainable, resume_unfinished=True, resume_errored=False)
        return tuner.fit()
    grace = max(1, args.timesteps // 4)
    # Pruning compares the episode reward of every iteration; an evaluation reward exists only at evaluations.
    pruning = {"metric": PRUNING_METRIC, "mode": "max", "time_attr": "steps", "grace_period": grace}
    scheduler = {
        "asha": lambda: ASHAScheduler(max_t=args.timesteps, **pruning),
        "median": lambda: MedianStoppingRule(min_samples_required=2, **pruning),
        "none": FIFOScheduler,
    }[args.pruner]()
    searcher = OptunaSearch(
        metric=prepared.metric,
        mode="max",
        seed=args.seed,
        points_to_evaluate=prepared.space.first_trials or None,
    )
    tuner = tune.Tuner(
        trainable,
        param_space=prepared.space.to_tune(),
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=args.num_trials,
            max_concurrent_trials=max_concurrent,
            time_budget_s=args.time_budget_s,
            trial_name_creator=trial_name,
            trial_dirname_creator=trial_dirname,
            reuse_actors=True,  # an actor's trainer server imports torch and SB3 once (search/launch.py)
        ),
        run_config=tune.RunConfig(
            name=path.name,
            storage_path=str(path.parent),
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
            checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=False),  # a trial's run saves itself
            callbacks=[SearchReporter(prepared.metric)],
        ),
    )
    return tuner.fit()


def trial_name(trial: Any) -> str:
    """`trial_007`: the search's own trial numbers (Tune's tag starts with its 1-based counter)."""
    return f"trial_{int(trial.experiment_tag.split('_')[0]) - 1:03d}"


def trial_dirname(trial: Any) -> str:
    return f"{trial_name(trial)}_{trial.trial_id}"


def report(prepared: Prepared, result_grid: Any, interrupted: bool) -> int:
    from godot_rl_cli.search.plot import plot_search
    from godot_rl_cli.search.results import (
        BEST_DIR,
        RESULTS_CSV,
        best_row,
        collect_rows,
        table,
        write_best,
        write_csv,
    )

    path = prepared.options.experiment_path
    rows = collect_rows(result_grid, prepared.metric)
    print(table(rows, prepared.metric), flush=True)
    write_csv(rows, path / RESULTS_CSV)
    plot_search(rows, prepared.space, prepared.metric, path / "search.png")
    print(f"Results: {path / RESULTS_CSV}, plot: {path / 'search.png'}", flush=True)
    counts: Dict[str, int] = {}
    for row in rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    print("Trials: " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items())), flush=True)
    best = best_row(rows)
    if best is None:
        if interrupted:
            print("Stopped before any trial finished; --resume continues the search.", flush=True)
            return 0
        print_error(
            "no trial finished", "see the failed trials' errors in the table; trainer.log in each trial"
        )
        return 1
    command = write_best(best, prepared.plan, path / BEST_DIR)
    value = "nan" if math.isnan(best.metric) else f"{best.metric:.4g}"
    print(f"Best: {best.trial} ({prepared.metric} {value}): {best.settings}", flush=True)
    print(f"Train with it: python {command}", flush=True)
    if interrupted:
        print("Search stopped; rerun the same command with --resume to finish it.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
