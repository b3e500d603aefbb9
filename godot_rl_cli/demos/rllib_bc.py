"""Behaviour cloning of one RLlib policy from the plugin's demo files, before RL (the YAML's `demos:` block).

The demos belong to the policy the block names: they are checked against the spaces of a game agent mapped
to it (the same checks and one-line errors as the SB3 trainer's), then `bc.BehaviourCloning` trains the
policy's torch model on the driver with the loss of `bc.py` (negative log-likelihood of the expert's
actions under the policy's own action distribution, with the entropy term), and the weights go to the env
runners before the first PPO iteration. Each epoch is an `@METRIC` line with `phase: "bc"`, numbered before
RL's first iteration (training_iteration 0), with the epoch in `bc_epoch`.
"""

import time
from typing import Any, Callable, Dict, Iterable, Optional, Tuple

import torch
from gymnasium import spaces

from godot_rl_cli import metrics
from godot_rl_cli.demos.bc import BCSettings, BehaviourCloning, EpochStats, epoch_line
from godot_rl_cli.demos.files import Demonstrations, DemoSpaces, demo_spaces, load_demonstrations
from godot_rl_cli.errors import UserError
from godot_rl_cli.rllib.callbacks import env_steps_sampled
from godot_rl_cli.rllib.demo_block import DemoBlock


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


def policy_demo_spaces(block: DemoBlock, config: Any, game: Dict[str, Any]) -> DemoSpaces:
    """The demo layout of the block's policy: its flat spaces (RLlib's policy spec) with the game's
    observation keys and action heads by name (the manifest's game record)."""
    policies = config.policies
    if block.policy not in policies:
        raise UserError(
            f"demos.policy {block.policy!r} is not a policy of this run ({', '.join(sorted(policies))})",
            "name the policy the demos were recorded for in the YAML's demos block",
        )
    spec = policies[block.policy]
    keys = game["observation_keys"]
    observation = spaces.Dict({key: spec.observation_space for key in keys})
    names, actions = game["action_keys"], spec.action_space
    if isinstance(actions, spaces.Discrete):
        heads = {names[0]: actions}
    elif isinstance(actions, spaces.MultiDiscrete):
        heads = {name: spaces.Discrete(int(size)) for name, size in zip(names, actions.nvec, strict=True)}
    else:  # continuous heads, concatenated: only their total width is checked
        heads = {"+".join(names): actions}
    return demo_spaces(observation, spaces.Dict(heads), f"{game['env_path']} (policy {block.policy})")


def clone_demos(training: Any, signals: Any) -> None:
    """Before RL (rllib/run.py's Training, once built and resumed): check the `demos:` block's files against
    its policy's spaces, clone the policy, save a checkpoint. Not when resuming: behaviour cloning is
    pre-training, done before the checkpoint resumed from. Every later manifest records the demos."""
    block: Optional[DemoBlock] = training.plan.spec.demos
    if block is None:
        return
    if training.plan.resume_from:
        print("Resuming: the demos block's behaviour cloning is not repeated", flush=True)
        return
    manifests = training.setup.manifests
    try:
        demos = load_demonstrations(
            block.files, policy_demo_spaces(block, training.setup.config, manifests.game)
        )
    except UserError:
        training.last_saved_iteration = training.algo.iteration  # nothing trained: nothing to save
        raise
    print(f"{demos.describe()}; behaviour cloning of policy {block.policy}", flush=True)
    manifests.extra["demonstrations"] = {"policy": block.policy, **demos.summary()}
    should_stop = lambda: signals.received > 0  # noqa: E731
    pretrain_policy(training.algo, training.plan.spec, demos, training.trial, should_stop)
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
