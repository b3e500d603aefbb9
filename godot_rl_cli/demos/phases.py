"""The SB3 trainer's demonstration phases, run on the model before RL: load and check the demos, behaviour
cloning, GAIL. The trainer's main calls `run_demo_phases` once; the RL phase that follows is its own `learn()`
(on the game's reward, `--rl_timesteps`), then `evaluate_after_training` (`--eval_episode_count`).

Each phase prints `@METRIC` iteration lines with a `phase` field ("bc", "gail"; the RL lines then say "rl",
the evaluation's "eval"), all with the run's one identity, and saves
`<experiment_dir>/<experiment_name>_<phase>.zip` with its manifest (which, like every later manifest of the
run, records the demo files' sha256 and counts). A bad demo file is a UserError before
anything trains or is written. A stop request (SIGINT/SIGTERM) ends the phase in progress and skips the
rest; the main then saves the model. A game that fails during GAIL: the model is saved, the error goes on.
"""

import argparse
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecEnv

from godot_rl_cli import metrics
from godot_rl_cli.demos.bc import BCSettings, BehaviourCloning, EpochStats, SB3PolicyAdapter, epoch_line
from godot_rl_cli.demos.files import Demonstrations, demo_spaces, load_demonstrations
from godot_rl_cli.demos.gail import (
    SAVED_DISCRIMINATOR,
    DiscriminatorCallback,
    DiscriminatorTrainer,
    GailRewardVecEnv,
    GailSettings,
)
from godot_rl_cli.game import GameError, StopRequested
from godot_rl_cli.sb3.callbacks import (
    ITERATIONS_WITHOUT_STEPS,
    PHASE,
    AtomicCheckpointCallback,
    ControllerMetricsCallback,
    save_model_atomically,
)


class DemoRun:
    """What the phases share: the run's flags, model, env (the VecMonitor over the games), stop flag,
    manifests and metric identity."""

    def __init__(
        self,
        args: argparse.Namespace,
        model: BaseAlgorithm,
        env: VecEnv,
        stopper: Any,
        manifests: Any,
        model_path: Optional[Path],
        identity: Dict[str, str],
    ):
        self.args = args
        self.model = model
        self.env = env
        self.games = env.unwrapped
        self.stopper = stopper
        self.manifests = manifests
        self.model_path = model_path
        self.identity = identity
        self.started = time.monotonic()

    @property
    def stopped(self) -> bool:
        return bool(self.stopper.requested)

    def iteration(self) -> int:
        """The iteration number the next line takes, after the env-stepping iterations and earlier epochs."""
        steps = getattr(self.model, "n_steps", 1) * self.model.n_envs
        return self.model.num_timesteps // steps + getattr(self.model, ITERATIONS_WITHOUT_STEPS, 0) + 1

    def emit(self, phase: str, learner: Dict[str, float], seconds: float, **fields: Any) -> None:
        """One `@METRIC` line for an iteration that stepped no training game."""
        policy = metrics.policy_metrics(
            learner_stats=learner, custom_metrics=learner, **fields.pop("policy", {})
        )
        metrics.emit_metric(
            metrics.iteration_payload(
                training_iteration=self.iteration(),
                timesteps_total=self.model.num_timesteps,
                episodes_total=getattr(self.model, "controller_episodes_total", 0),
                episodes_this_iter=policy["completed_episodes"],
                time_this_iter_s=seconds,
                time_total_s=time.monotonic() - self.started,
                env_steps_this_iter=0,
                custom_metrics=learner,
                policies={self.games.policy_name: policy},
                phase=phase,
                **self.identity,
                **metrics.run_episode_fields(policy),
                **fields,
            )
        )

    def save_phase(self, phase: str) -> None:
        path = (
            Path(self.args.experiment_dir).expanduser().absolute()
            / f"{self.args.experiment_name}_{phase}.zip"
        )
        save_model_atomically(self.model, path)
        self.manifests.write(self.model, path, phase=phase)
        print(f"Saved the model after {phase}: {path}", flush=True)

    def save_final(self) -> None:
        save_model_atomically(self.model, self.model_path)
        self.manifests.write(self.model, self.model_path)
        print(f"Model saved to {self.model_path}", flush=True)


def load_checked(run: DemoRun) -> Demonstrations:
    """The demo files, every step checked against the game's spaces (UserError naming file, episode, step)."""
    spaces = demo_spaces(run.games.observation_space, run.games.action_heads, run.games.games[0].describe())
    demos = load_demonstrations(run.args.demo_files, spaces)
    print(demos.describe(), flush=True)
    return demos


def behaviour_cloning_phase(run: DemoRun, demos: Demonstrations) -> None:
    args = run.args
    settings = BCSettings(
        epochs=args.bc_epochs,
        batch_size=args.bc_batch_size,
        learning_rate=args.bc_learning_rate,
        validation_share=args.bc_validation_share,
        seed=args.seed,
    )
    cloning = BehaviourCloning(SB3PolicyAdapter(run.model.policy), demos, settings, run.model.device)
    setattr(run.model, PHASE, "bc")

    def on_epoch(stats: EpochStats) -> None:
        run.emit("bc", stats.learner(), stats.seconds, bc_epoch=stats.epoch)
        setattr(run.model, ITERATIONS_WITHOUT_STEPS, getattr(run.model, ITERATIONS_WITHOUT_STEPS, 0) + 1)
        print(epoch_line(stats, args.bc_epochs), flush=True)

    cloning.run(on_epoch, lambda: run.stopped)
    run.save_phase("bc")


def gail_phase(run: DemoRun, demos: Demonstrations) -> None:
    args = run.args
    settings = GailSettings(mode=args.gail_reward, reward=args.gail_reward_form, seed=args.seed)
    trainer = DiscriminatorTrainer(demos, settings)
    saved = getattr(run.model, SAVED_DISCRIMINATOR, None)
    if saved is not None:  # resumed from a model saved during or after GAIL
        trainer.load_state_dict(saved)
        print("GAIL goes on with the discriminator saved with the resumed model", flush=True)
    rewards = GailRewardVecEnv(run.env, trainer, args.gail_reward)
    discriminator = DiscriminatorCallback(trainer, rewards)
    checkpoints = (
        AtomicCheckpointCallback(
            Path(args.experiment_dir).expanduser().absolute(),
            args.save_checkpoint_frequency,
            after_save=run.manifests.write,
        )
        if args.save_checkpoint_frequency
        else None
    )
    reporter = ControllerMetricsCallback(
        run.games.policy_name,
        checkpoints,
        lambda: run.games.restarts.used,
        run.identity,
        extra_fields=discriminator.take_fields,
    )
    callbacks: List[BaseCallback] = [run.stopper, discriminator, reporter] + (
        [checkpoints] if checkpoints else []
    )
    setattr(run.model, PHASE, "gail")
    run.model.set_env(rewards)
    try:
        run.model.learn(
            total_timesteps=args.gail_timesteps,
            callback=CallbackList(callbacks),
            reset_num_timesteps=False,
            tb_log_name=f"{args.experiment_name}_gail",
        )
    except StopRequested:
        pass  # a stop while waiting for the game: the main saves
    except GameError:
        run.save_final()
        raise
    finally:
        run.model.set_env(run.env)
    run.save_phase("gail")


def evaluate_after_training(
    args: argparse.Namespace, model: BaseAlgorithm, games: Any, stopper: Any, identity: Dict[str, str]
) -> None:
    """`--eval_episode_count` deterministic episodes on the training games once every phase (RL included)
    has trained, where sb3_imitation.py evaluates; one `@METRIC` line with phase "eval"."""
    if not args.eval_episode_count or stopper.requested:
        return
    run = DemoRun(args, model, games.monitored, stopper, None, None, identity)
    trained_phase = getattr(model, PHASE, None)
    setattr(model, PHASE, "eval")
    try:
        returns, lengths = evaluate_policy(
            model, run.env, n_eval_episodes=args.eval_episode_count, return_episode_rewards=True
        )
    except StopRequested:
        return
    finally:
        setattr(model, PHASE, trained_phase)
    statistics = metrics.episode_statistics(returns, lengths)
    run.emit(
        "eval",
        {},
        time.monotonic() - run.started,
        policy={**statistics, "completed_episodes": len(returns)},
        eval_reward_mean=statistics["reward_mean"],
    )
    setattr(model, ITERATIONS_WITHOUT_STEPS, getattr(model, ITERATIONS_WITHOUT_STEPS, 0) + 1)
    print(
        f"Evaluation after training: mean return {statistics['reward_mean']:.3f} over {len(returns)} "
        f"episode(s) (min {statistics['reward_min']:.3f}, max {statistics['reward_max']:.3f})",
        flush=True,
    )


def run_demo_phases(
    args: argparse.Namespace,
    model: BaseAlgorithm,
    games: Any,
    stopper: Any,
    manifests: Any,
    identity: Dict[str, str],
) -> None:
    """Without --demo_files: nothing (but a model saved in a demo phase goes on as "rl"). With: check the
    demos, then behaviour cloning (--bc_epochs) and GAIL (--gail_timesteps) on `model`, in that order; their
    metric lines carry the run's `identity`, the one its RL lines carry."""
    if not args.demo_files:
        if getattr(model, PHASE, None):  # resumed after a demo phase: what follows is RL
            setattr(model, PHASE, "rl")
        return
    run = DemoRun(
        args, model, games.monitored, stopper, manifests, args.final_model.path_for(complete=False), identity
    )
    demos = load_checked(run)
    manifests.extra["demonstrations"] = demos.summary()
    if args.bc_epochs and not run.stopped:
        behaviour_cloning_phase(run, demos)
    if args.gail_timesteps and not run.stopped:
        gail_phase(run, demos)
    setattr(model, PHASE, "rl")
