"""ONNX export and batch-1 latency of the default PPO policy, printed as one JSON line for bench/run_bench.py.

A child process of the benchmark, so torch runs with its default threads and the benchmark itself never
imports it.
"""

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import onnxruntime  # noqa: E402
import torch  # noqa: E402
from stable_baselines3 import PPO  # noqa: E402

from godot_rl_cli.onnx.sb3 import export_sb3_model  # noqa: E402


class OneStepEnv(gym.Env):
    """BallChase's spaces (obs 4, 2 continuous actions), without a game: export needs only the policy."""

    observation_space = gym.spaces.Dict({"obs": gym.spaces.Box(-1.0, 1.0, (4,), np.float32)})
    action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)

    def reset(self, *, seed=None, options=None):
        return {"obs": np.zeros(4, np.float32)}, {}

    def step(self, action):
        return {"obs": np.zeros(4, np.float32)}, 0.0, True, False, {}


def median_time(function: Callable, repeats: int = 2000) -> float:
    for _ in range(50):
        function()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main() -> None:
    model = PPO("MultiInputPolicy", OneStepEnv(), n_steps=32, batch_size=32, verbose=0)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "policy.onnx"
        started = time.perf_counter()
        summary = export_sb3_model(model, path)
        export_s = time.perf_counter() - started
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        feeds = {"obs": np.zeros((1, 4), np.float32), "state_ins": np.zeros(1, np.float32)}
        onnx_s = median_time(lambda: session.run(None, feeds))
    policy = model.policy
    observation = {"obs": torch.zeros((1, 4))}
    with torch.no_grad():
        torch_s = median_time(
            lambda: policy.action_net(
                policy.mlp_extractor.forward_actor(
                    policy.extract_features(observation, policy.pi_features_extractor)
                )
            )
        )
    print(
        json.dumps(
            {"export_s": export_s, "onnx_s": onnx_s, "torch_s": torch_s, "max_error": summary.max_error}
        )
    )


if __name__ == "__main__":
    main()
