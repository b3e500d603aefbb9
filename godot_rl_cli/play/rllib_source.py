"""An RLlib (old API stack) checkpoint as an action source: one policy per agent.

Each policy of the checkpoint is restored with `Policy.from_checkpoint` (no Ray cluster). Agents are
mapped to policies by `map_agents_to_policies`: `--policy` for all, else the policy named as the game
names the agent's (as rllib_training_script.py maps them), else the only policy. Observations are
flattened in the game's key order, as training flattened them, and actions computed with
`compute_single_action`; continuous ones are then clipped into the game's boxes by the rule every playback
path shares (game/spaces.continuous_for_game: `compute_single_action` itself does not clip).
"""

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from gymnasium.spaces import Box

from godot_rl_cli.errors import UserError
from godot_rl_cli.game.spaces import continuous_for_game, flatten_observation
from godot_rl_cli.play.sources import (
    ModelActions,
    describe_space,
    game_action_space,
    map_agents_to_policies,
    mismatch,
    same_action_space,
)
from godot_rl_cli.rllib.env import flat_observation_space
from godot_rl_cli.rllib.saved_policies import load_policy, policy_ids
from godot_rl_cli.threads import configure_torch_threads


class RLlibActions(ModelActions):
    kind = "rllib-raw"

    def __init__(self, checkpoint: Path, policy: Optional[str] = None, deterministic: bool = True):
        configure_torch_threads(None)
        self.checkpoint = checkpoint
        self.forced = policy
        self.deterministic = deterministic
        available = policy_ids(checkpoint)
        if policy is not None and policy not in available:
            raise UserError(
                f"policy {policy!r} is not in the checkpoint {checkpoint} "
                f"(its policies: {', '.join(available)})",
                "pass one of those to --policy, or omit it",
            )
        self.policies = {
            policy_id: load_policy(checkpoint, policy_id) for policy_id in ([policy] if policy else available)
        }
        self.agent_policies: List[Any] = []

    def describe(self) -> str:
        parts = [
            f"{policy_id} (observations {describe_space(policy.observation_space)}, "
            f"actions {describe_space(policy.action_space)})"
            for policy_id, policy in self.policies.items()
        ]
        return f"RLlib checkpoint {self.checkpoint.name}: " + "; ".join(parts)

    def check(self, game) -> List[str]:
        names = map_agents_to_policies(game.agent_policy_names, list(self.policies), self.forced)
        for index, policy_id in enumerate(names):
            policy = self.policies[policy_id]
            trained_on = flat_observation_space(game, index)
            if policy.observation_space.shape != trained_on.shape or not same_action_space(
                policy.action_space, game_action_space(game, index)
            ):
                raise mismatch(
                    f"policy {policy_id!r} of {self.checkpoint.name}",
                    describe_space(policy.observation_space),
                    describe_space(policy.action_space),
                    game,
                    index,
                )
        self.agent_policies = [self.policies[policy_id] for policy_id in names]
        return names

    def predict(self, observations: List[Dict[str, Any]]) -> Sequence[Any]:
        explore = not self.deterministic
        actions = []
        for policy, observation in zip(self.agent_policies, observations):
            action = policy.compute_single_action(
                flatten_observation(observation, self.key_order), explore=explore
            )[0]
            actions.append(continuous_for_game(action) if isinstance(policy.action_space, Box) else action)
        return actions
