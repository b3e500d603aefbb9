"""RLlib (old API stack) checkpoints to ONNX files the Godot plugin runs, one file per policy, verified.

This module exports a policy already loaded: reading a checkpoint (which one a path designates, its
policies, restoring one) is `godot_rl_cli.rllib`'s (`layout.py`, `saved_policies.py`).

The file: inputs `obs` [batch, n] (the observation the game sends, its keys flattened and
concatenated in the game's order, as godot_rl_cli.rllib.env trains on) and `state_ins` [batch]; outputs
`output` and `state_outs` (`state_ins` passed through). `output` is what the plugin reads to act:
- Discrete and MultiDiscrete actions (PPO, APPO, IMPALA): `policy.model`'s logits, concatenated per
  head (the plugin takes the argmax per head); DQN: the Q-values [n] (argmax is the greedy action).
- Box(k) actions: the k action means only (SAC's squashed with `tanh`, the action SAC takes), which
  the plugin clamps to [-1, 1]. RLlib's distribution input is `[all means, all log_stds]`, but the
  plugin reads `[mean, log_std]` per action key, so with two or more continuous keys that layout would
  be misread; an output exactly as wide as the continuous actions makes the plugin read means only,
  key after key, which is right for any number of keys.
Recurrent policies and observation filters are refused: they need state the plugin cannot feed.
RLlib's own `Policy.export_model(onnx=...)` is not used: its graph takes every column of the policy's
dummy batch (seq_lens, previous actions, ...) as inputs, not the plugin's two.
"""

import contextlib
import io
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from gymnasium import spaces

from godot_rl_cli import algorithms
from godot_rl_cli.algorithms import ALGORITHMS, RLLIB_ALGORITHMS
from godot_rl_cli.errors import UserError
from godot_rl_cli.onnx import recipe
from godot_rl_cli.onnx.options import DEFAULT_IR_VERSION, DEFAULT_OPSET

SINGLE_POLICY_ID = "default_policy"


def validate_versions(opset: int, ir_version: int) -> None:
    """Refuse impossible opset/IR pairs before loading anything; the warning about Godot's limits comes with
    each export."""
    with contextlib.redirect_stderr(io.StringIO()):
        recipe.check_versions(opset, ir_version)


# --- choosing policies and output files -----------------------------------------------------------------


def select_policies(
    available: List[str], policy: Optional[str] = None, single: bool = False, snapshots: Sequence[str] = ()
) -> List[str]:
    """The ids to export: `policy`, else the single policy (`single`), else all of them; self-play `snapshots`
    (rllib/league.py) only when named."""
    if policy is not None:
        if policy not in available:
            raise UserError(
                f"policy {policy!r} is not in the checkpoint (its policies: {', '.join(available)})",
                "pass one of those to --policy",
            )
        return [policy]
    available = [name for name in available if name not in snapshots]
    if single:
        if SINGLE_POLICY_ID in available:
            return [SINGLE_POLICY_ID]
        if len(available) == 1:
            return available
        raise UserError(
            f"--no-multiagent needs a single-policy checkpoint, this one holds {len(available)} policies: "
            f"{', '.join(available)}",
            "omit --no-multiagent to export them all, or pick one with --policy",
        )
    return list(available)


def output_paths(output: Path, prefix: str, ids: List[str]) -> Dict[str, Path]:
    """`<output>/<prefix><id>.onnx` per policy; an `output` ending in .onnx is the file for a single
    policy."""
    if output.suffix == ".onnx":
        if len(ids) != 1:
            raise UserError(
                f"output {output} names one file, but {len(ids)} policies are exported ({', '.join(ids)})",
                "pass an output directory, or one --policy",
            )
        return {ids[0]: output}
    if output.exists() and not output.is_dir():
        raise UserError(
            f"output directory {output} is a file", "pass a directory for the ONNX files with -o/--output-dir"
        )
    return {policy_id: output / f"{prefix}{policy_id}.onnx" for policy_id in ids}


# --- the exported graph ----------------------------------------------------------------------------


def algorithm_name(policy) -> str:
    """PPO, APPO, IMPALA, DQN or SAC, from the policy class (PPOTorchPolicy -> PPO)."""
    return (
        type(policy).__name__.replace("TorchPolicyV2", "").replace("TorchPolicy", "").upper()
        or type(policy).__name__
    )


def check_exportable(policy, policy_id: str) -> None:
    """Refuse policies whose actions depend on more than the current observation, or on spaces ONNX cannot
    take."""
    if algorithm_name(policy).lower() not in ALGORITHMS:
        raise UserError(
            f"policy {policy_id!r} comes from {algorithm_name(policy)}, which this exporter does not know",
            f"train with one of {', '.join(RLLIB_ALGORITHMS)}",
        )
    if policy.is_recurrent():
        raise UserError(
            f"policy {policy_id!r} is recurrent (LSTM/attention): its state cannot pass through the plugin's "
            "state_ins",
            "train without use_lstm/use_attention to export for Godot",
        )
    if policy.config.get("observation_filter", "NoFilter") != "NoFilter":
        raise UserError(
            f"policy {policy_id!r} was trained with observation_filter "
            f"{policy.config['observation_filter']}, which is not part of the policy",
            "train with observation_filter: NoFilter to export for Godot",
        )
    if not isinstance(policy.observation_space, spaces.Box):
        raise UserError(
            f"policy {policy_id!r} observes a {type(policy.observation_space).__name__} space; only flat Box "
            "observations can be exported",
            "train with rllib_training_script.py, which flattens the game's observations",
        )
    if policy.config.get("num_atoms", 1) > 1:
        raise UserError(
            f"policy {policy_id!r} is a distributional DQN (num_atoms > 1)",
            "train with num_atoms: 1 to export for Godot",
        )
    if not isinstance(policy.action_space, spaces.Discrete | spaces.MultiDiscrete | spaces.Box):
        raise UserError(
            f"policy {policy_id!r} acts in a {type(policy.action_space).__name__} space",
            "use Discrete, MultiDiscrete or Box actions",
        )


def squash_bounds(policy) -> Optional[Tuple[float, float]]:
    """(low, high) of a squashed-Gaussian action distribution (SAC), or None for other distributions."""
    from ray.rllib.models.torch.torch_action_dist import TorchSquashedGaussian

    dist_class = getattr(policy, "dist_class", None)
    keywords = getattr(dist_class, "keywords", {}) or {}
    dist_class = getattr(dist_class, "func", dist_class)
    if isinstance(dist_class, type) and issubclass(dist_class, TorchSquashedGaussian):
        return float(keywords.get("low", -1.0)), float(keywords.get("high", 1.0))
    return None


class GodotPolicyGraph(torch.nn.Module):
    """(obs [batch, n], state_ins [batch]) -> (output, state_outs): the policy's action distribution
    inputs."""

    def __init__(self, policy):
        super().__init__()
        self.policy = policy
        self.model = policy.model
        self.observation_shape = tuple(policy.observation_space.shape)
        output = ALGORITHMS[algorithm_name(policy).lower()].onnx_output
        self.q_values = output == algorithms.Q_VALUES
        self.sac_head = output == algorithms.SQUASHED_MEAN
        self.squash = squash_bounds(policy) if self.sac_head else None
        self.continuous_size = (
            int(np.prod(policy.action_space.shape)) if isinstance(policy.action_space, spaces.Box) else None
        )

    def forward(self, obs: torch.Tensor, state_ins: torch.Tensor):
        input_dict = {"obs": obs.reshape(-1, *self.observation_shape)}
        model_out, _ = self.model(input_dict, [], None)
        if self.q_values:
            return self._q_values(model_out), state_ins
        dist_inputs = self.model.get_action_model_outputs(model_out)[0] if self.sac_head else model_out
        if self.continuous_size is None:
            return dist_inputs, state_ins
        means = dist_inputs[
            :, : self.continuous_size
        ]  # a constant slice keeps `output`'s width static, which the plugin reads
        if self.squash is None:
            return means, state_ins
        low, high = self.squash
        return torch.clamp(
            (torch.tanh(means) + 1.0) / 2.0 * (high - low) + low, low, high
        ), state_ins  # TorchSquashedGaussian's deterministic sample

    def _q_values(self, model_out: torch.Tensor) -> torch.Tensor:
        """DQN's Q-values as dqn_torch_policy.compute_q_values computes them (no -inf masked actions in Godot
        games)."""
        action_scores = self.model.get_q_value_distributions(model_out)[0]
        if not self.policy.config.get("dueling"):
            return action_scores
        return self.model.get_state_value(model_out) + action_scores - action_scores.mean(dim=1, keepdim=True)

    def describe_output(self) -> str:
        space = self.policy.action_space
        if isinstance(space, spaces.Discrete):
            return f"{'Q-values' if self.q_values else 'logits'} [{space.n}]"
        if isinstance(space, spaces.MultiDiscrete):
            return f"logits per head {[int(size) for size in space.nvec]}"
        means = "tanh-squashed means" if self.squash else "means"
        return f"{means} of {self.continuous_size} continuous action{'s' if self.continuous_size > 1 else ''}"


# --- verification ----------------------------------------------------------------------------------


def verify_against_policy(
    policy, graph: GodotPolicyGraph, onnx_path: Path, samples: int = recipe.VERIFY_SAMPLES
) -> float:
    """Run the written file in onnxruntime on sampled observations and compare with the policy.

    Checks: `output` equals the torch graph (within 1e-5, relative for large values), rows do not
    depend on the batch size, `state_outs` is `state_ins`, and the game gets the action of
    `policy.compute_actions(obs, explore=False)`: argmax per discrete head, or (continuous) `output`
    within 1e-5. Returns the max absolute error; raises VerificationError on a mismatch.
    """
    observations = (
        recipe.sample_observations(policy.observation_space, samples).astype(np.float32).reshape(samples, -1)
    )
    feeds = {"obs": observations, recipe.STATE_INPUT: np.arange(samples, dtype=np.float32)}
    actual, error = recipe.check_graph_parity(onnx_path, graph, feeds, ["obs"])

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        actions = np.asarray(
            policy.compute_actions(observations.reshape(samples, *graph.observation_shape), explore=False)[0]
        )
    space = policy.action_space
    if isinstance(space, spaces.Discrete | spaces.MultiDiscrete):
        recipe.check_discrete(actual, actions, recipe.head_sizes(space))
        return error
    return max(error, recipe.check_continuous(actual, actions.reshape(samples, -1), what="action means"))


# --- entry points ----------------------------------------------------------------------------------


def export_policy(
    policy,
    policy_id: str,
    output_path: Path,
    *,
    opset: int = DEFAULT_OPSET,
    ir_version: int = DEFAULT_IR_VERSION,
    verify: bool = True,
) -> recipe.ExportSummary:
    """Export a loaded policy to `output_path` (written atomically), then verify the written file.

    Raises UserError for policies that cannot be exported or bad versions, and
    recipe.VerificationError on a mismatch, in which case the file is removed.
    """
    check_exportable(policy, policy_id)
    graph = GodotPolicyGraph(policy)
    size = int(np.prod(policy.observation_space.shape))
    label = f"RLlib {algorithm_name(policy)} policy {policy_id!r}, output {graph.describe_output()}"
    check = (lambda path: verify_against_policy(policy, graph, path)) if verify else None
    return recipe.export_verified(
        graph, [torch.zeros(1, size)], ["obs"], Path(output_path), label, opset, ir_version, check
    )
