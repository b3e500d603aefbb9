"""Every playback path hands the game its continuous actions by one rule (game/spaces.continuous_for_game):
inside the game's [-1, 1] boxes. RLlib's `compute_single_action` does not clip, so an RLlib policy whose
action mean lies outside the box is played here from a real checkpoint and must come out clipped, as its
ONNX export's actions do (issue 25)."""

import numpy as np
import torch
from gymnasium import spaces

from godot_rl_cli.game.spaces import continuous_for_game


def test_continuous_actions_are_clipped_into_the_game_box():
    assert continuous_for_game([2.5, -3.0, 0.25]).tolist() == [1.0, -1.0, 0.25]


def test_rllib_playback_clips_a_mean_outside_the_box(tmp_path):
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.algorithms.ppo.ppo_torch_policy import PPOTorchPolicy

    from godot_rl_cli.play.rllib_source import RLlibActions

    config = (
        PPOConfig()
        .api_stack(enable_rl_module_and_learner=False, enable_env_runner_and_connector_v2=False)
        .framework("torch")
        .to_dict()
    )
    observations, actions = spaces.Box(-1, 1, (3,), np.float32), spaces.Box(-1, 1, (2,), np.float32)
    policy = PPOTorchPolicy(observations, actions, config)
    with torch.no_grad():  # the action means (the first 2 logits) far outside [-1, 1]: 5 and -5
        last = policy.model._logits._model[0]
        last.weight.zero_()
        last.bias.copy_(torch.tensor([5.0, -5.0, 0.0, 0.0]))
    checkpoint = tmp_path / "checkpoint_000000"
    policy.export_checkpoint(str(checkpoint / "policies" / "default_policy"))
    source = RLlibActions(checkpoint)
    source.agent_policies = list(source.policies.values())
    source.key_order = ["obs"]
    raw = source.agent_policies[0].compute_single_action(np.zeros(3, np.float32), explore=False)[0]
    assert raw.tolist() == [5.0, -5.0], "RLlib itself hands on the unclipped mean"
    [played] = source.predict([{"obs": [0.0, 0.0, 0.0]}])
    assert np.asarray(played).tolist() == [1.0, -1.0]
