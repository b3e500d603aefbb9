"""Stable-Baselines3 models to ONNX files the Godot plugin runs, verified against the SB3 policy.

`output` holds, per algorithm:
- PPO/A2C: the action net's output: discrete logits, multi-discrete logits concatenated per head,
  or continuous means (the plugin clamps them to [-1, 1], as SB3 clips to the action space).
- SAC/TD3/DDPG: the deterministic action exactly as `model.predict(obs, deterministic=True)` returns
  it, i.e. the actor's [-1, 1] action mapped back to the action space's bounds. Godot games have
  [-1, 1] spaces, where the mapping is the identity and nothing is added to the graph.
- DQN: the Q-values (the plugin's argmax is the greedy action).
Inputs: one per observation key, named by the key, or a single `obs` (flat Box observations, or
`use_obs_array`: every key flattened and concatenated in the model's key order), plus `state_ins`.
Image keys (uint8 Box, which SB3 stores channels-first) take the image as the game sends it:
[batch, height, width, channels], raw pixel values 0-255 as floats; the graph transposes and
scales them as SB3 does.
"""

import io
import json
import zipfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.preprocessing import is_image_space, is_image_space_channels_first

from godot_rl_cli import algorithms, manifest
from godot_rl_cli.algorithms import SB3_ALGORITHMS
from godot_rl_cli.errors import UserError
from godot_rl_cli.legacy_models import legacy_custom_objects, version_note
from godot_rl_cli.model_zip import open_model_zip
from godot_rl_cli.onnx import recipe
from godot_rl_cli.onnx.options import DEFAULT_IR_VERSION, DEFAULT_OPSET
from godot_rl_cli.path_types import same_file

ALGORITHMS = {
    name: algorithms.sb3_class(name) for name in SB3_ALGORITHMS
}  # name -> SB3 class, from the table
PASS_ALGO = f"pass --algo {'|'.join(SB3_ALGORITHMS)}"


# --- which algorithm ------------------------------------------------------------------------------


def algorithm_of(model: BaseAlgorithm) -> str:
    """The algorithm name of a loaded model: its most derived class in the table (DDPG's, not TD3's)."""
    matches = [name for name, algorithm_class in ALGORITHMS.items() if isinstance(model, algorithm_class)]
    if matches:
        return max(matches, key=lambda name: len(ALGORITHMS[name].__mro__))
    raise UserError(
        f"{type(model).__name__} models cannot be exported", "use one of: " + ", ".join(ALGORITHMS)
    )


def with_zip_suffix(model_path: Path) -> Path:
    """`model` means `model.zip` when only the latter exists, as in SB3's own load()."""
    zipped = model_path.with_name(model_path.name + ".zip")
    return zipped if not model_path.exists() and zipped.is_file() else model_path


def algorithm_from_metadata(data: dict) -> Optional[str]:
    """Step 1: the `controller_algo` field the training script saves, else the policy class's module and the
    hyperparameters."""
    if data.get("controller_algo") in ALGORITHMS:
        return data["controller_algo"]
    policy_class = data.get("policy_class")
    module = str(policy_class.get("__module__", "")) if isinstance(policy_class, dict) else ""
    candidates = [name for name in SB3_ALGORITHMS if policy_module(name) == module]
    if {"td3", "ddpg"} == set(candidates):
        # DDPG is TD3 with every update delayed by one step and no target smoothing noise clip.
        return "ddpg" if data.get("policy_delay") == 1 and data.get("target_noise_clip") == 0.0 else "td3"
    if {"ppo", "a2c"} == set(candidates):
        return ("ppo" if "n_epochs" in data else "a2c") if "n_steps" in data else None
    return candidates[0] if len(candidates) == 1 else None


def policy_module(algo: str) -> str:
    """The module of the algorithm's policy class, as SB3 records it in a saved model's metadata."""
    return algorithms.ALGORITHMS[algo].sb3_policy_class.rpartition(".")[0]


def algorithm_from_structure(archive: zipfile.ZipFile) -> Optional[str]:
    """Step 2: the networks in policy.pth: q_net target (DQN), actor target (TD3), critic target (SAC),
    action_net (PPO/A2C)."""
    try:
        state = torch.load(io.BytesIO(archive.read("policy.pth")), map_location="cpu", weights_only=True)
    except Exception:
        return None
    parts = {name.split(".")[0] for name in state}
    if "q_net_target" in parts:
        return "dqn"
    if "actor_target" in parts:
        return "td3"
    if {"actor", "critic_target"} <= parts:
        return "sac"
    if "action_net" in parts:
        return "a2c" if _uses_rmsprop(archive) else "ppo"  # A2C's default optimizer is RMSprop, PPO's Adam
    return None


def _uses_rmsprop(archive: zipfile.ZipFile) -> bool:
    try:
        optimizer = torch.load(
            io.BytesIO(archive.read("policy.optimizer.pth")), map_location="cpu", weights_only=True
        )
    except Exception:
        return False
    return any("alpha" in group for group in optimizer.get("param_groups", []))


def _load_as(model_path: Path, algo: str) -> BaseAlgorithm:
    """Load with one algorithm's class; the policy must be that algorithm's kind."""
    model = ALGORITHMS[algo].load(model_path, device="cpu", custom_objects=legacy_custom_objects(model_path))
    policy_class = algorithms.sb3_policy_class(algo)
    if not isinstance(model.policy, policy_class):
        raise TypeError(f"the policy is a {type(model.policy).__name__}, not a {policy_class.__name__}")
    return model


def load_sb3_model(model_path: Path, algo: Optional[str] = None) -> Tuple[BaseAlgorithm, str]:
    """Load `model_path`, detecting the algorithm in the spec's order (metadata, structure, trying each
    loader).

    A given `algo` must agree with what the file says it holds (TD3 and DDPG are interchangeable).
    """
    model_path = Path(model_path)
    with open_model_zip(model_path) as archive:
        try:
            data = json.loads(archive.read("data"))
        except ValueError:
            data = {}
        detected = algorithm_from_metadata(data) or algorithm_from_structure(archive)
    if algo and detected and algo != detected and {algo, detected} != {"td3", "ddpg"}:
        raise UserError(
            f"--algo {algo} does not match {model_path} (it holds a {detected.upper()} model)",
            f"pass --algo {detected} or omit --algo",
        )
    if algo or detected:
        chosen = algo or detected
        try:
            return _load_as(model_path, chosen), chosen
        except Exception as error:
            how = "check the file" + ("" if algo else f", or {PASS_ALGO}")
            raise UserError(
                f"cannot load {model_path} as a {chosen.upper()} model ({type(error).__name__}: {error})"
                + version_note(model_path, error),
                how,
            ) from None
    for candidate in ALGORITHMS:  # step 3; PPO before A2C and TD3 before DDPG, which load each other's files
        try:
            return _load_as(model_path, candidate), candidate
        except Exception:
            continue
    raise UserError(f"cannot tell which algorithm trained {model_path}: no SB3 algorithm loads it", PASS_ALGO)


def detect_algorithm(model_path: Path) -> str:
    """The algorithm `load_sb3_model` picks for the file."""
    return load_sb3_model(model_path)[1]


# --- the exported graph ---------------------------------------------------------------------------


class ObservationInput:
    """One observation key (or the whole flat observation): its space and the shape the game sends."""

    def __init__(self, key: Optional[str], space: spaces.Space):
        if not isinstance(space, spaces.Box):
            raise UserError(
                f"observation {key or 'space'!r} is a {type(space).__name__} space; only Box observations "
                "(vectors and images) can be exported",
                "send observations as float arrays or 2d images",
            )
        self.key = key
        self.space = space
        # SB3 stores image spaces channels-first (VecTransposeImage); Godot sends height, width, channels.
        self.channels_last = is_image_space(space, check_channels=False) and is_image_space_channels_first(
            space
        )
        self.shape: Tuple[int, ...] = (
            tuple(space.shape[1:]) + tuple(space.shape[:1]) if self.channels_last else tuple(space.shape)
        )
        self.size = int(np.prod(space.shape))

    def to_policy(self, tensor: torch.Tensor) -> torch.Tensor:
        """A [batch, *self.shape] tensor in the layout the policy expects."""
        tensor = tensor.reshape(-1, *self.shape)
        return tensor.permute(0, 3, 1, 2) if self.channels_last else tensor

    def to_game(self, samples: np.ndarray) -> np.ndarray:
        """Policy-layout samples as float32 arrays in the game's layout."""
        samples = np.asarray(samples, dtype=np.float32)
        return samples.transpose(0, 2, 3, 1) if self.channels_last else samples


class ObservationLayout:
    """How ONNX inputs map to the policy's observation: one input per dict key, or one `obs` array."""

    def __init__(self, observation_space: spaces.Space, use_obs_array: bool):
        self.space = observation_space
        self.is_dict = isinstance(observation_space, spaces.Dict)
        if self.is_dict:
            self.parts = [
                ObservationInput(key, subspace) for key, subspace in observation_space.spaces.items()
            ]
        else:
            self.parts = [ObservationInput(None, observation_space)]
        self.concatenated = use_obs_array and self.is_dict
        self.input_names = (
            ["obs"] if self.concatenated or not self.is_dict else [part.key for part in self.parts]
        )

    def input_shapes(self) -> List[Tuple[int, ...]]:
        if self.concatenated:
            return [(sum(part.size for part in self.parts),)]
        return [part.shape for part in self.parts]

    def to_policy_observation(self, tensors: Sequence[torch.Tensor]):
        if not self.is_dict:
            return self.parts[0].to_policy(tensors[0])
        if not self.concatenated:
            return {
                part.key: part.to_policy(tensor) for part, tensor in zip(self.parts, tensors, strict=False)
            }
        observation, start = {}, 0
        for part in self.parts:
            observation[part.key] = part.to_policy(tensors[0][:, start : start + part.size])
            start += part.size
        return observation

    def onnx_inputs(self, samples) -> Dict[str, np.ndarray]:
        """Policy-layout samples (as the space samples them) as the ONNX inputs the game would send."""
        if not self.is_dict:
            return {"obs": self.parts[0].to_game(samples)}
        arrays = [part.to_game(samples[part.key]) for part in self.parts]
        if self.concatenated:
            return {"obs": np.concatenate([array.reshape(len(array), -1) for array in arrays], axis=1)}
        return dict(zip(self.input_names, arrays, strict=False))


class GodotPolicyGraph(torch.nn.Module):
    """inputs (observations..., state_ins) -> (output, state_outs), the names the Godot plugin uses."""

    def __init__(self, model: BaseAlgorithm, algo: str, layout: ObservationLayout):
        super().__init__()
        self.policy = model.policy
        self.algo = algo
        self.layout = layout
        self.output = algorithms.ALGORITHMS[algo].onnx_output
        acts_directly = self.output in (algorithms.SQUASHED_MEAN, algorithms.DETERMINISTIC_ACTOR)
        self.action_bounds = _non_unit_bounds(model.action_space) if acts_directly else None

    def forward(self, *tensors: torch.Tensor):
        *observation_tensors, state_ins = tensors
        observation = self.layout.to_policy_observation(observation_tensors)
        return self._action_output(observation), state_ins

    def _action_output(self, observation) -> torch.Tensor:
        policy = self.policy
        if self.output == algorithms.DISTRIBUTION:
            features = policy.extract_features(observation, policy.pi_features_extractor)
            return policy.action_net(policy.mlp_extractor.forward_actor(features))
        if self.output == algorithms.Q_VALUES:
            return policy.q_net(observation)
        if self.output == algorithms.SQUASHED_MEAN:
            mean_actions, _, _ = policy.actor.get_action_dist_params(observation)
            action = torch.tanh(mean_actions)
        else:
            action = policy.actor(observation)
        if self.action_bounds is None:
            return action
        low, high = self.action_bounds
        return low + 0.5 * (action + 1.0) * (high - low)  # SB3's unscale_action


def _non_unit_bounds(action_space: spaces.Space) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
    """The Box's (low, high) as tensors, or None when they are -1 and 1 (nothing to map)."""
    low, high = np.asarray(action_space.low, np.float32), np.asarray(action_space.high, np.float32)
    if np.all(low == -1.0) and np.all(high == 1.0):
        return None
    return torch.from_numpy(low), torch.from_numpy(high)


def check_exportable(model: BaseAlgorithm, algo: str) -> None:
    if isinstance(model.action_space, spaces.Discrete | spaces.MultiDiscrete | spaces.Box):
        return
    raise UserError(
        f"{algo.upper()} models with {type(model.action_space).__name__} actions cannot be exported",
        "use Discrete, MultiDiscrete or Box actions",
    )


# --- verification ---------------------------------------------------------------------------------


def verify_against_policy(
    model: BaseAlgorithm, graph: GodotPolicyGraph, onnx_path: Path, samples: int = recipe.VERIFY_SAMPLES
) -> float:
    """Run the written file in onnxruntime on sampled observations and compare with the SB3 policy.

    Checks: `output` equals the torch graph (within 1e-5, relative for large values), rows do not
    depend on the batch size (1 and 5), `state_outs` is `state_ins`, and the game gets SB3's
    deterministic action: argmax per head for discrete actions; for continuous actions the
    distribution's mean (PPO/A2C, clipped like SB3 clips) or the exact predicted action (SAC/TD3/DDPG).
    Returns the max absolute error; raises recipe.VerificationError on any mismatch.
    """
    layout = graph.layout
    observations = recipe.sample_observations(layout.space, samples)
    feeds = layout.onnx_inputs(observations)
    feeds[recipe.STATE_INPUT] = np.arange(samples, dtype=np.float32)
    actual, error = recipe.check_graph_parity(onnx_path, graph, feeds, layout.input_names)

    actions, _ = model.predict(observations, deterministic=True)
    action_space = model.action_space
    if isinstance(action_space, spaces.Discrete | spaces.MultiDiscrete):
        recipe.check_discrete(actual, actions, recipe.head_sizes(action_space))
        return error
    if graph.output == algorithms.DISTRIBUTION:
        with torch.no_grad():
            observation_tensor, _ = model.policy.obs_to_tensor(observations)
            mean = model.policy.get_distribution(observation_tensor).mode().cpu().numpy()
        error = max(error, recipe.check_continuous(actual, mean, what="action means"))
        game_action = np.clip(actual, action_space.low, action_space.high)
    else:
        game_action = actual
    return max(error, recipe.check_continuous(game_action, actions, what="actions"))


# --- entry points ---------------------------------------------------------------------------------


def export_sb3_model(
    model: BaseAlgorithm,
    output_path: Path,
    *,
    algo: Optional[str] = None,
    opset: int = DEFAULT_OPSET,
    ir_version: int = DEFAULT_IR_VERSION,
    use_obs_array: bool = False,
    verify: bool = True,
) -> recipe.ExportSummary:
    """Export a loaded SB3 model to `output_path` (written atomically), then verify the written file.

    Raises UserError for unsupported models or versions, and recipe.VerificationError on a
    mismatch, in which case the output file is removed.
    """
    algo = algo or algorithm_of(model)
    check_exportable(model, algo)
    layout = ObservationLayout(model.observation_space, use_obs_array)
    model.policy.to("cpu")
    graph = GodotPolicyGraph(model, algo, layout)
    example = [torch.zeros((1, *shape), dtype=torch.float32) for shape in layout.input_shapes()]
    check = (lambda path: verify_against_policy(model, graph, path)) if verify else None
    return recipe.export_verified(
        graph, example, layout.input_names, Path(output_path), algo.upper(), opset, ir_version, check
    )


def convert_sb3_file(
    model_path: Path, output_path: Optional[Path] = None, *, algo: Optional[str] = None, **export_options: Any
) -> recipe.ExportSummary:
    """Load `model_path` (detecting the algorithm unless given) and export it with `export_sb3_model`'s
    options; default output: beside it, `.onnx`. Refused when the spaces differ from the model's manifest."""
    model_path = with_zip_suffix(Path(model_path))
    if output_path and same_file(str(output_path), str(model_path)):
        raise UserError(
            f"the output {output_path} is the model {model_path} itself", "pass another output path"
        )
    model, algo = load_sb3_model(model_path, algo)
    manifest.check_spaces(model_path, model.observation_space, model.action_space)
    output_path = Path(output_path) if output_path else model_path.with_suffix(".onnx")
    return export_sb3_model(model, output_path, algo=algo, **export_options)
