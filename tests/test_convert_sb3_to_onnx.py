"""convert_sb3_to_onnx.py and the shared export code, on tiny models of all six SB3 algorithms."""

import zipfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import onnx
import onnxruntime
import pytest
from gymnasium import spaces
from script_helpers import run_script
from stable_baselines3 import A2C, DDPG, DQN, PPO, SAC, TD3

from godot_rl_cli import sb3_onnx
from godot_rl_cli.onnx_export import VerificationError

SCRIPT = "convert_sb3_to_onnx.py"


class SpacesEnv(gym.Env):
    """Random observations in the given spaces, 10-step episodes: enough to build and train tiny models."""

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space):
        self.observation_space = observation_space
        self.action_space = action_space
        self.steps = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.steps = 0
        return self.observation_space.sample(), {}

    def step(self, action):
        self.steps += 1
        return self.observation_space.sample(), float(self.np_random.normal()), self.steps >= 10, False, {}


def vector_obs(size: int = 4) -> spaces.Box:
    return spaces.Box(-1.0, 1.0, (size,), np.float32)


def dict_obs(**sizes: int) -> spaces.Dict:
    return spaces.Dict({key: vector_obs(size) for key, size in sizes.items()})


CASES = {
    "ppo-dict-discrete": (PPO, dict_obs(obs=5), spaces.Discrete(3)),
    "ppo-flat-multidiscrete": (PPO, vector_obs(4), spaces.MultiDiscrete([3, 2])),
    "a2c-dict-continuous": (A2C, dict_obs(obs=3, extra=2), spaces.Box(-1.0, 1.0, (2,), np.float32)),
    "sac-dict-continuous": (SAC, dict_obs(obs=4), spaces.Box(-1.0, 1.0, (2,), np.float32)),
    "td3-flat-scaled": (TD3, vector_obs(4), spaces.Box(-2.0, 3.0, (2,), np.float32)),
    "ddpg-dict-continuous": (DDPG, dict_obs(obs=4), spaces.Box(-1.0, 1.0, (3,), np.float32)),
    "dqn-flat-discrete": (DQN, vector_obs(4), spaces.Discrete(4)),
    "dqn-dict-discrete": (DQN, dict_obs(obs=6), spaces.Discrete(3)),
}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Each case trained briefly and saved: {case: (path, algo name)}."""
    directory = tmp_path_factory.mktemp("sb3_models")
    saved = {}
    for case, (algorithm, observation_space, action_space) in CASES.items():
        env = SpacesEnv(observation_space, action_space)
        policy = "MultiInputPolicy" if isinstance(observation_space, spaces.Dict) else "MlpPolicy"
        kwargs = {"n_steps": 16, "batch_size": 16} if algorithm is PPO else {"n_steps": 8} if algorithm is A2C else {"learning_starts": 10, "batch_size": 16, "buffer_size": 200}
        model = algorithm(policy, env, seed=0, policy_kwargs={"net_arch": [16, 16]}, **kwargs)
        model.learn(48)
        path = directory / f"{case}.zip"
        model.save(path)
        saved[case] = (path, case.split("-")[0])
    return saved


def onnx_inputs(session: onnxruntime.InferenceSession, batch: int) -> dict:
    rng = np.random.default_rng(1)
    feeds = {}
    for item in session.get_inputs():
        shape = [batch] + [dim for dim in item.shape[1:]]
        feeds[item.name] = rng.uniform(-1, 1, shape).astype(np.float32)
    return feeds


def assert_godot_names(path: Path, expected_inputs: list) -> onnxruntime.InferenceSession:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == expected_inputs + ["state_ins"]
    assert [o.name for o in session.get_outputs()] == ["output", "state_outs"]
    for batch in (1, 5):
        feeds = onnx_inputs(session, batch)
        output, state_outs = session.run(None, feeds)
        assert output.shape[0] == batch
        np.testing.assert_array_equal(state_outs, feeds["state_ins"])
    return session


def assert_header(path: Path, opset: int, ir_version: int) -> None:
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    assert model.ir_version == ir_version
    assert [entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")] == [opset]


@pytest.mark.parametrize(
    "case,opset,ir_version",
    [
        ("ppo-dict-discrete", 9, 7),
        ("ppo-flat-multidiscrete", 13, 8),
        ("a2c-dict-continuous", 17, 9),
        ("sac-dict-continuous", 13, 9),
        ("td3-flat-scaled", 11, 7),
        ("ddpg-dict-continuous", 15, 8),
        ("dqn-flat-discrete", 17, 8),
        ("dqn-dict-discrete", 13, 9),
    ],
)
def test_library_export_matches_policy(models, tmp_path, case, opset, ir_version):
    path, algo = models[case]
    output = tmp_path / "model.onnx"
    summary = sb3_onnx.convert_sb3_file(path, output, opset=opset, ir_version=ir_version)
    assert summary.verified and summary.max_error <= 1e-5 and summary.algorithm == algo.upper()
    assert_header(output, opset, ir_version)
    observation_space = CASES[case][1]
    keys = list(observation_space.spaces) if isinstance(observation_space, spaces.Dict) else ["obs"]
    session = assert_godot_names(output, keys)
    # An independent check on new observations: the action the game would take equals SB3's.
    model, _ = sb3_onnx.load_sb3_model(path, None)
    observations = sb3_onnx.sample_observations(observation_space, 25, seed=42)
    feeds = {k: np.asarray(v, np.float32) for k, v in observations.items()} if keys != ["obs"] or isinstance(observations, dict) else {"obs": observations.astype(np.float32)}
    logits = session.run(["output"], {**feeds, "state_ins": np.zeros(25, np.float32)})[0]
    actions, _ = model.predict(observations, deterministic=True)
    action_space = CASES[case][2]
    if isinstance(action_space, spaces.Discrete):
        np.testing.assert_array_equal(np.argmax(logits, axis=1), actions)
    elif isinstance(action_space, spaces.MultiDiscrete):
        np.testing.assert_array_equal(np.stack([np.argmax(logits[:, :3], 1), np.argmax(logits[:, 3:], 1)], 1), actions)
    elif algo in ("sac", "td3", "ddpg"):
        np.testing.assert_allclose(model.policy.unscale_action(logits), actions, atol=1e-5)
    else:
        np.testing.assert_allclose(np.clip(logits, -1, 1), actions, atol=1e-5)


@pytest.mark.parametrize("case,algo_flag", [("ppo-dict-discrete", None), ("dqn-flat-discrete", "DQN"), ("td3-flat-scaled", "td3")])
def test_script_converts_with_and_without_algo(models, tmp_path, case, algo_flag):
    path, algo = models[case]
    output = tmp_path / "out" / "policy.onnx"
    args = [str(path), "--output", str(output), "--opset", "13", "--ir-version", "9"] + (["--algo", algo_flag] if algo_flag else [])
    result = run_script(SCRIPT, *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == str(output)
    assert f"{algo.upper()}; inputs" in lines[1] and "opset 13, IR version 9" in lines[1] and "max verification error" in lines[1]
    assert_header(output, 13, 9)


def test_default_output_is_beside_the_model_and_obs_array_input(models, tmp_path):
    path, _ = models["a2c-dict-continuous"]
    copy = tmp_path / "agent.zip"
    copy.write_bytes(path.read_bytes())
    result = run_script(SCRIPT, str(copy), "--use-obs-array", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    session = assert_godot_names(tmp_path / "agent.onnx", ["obs"])
    assert session.get_inputs()[0].shape[1] == 5, "the 3 + 2 values of both keys, concatenated"


def test_detection_reads_metadata_then_structure(models):
    for case, (path, algo) in models.items():
        assert sb3_onnx.detect_algorithm(path) == algo, case


def test_verification_mismatch_writes_nothing(models, tmp_path, monkeypatch):
    model, _ = sb3_onnx.load_sb3_model(models["sac-dict-continuous"][0], None)
    original = sb3_onnx.GodotPolicyGraph._action_output
    monkeypatch.setattr(sb3_onnx.GodotPolicyGraph, "_action_output", lambda self, obs: original(self, obs) * 0.5)
    output = tmp_path / "bad.onnx"
    with pytest.raises(VerificationError, match="differ"):
        sb3_onnx.export_sb3_model(model, output)
    assert not output.exists() and list(tmp_path.iterdir()) == []


def _bad_inputs(tmp_path: Path, models) -> dict:
    not_zip = tmp_path / "not_zip.zip"
    not_zip.write_text("hello")
    foreign_zip = tmp_path / "foreign.zip"
    with zipfile.ZipFile(foreign_zip, "w") as archive:
        archive.writestr("readme.txt", "not a model")
    discrete_obs = tmp_path / "discrete_obs.zip"
    PPO("MlpPolicy", SpacesEnv(spaces.Discrete(5), spaces.Discrete(2)), n_steps=16, batch_size=16).save(discrete_obs)
    return {
        "missing": ([str(tmp_path / "missing.zip")], "does not exist"),
        "directory": ([str(tmp_path)], "is a directory"),
        "not a zip": ([str(not_zip)], "not a zip file"),
        "zip that is not a model": ([str(foreign_zip)], "not a Stable-Baselines3 model"),
        "wrong algo": ([str(models["ppo-dict-discrete"][0]), "--algo", "sac"], "--algo sac does not match"),
        "unsupported observation space": ([str(discrete_obs)], "only Box observations can be exported"),
        "ir too old for opset": ([str(models["ppo-dict-discrete"][0]), "--opset", "17", "--ir-version", "7"], "too old for opset 17"),
    }


@pytest.mark.parametrize("case", ["missing", "directory", "not a zip", "zip that is not a model", "wrong algo", "unsupported observation space", "ir too old for opset"])
def test_bad_input_is_one_line_error_and_no_file(models, tmp_path, case):
    args, message = _bad_inputs(tmp_path, models)[case]
    output = tmp_path / "out.onnx"
    result = run_script(SCRIPT, *args, "-o", str(output), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith("ERROR:") and message in result.stderr
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert not output.exists()
    assert not list(tmp_path.glob(".*tmp"))


@pytest.mark.parametrize("flag", ["--opset=8", "--opset=18", "--algo=trpo"])
def test_out_of_range_flags_are_argparse_errors(models, tmp_path, flag):
    result = run_script(SCRIPT, str(models["ppo-dict-discrete"][0]), flag, cwd=tmp_path)
    assert result.returncode == 2 and "error:" in result.stderr
