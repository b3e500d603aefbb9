"""The steps of one Stable-Baselines3 run, in the order `godot_rl_cli/cli/train_sb3.py` calls them: start the
games, make the model, train (or run --inference), save and export, each failure turned into its exit code.

Exit codes: 0 done or stopped by SIGINT/SIGTERM (model saved); 1 error (model saved when training had
started); 130 stopped by a second SIGINT (no save).
"""

import argparse
import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import CallbackList
from stable_baselines3.common.utils import set_random_seed
from stable_baselines3.common.vec_env import VecMonitor

from godot_rl_cli import metrics
from godot_rl_cli.errors import UserError, print_error, print_warning
from godot_rl_cli.game import GameError, GameSettings, StopRequested, validate_env_path
from godot_rl_cli.game.debug_panel import print_debug_panel
from godot_rl_cli.game.process import stop_was_requested
from godot_rl_cli.onnx.recipe import VerificationError
from godot_rl_cli.onnx.sb3 import export_sb3_model
from godot_rl_cli.sb3.callbacks import (
    AtomicCheckpointCallback,
    ControllerMetricsCallback,
    StopWhenRequested,
    save_model_atomically,
)
from godot_rl_cli.sb3.evaluation import GodotEvalCallback, start_evaluation
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


def experiment_dir(args: argparse.Namespace) -> Path:
    return Path(args.experiment_dir).expanduser().absolute()


def stop_on_signals() -> StopWhenRequested:
    """The callback that ends `learn` at the first SIGINT/SIGTERM (the second skips the save)."""
    stopper = StopWhenRequested()
    StopSignals(
        "Stopping: saving the model and closing the game (signal again to skip the save)",
        on_first=lambda: setattr(stopper, "requested", True),
    )
    return stopper


def check_settings(args: argparse.Namespace) -> None:
    """Everything that can be checked before a game starts."""
    if args.env_path:
        args.env_path = validate_env_path(args.env_path)
    check_policy_type(args.policy_type)
    check_device(args.device)
    if args.resume_model_path:
        check_model_file(args.resume_model_path)  # loaded with the games (Games.start)


@dataclass
class Games:
    """The training games (`env`, and `monitored` as SB3 sees them), the evaluation game and the model to
    resume, once started."""

    env: Optional[GodotVecEnv] = None
    monitored: Optional[VecMonitor] = None
    evaluation: Optional[VecMonitor] = None
    resumed: Optional[BaseAlgorithm] = None

    def start(self, args: argparse.Namespace, settings: GameSettings) -> None:
        set_random_seed(args.seed)
        self.env = GodotVecEnv(settings, args.n_parallel)
        check_action_space(args.algo, self.env.action_space)
        if args.eval_freq:  # one more game, numbered after the training games (port + n_parallel)
            self.evaluation = VecMonitor(GodotVecEnv(settings, 1, first_game=args.n_parallel))
        if args.debug_panel:
            print_debug_panel(self.env.games[0], "Stable-Baselines3")
        self.monitored = VecMonitor(self.env)
        if args.resume_model_path:  # with this run's envs: their number may differ from the saved run's
            self.resumed = load_model(args.algo, args.resume_model_path, args.device, self.monitored)

    def restarts(self) -> int:
        return self.env.restarts.used + (self.evaluation.unwrapped.restarts.used if self.evaluation else 0)

    def close(self) -> None:
        """Close every env that was started (each stops its games)."""
        for env in (self.env, self.evaluation):
            if env is not None:
                env.close()


def announce(games: Games, n_parallel: int, threads: int) -> None:
    env = games.env
    print(
        f"Game ready: {env.num_envs} agent(s) in {n_parallel} process(es), policy '{env.policy_name}', "
        f"observations {env.observation_space}, actions {env.action_space}; torch threads {threads}",
        flush=True,
    )


def manifests_for(args: argparse.Namespace, argv: List[str], games: Games) -> ModelManifests:
    return ModelManifests(args, argv, games.env.games[0], games.env.policy_name, args.n_parallel)


def model_for(args: argparse.Namespace, games: Games) -> BaseAlgorithm:
    """The resumed model (keeping its saved network), else a new one built from the flags."""
    model = games.resumed
    if model is None:
        return new_model(args, games)
    saved_arch = model.policy_kwargs.get("net_arch")
    if saved_arch is not None and list(saved_arch) != list(args.policy_hidden_layers):
        print_warning(
            f"resuming keeps the saved network {saved_arch}; "
            f"--policy-hidden-layers {args.policy_hidden_layers} ignored"
        )
    model.tensorboard_log = str(experiment_dir(args))
    return model


def new_model(args: argparse.Namespace, games: Games) -> BaseAlgorithm:
    env = games.env
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
            games.monitored,
            policy_kwargs=policy_kwargs,
            tensorboard_log=str(experiment_dir(args)),
            seed=args.seed,
            device=args.device,
            verbose=0,  # the progress display is the callbacks' (SB3's table would interleave)
            **hyperparameters(args, env.num_envs),
        )
    except (AssertionError, ValueError, RuntimeError) as error:  # SB3's and torch's own checks
        raise UserError(
            f"--algo {args.algo} cannot be built with these settings: {error}",
            f"change the hyperparameter or --device flags ({env.num_envs} env(s) here; see --help)",
        ) from None
    model.controller_algo = args.algo  # saved in the zip's metadata, read by convert_sb3_to_onnx.py
    return model


def infer(args: argparse.Namespace, model: BaseAlgorithm, games: Games, stopper: StopWhenRequested) -> None:
    """--inference: play the saved policy deterministically for --timesteps, train and save nothing."""
    episodes = run_inference(
        model,
        games.monitored,
        args.timesteps,
        games.env.policy_name,
        lambda: stopper.requested,
        lambda: games.env.restarts.used,
        metrics.run_identity(args.experiment_name),
    )
    print(f"Inference finished: {episodes} episode(s).", flush=True)


def training_callbacks(
    args: argparse.Namespace,
    games: Games,
    stopper: StopWhenRequested,
    manifests: ModelManifests,
    identity: Dict[str, str],
) -> Tuple[CallbackList, Optional[GodotEvalCallback]]:
    """Stop, evaluation, metric lines (with the run's `identity`, shared by its demo phases) and checkpoints,
    in the order SB3 must call them; and the evaluation."""
    checkpoints = None
    if args.save_checkpoint_frequency:
        checkpoints = AtomicCheckpointCallback(
            experiment_dir(args), args.save_checkpoint_frequency, after_save=manifests.write
        )
    reporter = ControllerMetricsCallback(games.env.policy_name, checkpoints, games.restarts, identity)
    evaluation = None
    if games.evaluation is not None:
        iteration = lambda: reporter.iteration + 1  # noqa: E731
        evaluation = start_evaluation(
            args, games.evaluation, games.env.num_envs, experiment_dir(args), iteration, manifests.write
        )
        reporter.extra_fields = evaluation.take_metrics
    # an evaluation due at the step of an off-policy iteration's line goes into that line
    callbacks = [stopper] + ([evaluation] if evaluation else []) + [reporter]
    callbacks += [checkpoints] if checkpoints else []
    return CallbackList(callbacks), evaluation


def learn(args: argparse.Namespace, model: BaseAlgorithm, games: Games, callbacks: CallbackList) -> None:
    rollout_size = getattr(model, "n_steps", 1) * games.env.num_envs
    started = time.monotonic()
    model.learn(
        total_timesteps=args.timesteps,
        callback=callbacks,
        reset_num_timesteps=model.num_timesteps == 0,  # a fresh model, or demo phases stepped no game
        tb_log_name=args.experiment_name,
        log_interval=max(1, 2048 // rollout_size),
    )
    elapsed = time.monotonic() - started
    print(f"Training finished: {model.num_timesteps} steps in total, {elapsed:.1f} s.", flush=True)


@dataclass
class Outcome:
    """What the run ends with: its exit code, the model to save (set once training starts) and the
    evaluation whose summary closes the output."""

    exit_code: int = 0
    trained: Optional[BaseAlgorithm] = None
    evaluation: Optional[GodotEvalCallback] = None


@contextlib.contextmanager
def failures_reported(outcome: Outcome) -> Iterator[None]:
    """During the run: report a failure as one ERROR line and set the exit code; the model is saved after."""
    try:
        yield
    except UserError as error:
        print_error(error.what, error.how)
        outcome.exit_code = 1
    except StopRequested:
        pass  # SIGINT while waiting for the game: saved after
    except GameError as error:
        print_error(str(error), "the model trained so far is saved" if outcome.trained else None)
        outcome.exit_code = 1
    except ConnectionError as error:  # a broken pipe or reset connection is no disk problem
        print_error(f"a connection broke: {error}", "the model trained so far is saved")
        outcome.exit_code = 1
    except OSError as error:
        print_error(
            f"writing a file failed: {error}",
            "check free disk space and permissions of the experiment directory",
        )
        outcome.exit_code = 1
    except KeyboardInterrupt:
        outcome.exit_code = 130


def save(args: argparse.Namespace, outcome: Outcome, manifests: ModelManifests) -> None:
    """Save the trained model with its manifest and, after a clean run, export it to --onnx_export_path."""
    if outcome.trained is None or outcome.exit_code == 130:
        return
    complete = outcome.exit_code == 0 and not stop_was_requested()
    model, model_path = outcome.trained, args.final_model.path_for(complete)
    try:
        save_model_atomically(model, model_path)
        manifests.write(model, model_path)
        print(f"Model saved to {model_path}", flush=True)
        if model_path != args.final_model.path:
            print_warning(
                f"the model so far is saved to {model_path}; "
                f"the complete model {args.final_model.path} is kept"
            )
        if args.onnx_export_path and outcome.exit_code == 0:
            onnx_path = Path(args.onnx_export_path).expanduser().absolute()
            summary = export_sb3_model(model, onnx_path, algo=args.algo)
            print(f"ONNX model exported: {summary}", flush=True)
    except KeyboardInterrupt:
        outcome.exit_code = 130
    except (OSError, UserError, VerificationError, ValueError, RuntimeError) as error:
        print_error(f"saving failed: {error}", "check free disk space and permissions of the output paths")
        outcome.exit_code = 1
