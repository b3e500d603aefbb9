"""Behaviour cloning of one RLlib policy from the plugin's demo files, before RL (the YAML's `demos:` block).

The demos belong to the policy the block names: they are checked against the spaces of a game agent mapped
to it (the same checks and one-line errors as the SB3 trainer's), then `bc.BehaviourCloning` trains the
policy's torch model on the driver with the loss of `bc.py` (negative log-likelihood of the expert's
actions under the policy's own action distribution, with the entropy term), and the weights go to the env
runners before the first PPO iteration. Each epoch is an `@METRIC` line with `phase: "bc"`, numbered before
RL's first iteration (training_iteration 0), with the epoch in `bc_epoch`.
"""

import time
from typing import Any, Callable, Iterable, Optional, Tuple

import torch

from godot_rl_cli import metrics
from godot_rl_cli.demos.bc import BCSettings, BehaviourCloning, EpochStats, epoch_line
from godot_rl_cli.demos.files import Demonstrations, demo_spaces, load_demonstrations
from godot_rl_cli.demos.options import DemoBlock
from godot_rl_cli.errors import UserError
from godot_rl_cli.rllib.callbacks import env_steps_sampled


class RLlibPolicyAdapter:
    """An old-API-stack torch policy: its model's logits through its action distribution class."""

    def __init__(self, policy: Any):
        self.policy = policy
        self.model = policy.model

    def parameters(self) -> Iterable[torch.nn.Parameter]:
        return self.model.parameters()

    def evaluate(self, obs: torch.Tensor, actions: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        logits, _ = self.model({"obs": obs}, [], None)
        distribution = self.policy.dist_class(logits, self.model)
        return distribution.logp(actions), distribution.entropy(), distribution.deterministic_sample()

    def set_training(self, training: bool) -> None:
        self.model.train(training)


def load_policy_demos(block: DemoBlock, game: Any, policy_of: Callable[[int], str]) -> Demonstrations:
    """The block's demo files, checked against the spaces of the first agent mapped to its policy."""
    agents = [index for index in range(game.num_envs) if policy_of(index) == block.policy]
    if not agents:
        names = sorted({policy_of(index) for index in range(game.num_envs)})
        raise UserError(
            f"demos.policy {block.policy!r} is not the policy of any agent of the game ({', '.join(names)})",
            "name the policy the demos were recorded for in the YAML's demos block",
        )
    index = agents[0]
    spaces = demo_spaces(
        game.observation_spaces[index], game.action_spaces[index], f"{game.describe()} (agent {index})"
    )
    demos = load_demonstrations(block.files, spaces)
    print(f"{demos.describe()}; behaviour cloning of policy {block.policy}", flush=True)
    return demos


def demos_to_clone(
    spec: Any, game: Any, config: Any, resume_from: Any, manifests: Any
) -> Optional[Demonstrations]:
    """The checked demos of the YAML's `demos:` block (None without one, or when resuming: behaviour cloning
    is pre-training, done before the checkpoint resumed from); every later manifest records them."""
    if spec.demos is None:
        return None
    if resume_from:
        print(f"Resuming from {resume_from}: the demos block's behaviour cloning is not repeated", flush=True)
        return None
    demos = load_policy_demos(spec.demos, game, lambda index: config.policy_mapping_fn(index, None, None))
    manifests.extra["demonstrations"] = {"policy": spec.demos.policy, **demos.summary()}
    return demos


def clone_demos(training: Any, signals: Any) -> None:
    """Before RL (rllib/run.py's Training, once built and resumed): behaviour cloning of the `demos:` block's
    policy when the run checked demos, then a checkpoint."""
    if training.setup.demos is None:
        return
    should_stop = lambda: signals.received > 0  # noqa: E731
    pretrain_policy(training.algo, training.plan.spec, training.setup.demos, training.trial, should_stop)
    training.save_checkpoint()


def pretrain_policy(
    algo: Any, spec: Any, demos: Demonstrations, trial: Any, should_stop: Callable[[], bool]
) -> None:
    """Behaviour cloning of the `demos:` block's policy in `algo`, one metric line per epoch; then the env
    runners get the weights."""
    block: DemoBlock = spec.demos
    identity = metrics.run_identity(trial.experiment_tag, trial.trial_id, trial.experiment_id)
    seed = int(algo.config.seed or 0)
    policy = algo.get_policy(block.policy)
    settings = BCSettings(
        epochs=block.bc_epochs,
        batch_size=block.batch_size,
        learning_rate=block.learning_rate,
        validation_share=block.validation_share,
        seed=seed,
    )
    cloning = BehaviourCloning(RLlibPolicyAdapter(policy), demos, settings, policy.device)
    started = time.monotonic()

    def on_epoch(stats: EpochStats) -> None:
        learner = stats.learner()
        entry = metrics.policy_metrics(learner_stats=learner, custom_metrics=learner)
        metrics.emit_metric(
            metrics.iteration_payload(
                training_iteration=algo.iteration,
                timesteps_total=env_steps_sampled(algo),
                episodes_total=0,
                episodes_this_iter=0,
                time_this_iter_s=stats.seconds,
                time_total_s=time.monotonic() - started,
                env_steps_this_iter=0,
                custom_metrics=learner,
                policies={block.policy: entry},
                phase="bc",
                bc_epoch=stats.epoch,
                **identity,
            )
        )
        print(epoch_line(stats, block.bc_epochs), flush=True)

    cloning.run(on_epoch, should_stop)
    policy.model.eval()
    algo.env_runner_group.sync_weights(policies=[block.policy])
