"""Multi-agent training of a Godot RL Agents game with Ray RLlib, from a YAML file (see --help and README.md).

Uses RLlib's old API stack (see README, "Why the old RLlib API stack"). Exit codes: 0 done or stopped
by SIGINT/SIGTERM (final checkpoint saved); 1 error; 2 bad command line; 130 second SIGINT.
"""

import argparse
import os
import sys
from pathlib import Path
from typing import List, Optional

from godot_rl_cli.cli_types import (
    HelpFormatter,
    add_flag,
    directory_path,
    int_in_range,
    key_value,
    seed_value,
)
from godot_rl_cli.errors import UserError, exit_with_error, print_error
from godot_rl_cli.game import GameError, StopRequested, stop_all_games, validate_env_path
from godot_rl_cli.game.debug_panel import print_debug_panel
from godot_rl_cli.rllib.config import StopCriteria, compile_mapping_function, load_run_spec, resolve_env_path
from godot_rl_cli.rllib.layout import (
    DEFAULT_EXPERIMENT_DIR,
    Trial,
    is_resumable,
    last_result,
    next_checkpoint_index,
    resolve_checkpoint,
)
from godot_rl_cli.threads import add_thread_argument


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Train one or more policies for a Godot RL Agents game with Ray RLlib, configured by a "
        "YAML file. With CONTROLLER_METRICS set, one '@METRIC {json}' line per iteration goes to stdout. "
        "Ctrl+C (SIGINT) saves a final checkpoint, closes the games and shuts Ray down; a second Ctrl+C "
        "skips the checkpoint.",
        formatter_class=HelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument(
        "--config_file",
        default="rllib_config.yaml",
        help="RLlib YAML file (controller projects: .rlcontroller/rllib_config.yaml)",
    )
    parser.add_argument(
        "--experiment_dir",
        type=directory_path,
        default=DEFAULT_EXPERIMENT_DIR,
        help="directory for results and checkpoints",
    )
    parser.add_argument(
        "--resume",
        "--restore",
        dest="resume",
        default=None,
        help="continue from this checkpoint directory (checkpoint_NNNNNN)",
    )
    parser.add_argument(
        "--ray_address",
        default=os.environ.get("RAY_ADDRESS"),
        help="join this Ray cluster instead of starting a local one (also RAY_ADDRESS)",
    )
    add_flag(parser, "env_path", default=None, help="exported game (.x86_64); overrides env_config.env_path")
    seed_help = "seed for RLlib and the games (game i gets seed + i), 0 to 2**32-1; overrides the YAML"
    add_flag(parser, "seed", type=seed_value, default=None, help=seed_help)
    workers_help = "number of env runner processes; overrides the YAML (0: sample in this process)"
    add_flag(parser, "num_workers", type=int_in_range(0), default=None, help=workers_help)
    game_arg_help = "extra --KEY=VALUE argument for the games (repeatable)"
    add_flag(
        parser,
        "game_arg",
        type=key_value,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=game_arg_help,
    )
    onnx_help = (
        "with evaluation on (evaluation_interval in the YAML): write DIR/best_<policy>.onnx at each new best"
    )
    add_flag(parser, "onnx_export_dir", default=None, metavar="DIR", help=onnx_help)
    panel_help = "before training, print what the game sends for one real reset and one real step"
    add_flag(parser, "debug_panel", action="store_true", help=panel_help)
    add_thread_argument(parser)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)

    from godot_rl_cli.signals import StopSignals
    from godot_rl_cli.threads import configure_torch_threads

    threads = configure_torch_threads(args.torch_threads)
    signals = StopSignals(
        "Stopping: saving a final checkpoint and closing the games (signal again to skip the checkpoint)"
    )

    # Everything that can be checked is checked before Ray starts.
    try:
        spec = load_run_spec(args.config_file)
        env_config = dict(spec.env_config)
        env_path = resolve_env_path(env_config, args.env_path)
        if not env_path:
            raise UserError(
                f"no env_path in {args.config_file}", "set env_config.env_path or pass --env_path"
            )
        env_config["env_path"] = validate_env_path(env_path)
        env_config["game_args"] = {**(env_config.get("game_args") or {}), **dict(args.game_arg)}
        if args.seed is not None:
            env_config["seed"] = args.seed
        if args.num_workers is not None:
            spec.settings["num_workers"] = args.num_workers
        resume_from = Path(args.resume).expanduser().absolute() if args.resume else None
        if resume_from and not is_resumable(resume_from):
            resume_from = resolve_checkpoint(resume_from)  # a trial or run directory: its newest checkpoint
            if not is_resumable(resume_from):
                raise UserError(
                    f"--resume {args.resume} is not an RLlib checkpoint (no algorithm_state.pkl or "
                    "rllib_checkpoint.json)",
                    "pass a checkpoint_NNNNNN directory, or the trial directory holding them",
                )
            print(f"--resume {args.resume}: its newest checkpoint is {resume_from}", flush=True)
        mapping_function = compile_mapping_function(spec.mapping_source) if spec.mapping_source else None

        from godot_rl_cli.rllib.evaluation import CheckpointManifests, configure_evaluation
        from godot_rl_cli.rllib.setup import build_config, probe_game  # imports Ray

        game = probe_game(env_config)
        try:
            config, policy_names = build_config(spec, env_config, game, mapping_function)
            evaluating = configure_evaluation(config, spec.settings)
            manifests = CheckpointManifests(args, argv, spec, game, config)
            if args.debug_panel:
                policy_of = config.policy_mapping_fn
                print_debug_panel(game, "RLlib", lambda index: policy_of(index, None, None))
        finally:
            game.close()
    except UserError as error:
        exit_with_error(error.what, error.how)
    except GameError as error:
        exit_with_error(
            str(error), "check that the game starts on its own and uses the Godot RL Agents plugin"
        )
    except (StopRequested, KeyboardInterrupt):
        print("Stopped before training started.", file=sys.stderr)
        return 0

    import ray
    from ray.tune.logger import UnifiedLogger

    from godot_rl_cli import metrics
    from godot_rl_cli.rllib.callbacks import count_env_restarts, iteration_payload
    from godot_rl_cli.rllib.cluster import runtime_env
    from godot_rl_cli.rllib.evaluation import BestCheckpoint, add_to_payload
    from godot_rl_cli.rllib.league import human_summary
    from godot_rl_cli.rllib.runners import LostRunnerWatch, runner_restarts
    from godot_rl_cli.rllib.self_play import resume_league
    from godot_rl_cli.rllib.setup import find_game_error

    try:
        trial = Trial.create(Path(args.experiment_dir).expanduser().absolute(), spec.algorithm)
    except OSError as error:
        exit_with_error(
            f"cannot create the run directory in {args.experiment_dir} ({error.strerror or error})",
            "pass an --experiment_dir you can write to",
        )
    checkpoint_index = next_checkpoint_index(resume_from)
    episodes_offset = int(last_result(resume_from.parent).get("episodes_total", 0)) if resume_from else 0
    trial.write_manifest(
        env_path=env_config["env_path"],
        stop=spec.stop,
        config_sha1=spec.config_sha1,
        resume_from=str(resume_from) if resume_from else None,
        checkpoint_frequency=spec.checkpoint_frequency,
        checkpoint_index_offset=checkpoint_index,
    )
    print(f"Results and checkpoints: {trial.directory}", flush=True)
    onnx_dir = Path(args.onnx_export_dir).expanduser().absolute() if args.onnx_export_dir else None
    best = BestCheckpoint(trial.directory, manifests, onnx_dir) if evaluating else None
    print(f"Torch threads for the learner: {threads}", flush=True)

    ray.init(
        address=args.ray_address or "local",  # never join a cluster that happens to run here unless asked
        include_dashboard=False if not args.ray_address else None,
        num_cpus=None if args.ray_address else max(2, int(config.num_env_runners) + 1),
        runtime_env=runtime_env(args.ray_address),
        log_to_driver=True,
        configure_logging=False,
    )
    signals.install()  # Ray's SIGTERM handler would end the run without its final checkpoint
    exit_code = 0
    algo = None
    last_saved_iteration = None

    def save_checkpoint() -> None:
        nonlocal checkpoint_index, last_saved_iteration
        path = trial.save_checkpoint(algo, checkpoint_index)
        manifests.write(algo, path)
        print(f"Saved checkpoint {path}", flush=True)
        checkpoint_index += 1
        last_saved_iteration = algo.iteration

    try:
        algo = config.build_algo(
            logger_creator=lambda algorithm_config: UnifiedLogger(
                algorithm_config, str(trial.directory), loggers=None
            )
        )
        algo.callbacks.episodes_offset = episodes_offset
        runner_watch = LostRunnerWatch(algo)
        if resume_from:
            try:
                algo.restore(str(resume_from))
            except Exception as error:
                last_saved_iteration = algo.iteration  # nothing trained: nothing to save
                raise UserError(
                    f"cannot resume from {resume_from} ({type(error).__name__}: {error})".splitlines()[0],
                    "pass an intact checkpoint_NNNNNN directory",
                ) from None
            resume_league(algo, resume_from)
            print(f"Resumed from {resume_from} at iteration {algo.iteration}", flush=True)
        stop = StopCriteria(spec.stop, trial_dir=trial.directory)
        print(
            f"Training policies {', '.join(policy_names)}; stop: {spec.stop or 'manual (SIGINT)'}", flush=True
        )
        while signals.received == 0:
            result = algo.train()
            runners = result.get("env_runners", {})
            restarted_runners = runner_restarts(algo)
            print(
                f"iteration {result['training_iteration']} | steps {result.get('timesteps_total')} | "
                f"episodes {result.get('episodes_total')} | "
                f"reward mean {runners.get('episode_reward_mean', float('nan')):.2f} | "
                f"{result.get('time_this_iter_s', 0):.1f} s | env runner restarts {restarted_runners}"
                f"{human_summary(result)}",
                flush=True,
            )
            evaluation = best.update(algo, result) if best else {}
            if evaluation:
                print(
                    f"evaluation {result['training_iteration']} | reward mean "
                    f"{evaluation['eval_reward_mean']:.2f} | best {best.reward:.2f} (iteration "
                    f"{best.iteration})",
                    flush=True,
                )
            if spec.checkpoint_frequency and result["training_iteration"] % spec.checkpoint_frequency == 0:
                save_checkpoint()
            if metrics.metrics_enabled():  # after the save: `checkpoints` is what is on disk
                identity = metrics.run_identity(trial.experiment_tag, trial.trial_id, trial.experiment_id)
                payload = iteration_payload(
                    result,
                    len(trial.checkpoints()),
                    count_env_restarts(algo),
                    identity,
                    env_runner_restarts=restarted_runners,
                )
                add_to_payload(payload, evaluation)
                metrics.emit_metric(payload)
            lost = runner_watch.lost_runner()
            if lost:
                raise UserError(lost, "the last checkpoint is saved: --resume from it")
            reason = stop.reason(result)
            if reason:
                print(f"Stopping: {reason}", flush=True)
                break
    except StopRequested:
        pass  # SIGINT while a game was being waited for: checkpoint below
    except UserError as error:
        print_error(error.what, error.how)
        exit_code = 1
    except KeyboardInterrupt:
        exit_code = 130
    except (
        Exception
    ) as error:  # Ray wraps failures of its workers; report the game's own error when there is one
        game_error = find_game_error(error)
        what = (
            str(game_error)
            if game_error
            else f"training failed: {type(error).__name__}: {error}".splitlines()[0]
        )
        print_error(what, "the last checkpoint is saved" if algo else None)
        exit_code = 1

    try:
        if algo is not None and exit_code != 130 and last_saved_iteration != algo.iteration:
            save_checkpoint()
    except KeyboardInterrupt:
        exit_code = 130
    except Exception as error:
        print_error(f"saving the final checkpoint failed: {error}", "check free disk space")
        exit_code = 1
    finally:
        if algo is not None:
            try:
                algo.stop()
            except Exception:
                pass
        stop_all_games()
        ray.shutdown()
    if best is not None:
        print(best.summary(), flush=True)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
