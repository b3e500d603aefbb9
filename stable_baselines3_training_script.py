"""Train one policy for a Godot RL Agents game with Stable-Baselines3 (see --help and README.md).

Exit codes: 0 done or stopped by SIGINT/SIGTERM (model saved); 1 error (model saved when training
had started); 2 bad command line; 130 stopped by a second SIGINT (no save).
"""

from godot_rl_cli.signals import exit_cleanly_on_stop_signals

# before the other imports: a signal while they load is a clean exit
exit_cleanly_on_stop_signals(
    "nobody reads stdout any more (broken pipe): training goes on and the model is saved as usual; "
    "its lines are dropped"
)

import sys
import time
from pathlib import Path
from typing import List, Optional

from godot_rl_cli.errors import UserError, exit_with_error, print_error, print_warning
from godot_rl_cli.game import GameError, GameSettings, StopRequested, validate_env_path
from godot_rl_cli.sb3.options import parse_args


def close_all(*envs) -> None:
    """Close every env that was started (each stops its games)."""
    for env in envs:
        if env is not None:
            env.close()


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)

    from godot_rl_cli.threads import configure_torch_threads

    threads = configure_torch_threads(args.torch_threads)
    from stable_baselines3.common.callbacks import CallbackList
    from stable_baselines3.common.utils import set_random_seed
    from stable_baselines3.common.vec_env import VecMonitor

    from godot_rl_cli import metrics
    from godot_rl_cli.game.debug_panel import print_debug_panel
    from godot_rl_cli.onnx.recipe import VerificationError
    from godot_rl_cli.onnx.sb3 import export_sb3_model
    from godot_rl_cli.sb3.callbacks import (
        AtomicCheckpointCallback,
        ControllerMetricsCallback,
        StopWhenRequested,
        save_model_atomically,
    )
    from godot_rl_cli.sb3.evaluation import start_evaluation
    from godot_rl_cli.sb3.inference import run_inference
    from godot_rl_cli.sb3.manifests import ModelManifests
    from godot_rl_cli.sb3.model import (
        algorithm_class,
        check_action_space,
        check_device,
        check_model_file,
        hyperparameters,
        load_model,
    )
    from godot_rl_cli.sb3.policies import check_policy_type, policy_kwargs_for
    from godot_rl_cli.sb3.vec_env import GodotVecEnv
    from godot_rl_cli.signals import StopSignals

    stopper = StopWhenRequested()
    StopSignals(
        "Stopping: saving the model and closing the game (signal again to skip the save)",
        on_first=lambda: setattr(stopper, "requested", True),
    )
    experiment_dir = Path(args.experiment_dir).expanduser().absolute()
    final_model = args.final_model

    # Check everything that can be checked before a game starts.
    env = None
    eval_env = None
    model = None
    try:
        if args.env_path:
            args.env_path = validate_env_path(args.env_path)
        check_policy_type(args.policy_type)
        check_device(args.device)
        if args.resume_model_path:
            check_model_file(args.resume_model_path)  # loaded below, with the games
        set_random_seed(args.seed)
        env = GodotVecEnv(GameSettings.from_args(args), args.n_parallel)
        check_action_space(args.algo, env.action_space)
        if args.eval_freq:  # one more game, numbered after the training games (port + n_parallel)
            eval_env = VecMonitor(GodotVecEnv(GameSettings.from_args(args), 1, first_game=args.n_parallel))
        if args.debug_panel:
            print_debug_panel(env.games[0], "Stable-Baselines3")
        monitored_env = VecMonitor(env)
        if args.resume_model_path:  # with this run's envs: their number may differ from the saved run's
            model = load_model(args.algo, args.resume_model_path, args.device, monitored_env)
    except UserError as error:
        close_all(env, eval_env)
        exit_with_error(error.what, error.how)
    except GameError as error:
        close_all(env, eval_env)
        exit_with_error(
            str(error), "check that the game starts on its own and uses the Godot RL Agents plugin"
        )
    except (StopRequested, KeyboardInterrupt):
        close_all(env, eval_env)
        print("Stopped before training started; nothing to save.", file=sys.stderr)
        return 0

    print(
        f"Game ready: {env.num_envs} agent(s) in {args.n_parallel} process(es), policy '{env.policy_name}', "
        f"observations {env.observation_space}, actions {env.action_space}; torch threads {threads}",
        flush=True,
    )
    manifests = ModelManifests(args, argv, env.games[0], env.policy_name, args.n_parallel)
    evaluation = None
    exit_code = 0
    training_started = False
    try:
        if model is None:
            policy_kwargs = policy_kwargs_for(
                args.policy_type,
                args.policy_hidden_layers,
                env.observation_space,
                args.cnn_channels,
                args.grn_hidden_size,
            )
            try:
                model = algorithm_class(args.algo)(
                    "MultiInputPolicy",
                    monitored_env,
                    policy_kwargs=policy_kwargs,
                    tensorboard_log=str(experiment_dir),
                    seed=args.seed,
                    device=args.device,
                    verbose=1,
                    **hyperparameters(args, env.num_envs),
                )
            except (AssertionError, ValueError, RuntimeError) as error:  # SB3's and torch's own checks
                raise UserError(
                    f"--algo {args.algo} cannot be built with these settings: {error}",
                    f"change the hyperparameter or --device flags ({env.num_envs} env(s) here; see --help)",
                ) from None
            model.controller_algo = args.algo  # saved in the zip's metadata, read by convert_sb3_to_onnx.py
        else:
            saved_arch = model.policy_kwargs.get("net_arch")
            if saved_arch is not None and list(saved_arch) != list(args.policy_hidden_layers):
                print_warning(
                    f"resuming keeps the saved network {saved_arch}; "
                    f"--policy-hidden-layers {args.policy_hidden_layers} ignored"
                )
            model.tensorboard_log = str(experiment_dir)

        identity = metrics.run_identity(args.experiment_name)
        if args.inference:
            episodes = run_inference(
                model,
                monitored_env,
                args.timesteps,
                env.policy_name,
                lambda: stopper.requested,
                lambda: env.restarts.used,
                identity,
            )
            print(f"Inference finished: {episodes} episode(s).", flush=True)
        else:
            training_started = True
            checkpoints = (
                AtomicCheckpointCallback(
                    experiment_dir, args.save_checkpoint_frequency, after_save=manifests.write
                )
                if args.save_checkpoint_frequency
                else None
            )

            def restarts() -> int:
                return env.restarts.used + (eval_env.unwrapped.restarts.used if eval_env else 0)

            reporter = ControllerMetricsCallback(env.policy_name, checkpoints, restarts, identity)
            if eval_env is not None:
                evaluation = start_evaluation(
                    args,
                    eval_env,
                    env.num_envs,
                    experiment_dir,
                    lambda: reporter.iteration + 1,
                    manifests.write,
                )
                reporter.extra_fields = evaluation.take_metrics
            # an evaluation due at the step of an off-policy iteration's line goes into that line
            callbacks = [stopper] + ([evaluation] if evaluation else []) + [reporter]
            callbacks += [checkpoints] if checkpoints else []
            rollout_size = getattr(model, "n_steps", 1) * env.num_envs
            started = time.monotonic()
            model.learn(
                total_timesteps=args.timesteps,
                callback=CallbackList(callbacks),
                reset_num_timesteps=args.resume_model_path is None,
                tb_log_name=args.experiment_name,
                log_interval=max(1, 2048 // rollout_size),
            )
            elapsed = time.monotonic() - started
            print(f"Training finished: {model.num_timesteps} steps in total, {elapsed:.1f} s.", flush=True)
    except UserError as error:
        print_error(error.what, error.how)
        exit_code = 1
    except StopRequested:
        pass  # SIGINT while waiting for the game: save below
    except GameError as error:
        print_error(str(error), "the model trained so far is saved" if training_started else None)
        exit_code = 1
    except ConnectionError as error:  # a broken pipe or reset connection is no disk problem
        print_error(f"a connection broke: {error}", "the model trained so far is saved")
        exit_code = 1
    except OSError as error:
        print_error(
            f"writing a file failed: {error}",
            "check free disk space and permissions of the experiment directory",
        )
        exit_code = 1
    except KeyboardInterrupt:
        exit_code = 130

    try:
        if training_started and exit_code != 130:
            model_path = final_model.path_for(complete=exit_code == 0 and not stopper.requested)
            save_model_atomically(model, model_path)
            manifests.write(model, model_path)
            print(f"Model saved to {model_path}", flush=True)
            if model_path != final_model.path:
                print_warning(
                    f"the model so far is saved to {model_path}; "
                    f"the complete model {final_model.path} is kept"
                )
            if args.onnx_export_path and exit_code == 0:
                onnx_path = Path(args.onnx_export_path).expanduser().absolute()
                summary = export_sb3_model(model, onnx_path, algo=args.algo)
                print(f"ONNX model exported: {summary}", flush=True)
    except KeyboardInterrupt:
        exit_code = 130
    except (OSError, UserError, VerificationError, ValueError, RuntimeError) as error:
        print_error(f"saving failed: {error}", "check free disk space and permissions of the output paths")
        exit_code = 1
    finally:
        close_all(monitored_env, eval_env)
    if evaluation is not None:
        print(evaluation.summary(), flush=True)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
