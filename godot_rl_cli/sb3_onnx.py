"""Stable-Baselines3 models to ONNX files the Godot plugin runs, verified against the SB3 policy.

`output` holds, per algorithm: PPO/A2C the action net's output (discrete logits, multi-discrete
logits concatenated per head, or continuous means, which Godot clamps to [-1, 1]); SAC/TD3/DDPG
the deterministic actor action in [-1, 1]; DQN the Q-values (argmax is the action).
"""

import io
import json
import warnings
import zipfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3 import A2C, DDPG, DQN, PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm

from godot_rl_cli import onnx_export
from godot_rl_cli.errors import UserError

ALGORITHMS = {"ppo": PPO, "a2c": A2C, "dqn": DQN, "sac": SAC, "td3": TD3, "ddpg": DDPG}
VERIFY_SAMPLES = 32


# --- which algorithm --------------------------------------------------------------------------


def algorithm_of(model: BaseAlgorithm) -> str:
    """The algorithm name of a loaded model (DDPG before TD3: it is a subclass)."""
    for name in ("ddpg", "td3", "sac", "dqn", "ppo", "a2c"):
        if isinstance(model, ALGORITHMS[name]):
            return name
    raise UserError(f"{type(model).__name__} models cannot be exported", "use one of: " + ", ".join(ALGORITHMS))


def _read_zip(model_path: Path) -> zipfile.ZipFile:
    if not model_path.exists():
        raise UserError(f"model file {model_path} does not exist", "pass the .zip saved by the training script")
    if model_path.is_dir():
        raise UserError(f"{model_path} is a directory, not a model file", "pass the .zip saved by the training script")
    if not zipfile.is_zipfile(model_path):
        raise UserError(f"{model_path} is not a Stable-Baselines3 model (not a zip file)", "pass the .zip saved by the training script")
    archive = zipfile.ZipFile(model_path)
    if "data" not in archive.namelist() or "policy.pth" not in archive.namelist():
        raise UserError(f"{model_path} is a zip file but not a Stable-Baselines3 model (no data/policy.pth)", "pass the .zip saved by the training script")
    return archive


def _from_metadata(data: dict) -> Optional[str]:
    """Step 1: the `controller_algo` field this suite writes, else the policy class and the saved hyperparameters."""
    if data.get("controller_algo") in ALGORITHMS:
        return data["controller_algo"]
    module = str(data.get("policy_class", {}).get("__module__", ""))
    if module.endswith("dqn.policies"):
        return "dqn"
    if module.endswith("sac.policies"):
        return "sac"
    if module.endswith("td3.policies"):
        return "ddpg" if data.get("policy_delay") == 1 and data.get("target_noise_clip") == 0.0 else "td3"
    if module.endswith("common.policies") and "n_steps" in data:
        return "ppo" if "n_epochs" in data else "a2c"
    return None


def _from_structure(archive: zipfile.ZipFile) -> Optional[str]:
    """Step 2: the network parts in policy.pth (q_net, actor/critic targets, action_net...)."""
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
        return "ppo"
    return None


def detect_algorithm(model_path: Path) -> str:
    """The spec's order: metadata, then structure, then trying each candidate algorithm's loader."""
    archive = _read_zip(model_path)
    try:
        data = json.loads(archive.read("data"))
    except ValueError:
        data = {}
    algo = _from_metadata(data) or _from_structure(archive)
    if algo:
        return algo
    for name, algorithm in ALGORITHMS.items():
        try:
            algorithm.load(model_path, device="cpu")
            return name
        except Exception:
            continue
    raise UserError(f"cannot tell which algorithm trained {model_path}", "pass --algo ppo|a2c|dqn|sac|td3|ddpg")


def load_sb3_model(model_path: Path, algo: Optional[str]) -> Tuple[BaseAlgorithm, str]:
    """Load the model with the given or detected algorithm; a given `--algo` must match what the file holds."""
    detected = detect_algorithm(model_path)
    if algo and algo != detected and not {algo, detected} <= {"td3", "ddpg"}:
        raise UserError(f"--algo {algo} does not match {model_path} (it holds a {detected.upper()} model)", f"pass --algo {detected} or omit --algo")
    algo = algo or detected
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ALGORITHMS[algo].load(model_path, device="cpu"), algo
    except Exception as error:
        raise UserError(f"cannot load {model_path} as a {algo.upper()} model ({type(error).__name__}: {error})", "check the file, or pass the right --algo") from None


# --- the exported graph -----------------------------------------------------------------------


class ObservationLayout:
    """How ONNX inputs map to the policy's observation: one input per dict key, or one `obs` array."""

    def __init__(self, observation_space: spaces.Space, use_obs_array: bool):
        self.space = observation_space
        if isinstance(observation_space, spaces.Dict):
            self.keys: Optional[List[str]] = list(observation_space.spaces)
            subspaces = list(observation_space.spaces.values())
        else:
            self.keys = None
            subspaces = [observation_space]
        for key, subspace in zip(self.keys or ["obs"], subspaces):
            if not isinstance(subspace, spaces.Box):
                raise UserError(f"observation {key!r} is a {type(subspace).__name__} space; only Box observations can be exported", "send observations as float arrays")
        self.concatenated = use_obs_array and self.keys is not None and len(self.keys) > 1
        self.input_names = ["obs"] if self.keys is None or self.concatenated else list(self.keys)

    def input_shapes(self) -> List[Tuple[int, ...]]:
        if self.keys is None:
            return [self.space.shape]
        if self.concatenated:
            return [(sum(int(np.prod(space.shape)) for space in self.space.spaces.values()),)]
        return [self.space.spaces[key].shape for key in self.keys]

    def to_policy_observation(self, tensors: Sequence[torch.Tensor]):
        if self.keys is None:
            return tensors[0]
        if not self.concatenated:
            return dict(zip(self.keys, tensors))
        observation, start = {}, 0
        for key in self.keys:
            shape = self.space.spaces[key].shape
            size = int(np.prod(shape))
            observation[key] = tensors[0][:, start : start + size].reshape(-1, *shape)
            start += size
        return observation

    def onnx_inputs(self, samples) -> Dict[str, np.ndarray]:
        if self.keys is None:
            return {"obs": np.asarray(samples, dtype=np.float32)}
        if self.concatenated:
            flat = [np.asarray(samples[key], dtype=np.float32).reshape(len(samples[key]), -1) for key in self.keys]
            return {"obs": np.concatenate(flat, axis=1)}
        return {key: np.asarray(samples[key], dtype=np.float32) for key in self.keys}


class GodotPolicyGraph(torch.nn.Module):
    """inputs (observations..., state_ins) -> (output, state_outs), the names the Godot plugin uses."""

    def __init__(self, model: BaseAlgorithm, algo: str, layout: ObservationLayout):
        super().__init__()
        self.policy = model.policy
        self.algo = algo
        self.layout = layout

    def forward(self, *tensors: torch.Tensor):
        *observation_tensors, state_ins = tensors
        observation = self.layout.to_policy_observation(observation_tensors)
        return self._action_output(observation), state_ins

    def _action_output(self, observation) -> torch.Tensor:
        policy = self.policy
        if self.algo in ("ppo", "a2c"):
            features = policy.extract_features(observation, policy.pi_features_extractor)
            return policy.action_net(policy.mlp_extractor.forward_actor(features))
        if self.algo == "sac":
            mean_actions, _, _ = policy.actor.get_action_dist_params(observation)
            return torch.tanh(mean_actions)
        if self.algo in ("td3", "ddpg"):
            return policy.actor(observation)
        return policy.q_net(observation)


# --- verification -----------------------------------------------------------------------------


def sample_observations(space: spaces.Space, count: int, seed: int = 0):
    space.seed(seed)
    samples = [space.sample() for _ in range(count)]
    if isinstance(space, spaces.Dict):
        return {key: np.stack([sample[key] for sample in samples]) for key in space.spaces}
    return np.stack(samples)


def _head_sizes(action_space: spaces.Space) -> List[int]:
    if isinstance(action_space, spaces.Discrete):
        return [int(action_space.n)]
    return [int(size) for size in action_space.nvec]


def verify(model: BaseAlgorithm, algo: str, onnx_model, layout: ObservationLayout, samples: int = VERIFY_SAMPLES) -> float:
    """Compare onnxruntime with the SB3 policy on sampled observations (batch of `samples` and batch of 1)."""
    observations = sample_observations(layout.space, samples)
    onnx_inputs = layout.onnx_inputs(observations)
    state = np.arange(samples, dtype=np.float32)
    outputs = onnx_export.run_onnx(onnx_model, {**onnx_inputs, onnx_export.STATE_INPUT: state})
    onnx_export.check_state_passthrough(outputs, state)
    single = onnx_export.run_onnx(onnx_model, {**{k: v[:1] for k, v in onnx_inputs.items()}, onnx_export.STATE_INPUT: state[:1]})
    onnx_export.max_abs_error(single[onnx_export.ACTION_OUTPUT], outputs[onnx_export.ACTION_OUTPUT][:1])
    actions, _ = model.predict(observations, deterministic=True)
    action_space = model.action_space
    if isinstance(action_space, (spaces.Discrete, spaces.MultiDiscrete)):
        return onnx_export.check_discrete(outputs[onnx_export.ACTION_OUTPUT], actions, _head_sizes(action_space))
    if algo in ("ppo", "a2c"):
        with torch.no_grad():
            observation_tensor, _ = model.policy.obs_to_tensor(observations)
            expected = model.policy.get_distribution(observation_tensor).mode().cpu().numpy()
    else:
        expected = model.policy.scale_action(actions)
    return onnx_export.check_continuous(outputs[onnx_export.ACTION_OUTPUT], expected)


# --- entry points -----------------------------------------------------------------------------


def export_sb3_model(
    model: BaseAlgorithm,
    output_path: Path,
    *,
    algo: Optional[str] = None,
    opset: int = 13,
    ir_version: int = 9,
    use_obs_array: bool = False,
    verify_export: bool = True,
) -> onnx_export.ExportSummary:
    """Export a loaded SB3 model to `output_path`, verified first (on mismatch nothing is written).

    Raises UserError for unsupported models or versions and onnx_export.VerificationError on a mismatch.
    """
    algo = algo or algorithm_of(model)
    if isinstance(model.action_space, spaces.MultiBinary):
        raise UserError("MultiBinary action spaces cannot be exported", "use Discrete, MultiDiscrete or Box actions")
    layout = ObservationLayout(model.observation_space, use_obs_array)
    graph = GodotPolicyGraph(model, algo, layout).to("cpu")
    example = [torch.zeros((1, *shape), dtype=torch.float32) for shape in layout.input_shapes()]
    onnx_model = onnx_export.export_module(graph, example + [torch.zeros(1)], layout.input_names + [onnx_export.STATE_INPUT], opset, ir_version)
    summary = onnx_export.ExportSummary(
        path=Path(output_path),
        algorithm=algo.upper(),
        inputs=onnx_export.tensor_shapes(onnx_model.graph.input),
        outputs=onnx_export.tensor_shapes(onnx_model.graph.output),
        opset=onnx_export.default_opset(onnx_model),
        ir_version=onnx_model.ir_version,
    )
    if verify_export:
        summary.max_error = verify(model, algo, onnx_model, layout)
        summary.verified = True
    onnx_export.save_atomically(onnx_model, Path(output_path))
    return summary


def convert_sb3_file(
    model_path: Path,
    output_path: Optional[Path] = None,
    *,
    algo: Optional[str] = None,
    opset: int = 13,
    ir_version: int = 9,
    use_obs_array: bool = False,
    verify_export: bool = True,
) -> onnx_export.ExportSummary:
    """Load `model_path` (detecting the algorithm unless given) and export it; default output: beside it, `.onnx`."""
    model_path = Path(model_path)
    onnx_export.check_versions(opset, ir_version)
    model, algo = load_sb3_model(model_path, algo)
    output_path = Path(output_path) if output_path else model_path.with_suffix(".onnx")
    return export_sb3_model(model, output_path, algo=algo, opset=opset, ir_version=ir_version, use_obs_array=use_obs_array, verify_export=verify_export)
