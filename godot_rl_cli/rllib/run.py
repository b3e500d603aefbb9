"""The steps of one RLlib run once its plan is read, in the order `cli/train_rllib.py` calls them:
configure from a probe game, create the trial directory, start Ray, build (and resume) the algorithm, train
until a stop criterion or signal, save the final checkpoint and shut down; each failure turned into its exit
code.

Exit codes: 0 done or stopped by SIGINT/SIGTERM (final checkpoint saved); 1 error; 130 second SIGINT.
"""

import argparse
import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import ray

from godot_rl_cli import metrics
from godot_rl_cli.errors import UserError, exit_with_error, print_error
from godot_rl_cli.game import StopRequested, stop_all_games
from godot_rl_cli.game.debug_panel import print_debug_panel
from godot_rl_cli.rllib.callbacks import count_env_restarts, iteration_payload
from godot_rl_cli.rllib.cluster import runtime_env
from godot_rl_cli.rllib.config import StopCriteria
from godot_rl_cli.rllib.evaluation import (
    BestCheckpoint,
    CheckpointManifests,
    add_to_payload,
    configure_evaluation,
)
from godot_rl_cli.rllib.layout import Trial
from godot_rl_cli.rllib.noise import build_algorithm
from godot_rl_cli.rllib.plan import RunPlan
from godot_rl_cli.rllib.runners import LostRunnerWatch, runner_restarts
from godot_rl_cli.rllib.self_play import resume_league
from godot_rl_cli.rllib.setup import build_config, find_game_error, probe_game
from godot_rl_cli.signals import StopSignals


@dataclass
class Setup:
    """What the probe game tells: the AlgorithmConfig, its policies, whether it evaluates, and the manifest
    writer of its checkpoints."""

    config: Any
    policy_names: List[str]
    evaluating: bool
    manifests: CheckpointManifests


def configure(args: argparse.Namespace, argv: List[str], plan: RunPlan) -> Setup:
    """Start the game once to read its agents and spaces, build the config from them, then close it."""
    game = probe_game(plan.game)
    try:
        config, policy_names = build_config(plan.spec, plan.game, game, plan.mapping_function, plan.seed)
        evaluating = configure_evaluation(config, plan.spec.settings)
        manifests = CheckpointManifests(args, argv, plan.spec, game, config)
        if args.debug_panel:
            policy_of = config.policy_mapping_fn
            print_debug_panel(game, "RLlib", lambda index: policy_of(index, None, None))
    finally:
        game.close()
    return Setup(config, policy_names, evaluating, manifests)


def create_trial(experiment_dir: str, plan: RunPlan) -> Trial:
    """The run's trial directory with its run_manifest.json; exits 1 if it cannot be written."""
    try:
        trial = Trial.create(Path(experiment_dir).expanduser().absolute(), plan.spec.algorithm)
    except OSError as error:
        exit_with_error(
            f"cannot create the run directory in {experiment_dir} ({error.strerror or error})",
            "pass an --experiment_dir you can write to",
        )
    trial.write_manifest(
        env_path=plan.game.env_path,
        stop=plan.spec.stop,
        config_sha1=plan.spec.config_sha1,
        resume_from=str(plan.resume_from) if plan.resume_from else None,
        checkpoint_frequency=plan.spec.checkpoint_frequency,
        checkpoint_index_offset=plan.first_checkpoint_index,
    )
    print(f"Results and checkpoints: {trial.directory}", flush=True)
    return trial


def start_ray(ray_address: Optional[str], config: Any, signals: StopSignals) -> None:
    ray.init(
        address=ray_address or "local",  # never join a cluster that happens to run here unless asked
        include_dashboard=False if not ray_address else None,
        num_cpus=None if ray_address else max(2, int(config.num_env_runners) + 1),
        runtime_env=runtime_env(ray_address),
        log_to_driver=True,
        configure_logging=False,
    )
    signals.install()  # Ray's SIGTERM handler would end the run without its final checkpoint


class Training:
    """The run after Ray started: the algorithm, its checkpoints, the best one and the exit code."""

    def __init__(self, plan: RunPlan, setup: Setup, trial: Trial, onnx_export_dir: Optional[str]):
        self.plan = plan
        self.setup = setup
        self.trial = trial
        onnx_dir = Path(onnx_export_dir).expanduser().absolute() if onnx_export_dir else None
        self.best = BestCheckpoint(trial.directory, setup.manifests, onnx_dir) if setup.evaluating else None
        self.checkpoint_index = plan.first_checkpoint_index
        self.last_saved_iteration: Optional[int] = None
        self.algo: Any = None
        self.runner_watch: Optional[LostRunnerWatch] = None
        self.exit_code = 0

    def build_algo(self) -> None:
        self.algo = build_algorithm(self.setup.config, self.trial.directory)
        self.algo.callbacks.episodes_offset = self.plan.episodes_offset
        self.runner_watch = LostRunnerWatch(self.algo)

    def resume(self) -> None:
        resume_from = self.plan.resume_from
        if not resume_from:
            return
        try:
            self.algo.restore(str(resume_from))
        except Exception as error:
            self.last_saved_iteration = self.algo.iteration  # nothing trained: nothing to save
            raise UserError(
                f"cannot resume from {resume_from} ({type(error).__name__}: {error})".splitlines()[0],
                "pass an intact checkpoint_NNNNNN directory",
            ) from None
        resume_league(self.algo, resume_from)
        print(f"Resumed from {resume_from} at iteration {self.algo.iteration}", flush=True)

    def train_until_stopped(self, signals: StopSignals) -> None:
        """Train iteration by iteration until the YAML's stop criteria, a STOP file or a signal."""
        spec = self.plan.spec
        stop = StopCriteria(spec.stop, trial_dir=self.trial.directory)
        self.algo.callbacks.stop_criteria = stop
        policies = ", ".join(self.setup.policy_names)
        print(f"Training policies {policies}; stop: {spec.stop or 'manual (SIGINT)'}", flush=True)
        while signals.received == 0:
            result = self.algo.train()
            self.iteration_done(result)
            lost = self.runner_watch.lost_runner()
            if lost:
                raise UserError(lost, "the last checkpoint is saved: --resume from it")
            reason = stop.reason(result)
            if reason:
                print(f"Stopping: {reason}", flush=True)
                break

    def iteration_done(self, result: Dict[str, Any]) -> None:
        """Report the iteration, evaluate, save a periodic checkpoint, then emit its @METRIC line."""
        restarted_runners = runner_restarts(self.algo)  # the callbacks showed the iteration's progress
        evaluation = self.best.update(self.algo, result) if self.best else {}
        if evaluation:
            print(
                f"evaluation {result['training_iteration']} | reward mean "
                f"{evaluation['eval_reward_mean']:.2f} | best {self.best.reward:.2f} (iteration "
                f"{self.best.iteration})",
                flush=True,
            )
        frequency = self.plan.spec.checkpoint_frequency
        if frequency and result["training_iteration"] % frequency == 0:
            self.save_checkpoint()
        if metrics.metrics_enabled():  # after the save: `checkpoints` is what is on disk
            trial = self.trial
            identity = metrics.run_identity(trial.experiment_tag, trial.trial_id, trial.experiment_id)
            payload = iteration_payload(
                result,
                len(trial.checkpoints()),
                count_env_restarts(self.algo),
                identity,
                env_runner_restarts=restarted_runners,
            )
            add_to_payload(payload, evaluation)
            if self.plan.spec.demos is not None and not self.plan.resume_from:
                payload["phase"] = "rl"  # after the demos block's behaviour cloning ("bc")
            metrics.emit_metric(payload)

    def save_checkpoint(self) -> None:
        path = self.trial.save_checkpoint(self.algo, self.checkpoint_index)
        self.setup.manifests.write(self.algo, path)
        print(f"Saved checkpoint {path}", flush=True)
        self.checkpoint_index += 1
        self.last_saved_iteration = self.algo.iteration

    @contextlib.contextmanager
    def failures_reported(self) -> Iterator[None]:
        """During training: report a failure as one ERROR line and set the exit code; `finish` saves after."""
        try:
            yield
        except StopRequested:
            pass  # SIGINT while a game was being waited for: checkpoint in `finish`
        except UserError as error:
            print_error(error.what, error.how)
            self.exit_code = 1
        except KeyboardInterrupt:
            self.exit_code = 130
        except Exception as error:  # Ray wraps failures of its workers; report the game's own error if any
            game_error = find_game_error(error)
            what = (
                str(game_error)
                if game_error
                else f"training failed: {type(error).__name__}: {error}".splitlines()[0]
            )
            print_error(what, "the last checkpoint is saved" if self.algo else None)
            self.exit_code = 1

    def finish(self) -> int:
        """Save the final checkpoint (unless the newest is this iteration's or a second SIGINT came), stop the
        algorithm, the games and Ray; the exit code."""
        try:
            if (
                self.algo is not None
                and self.exit_code != 130
                and self.last_saved_iteration != self.algo.iteration
            ):
                self.save_checkpoint()
        except KeyboardInterrupt:
            self.exit_code = 130
        except Exception as error:
            print_error(f"saving the final checkpoint failed: {error}", "check free disk space")
            self.exit_code = 1
        finally:
            self.shut_down()
        if self.best is not None:
            print(self.best.summary(), flush=True)
        return self.exit_code

    def shut_down(self) -> None:
        if self.algo is not None:
            with contextlib.suppress(Exception):
                self.algo.stop()
        stop_all_games()
        ray.shutdown()
