"""convert_sb3_to_onnx.py and the shared export code, on tiny trained models of all six SB3 algorithms."""

import json
import zipfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import onnx
import pytest
from gymnasium import spaces
from in_process import run_main
from onnx_helpers import assert_godot_interface, assert_header
from script_helpers import run_script
from stable_baselines3 import A2C, DDPG, DQN, PPO, SAC, TD3

from godot_rl_cli.cli import export_sb3
from godot_rl_cli.errors import UserError
from godot_rl_cli.onnx import recipe as onnx_export
from godot_rl_cli.onnx import sb3 as sb3_onnx
from godot_rl_cli.onnx.recipe import VerificationError
from godot_rl_cli.sb3.policies import GRNExtractor, SmallImageCNN

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


def vector(size: int) -> spaces.Box:
    return spaces.Box(-1.0, 1.0, (size,), np.float32)


def camera(size: int) -> spaces.Box:
    """A Godot `2d` observation: uint8 [height, width, channels]."""
    return spaces.Box(0, 255, (size, size, 1), np.uint8)


def box_actions(size: int, low: float = -1.0, high: float = 1.0) -> spaces.Box:
    return spaces.Box(low, high, (size,), np.float32)


# case: (algorithm, observation space, action space, extra policy_kwargs)
CASES = {
    "ppo-dict-discrete": (PPO, spaces.Dict({"obs": vector(5)}), spaces.Discrete(3), {}),
    "ppo-flat-multidiscrete": (PPO, vector(4), spaces.MultiDiscrete([3, 2]), {}),
    "ppo-dict-image-continuous": (
        PPO,
        spaces.Dict({"obs": vector(4), "camera_2d": camera(36)}),
        box_actions(2),
        {},
    ),
    "ppo-grn-discrete": (
        PPO,
        spaces.Dict({"obs": vector(6)}),
        spaces.Discrete(3),
        {"features_extractor_class": GRNExtractor, "features_extractor_kwargs": {"hidden_size": 8}},
    ),
    "ppo-smallcnn-multidiscrete": (
        PPO,
        spaces.Dict({"obs": vector(3), "camera_2d": camera(10)}),
        spaces.MultiDiscrete([2, 3]),
        {"features_extractor_class": SmallImageCNN, "features_extractor_kwargs": {"cnn_channels": [4, 4]}},
    ),
    "a2c-dict-continuous": (A2C, spaces.Dict({"obs": vector(3), "extra": vector(2)}), box_actions(2), {}),
    "a2c-flat-multidiscrete": (A2C, vector(3), spaces.MultiDiscrete([2, 2, 4]), {}),
    "sac-dict-continuous": (SAC, spaces.Dict({"obs": vector(4)}), box_actions(2), {}),
    "sac-flat-scaled": (SAC, vector(3), box_actions(2, 0.0, 5.0), {}),
    "td3-flat-scaled": (TD3, vector(4), box_actions(2, -2.0, 3.0), {}),
    "ddpg-dict-continuous": (DDPG, spaces.Dict({"obs": vector(4)}), box_actions(3), {}),
    "dqn-flat-discrete": (DQN, vector(4), spaces.Discrete(4), {}),
    "dqn-dict-discrete": (DQN, spaces.Dict({"obs": vector(6)}), spaces.Discrete(3), {}),
}


def algo_of(case: str) -> str:
    return case.split("-")[0]


def observation_inputs(observation_space: spaces.Space) -> list:
    return list(observation_space.spaces) if isinstance(observation_space, spaces.Dict) else ["obs"]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict:
    """Every case trained for a few steps and saved: {case: path}."""
    directory = tmp_path_factory.mktemp("sb3_models")
    saved = {}
    for case, (algorithm, observation_space, action_space, policy_kwargs) in CASES.items():
        policy = "MultiInputPolicy" if isinstance(observation_space, spaces.Dict) else "MlpPolicy"
        if algorithm is PPO:
            kwargs = {"n_steps": 16, "batch_size": 16, "n_epochs": 1}
        elif algorithm is A2C:
            kwargs = {"n_steps": 8}
        else:
            kwargs = {"learning_starts": 10, "batch_size": 8, "buffer_size": 100}
        model = algorithm(
            policy,
            SpacesEnv(observation_space, action_space),
            seed=0,
            policy_kwargs={"net_arch": [16, 16], **policy_kwargs},
            **kwargs,
        )
        model.learn(32)
        saved[case] = directory / f"{case}.zip"
        model.save(saved[case])
    return saved


def game_feeds(observation_space: spaces.Space, observations) -> dict:
    """Observations as the game sends them: float32, images [batch, height, width, channels]."""
    if not isinstance(observation_space, spaces.Dict):
        return {"obs": np.asarray(observations, np.float32)}
    return {key: np.asarray(value, np.float32) for key, value in observations.items()}


# --- the library on every case ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "case,opset,ir_version",
    [
        ("ppo-dict-discrete", 9, 7),
        ("ppo-flat-multidiscrete", 13, 8),
        ("ppo-dict-image-continuous", 13, 9),
        ("ppo-grn-discrete", 9, 9),
        ("ppo-smallcnn-multidiscrete", 11, 8),
        ("a2c-dict-continuous", 17, 9),
        ("a2c-flat-multidiscrete", 9, 8),
        ("sac-dict-continuous", 13, 9),
        ("sac-flat-scaled", 17, 8),
        ("td3-flat-scaled", 11, 7),
        ("ddpg-dict-continuous", 15, 8),
        ("dqn-flat-discrete", 17, 8),
        ("dqn-dict-discrete", 13, 7),
    ],
)
def test_library_export_matches_policy(models, tmp_path, case, opset, ir_version):
    _, observation_space, action_space, _ = CASES[case]
    output = tmp_path / "model.onnx"
    summary = sb3_onnx.convert_sb3_file(models[case], output, opset=opset, ir_version=ir_version)
    assert summary.verified and summary.max_error <= 1e-5 and summary.algorithm == algo_of(case).upper()
    assert (summary.opset, summary.ir_version) == (opset, ir_version)
    assert_header(output, opset, ir_version)
    session = assert_godot_interface(output, observation_inputs(observation_space))

    # Independently of the converter's own check: on new observations (as the game sends them:
    # raw pixels channels-last, floats) the action the game takes is the one SB3 predicts.
    model = sb3_onnx.ALGORITHMS[algo_of(case)].load(models[case], device="cpu")
    observation_space.seed(7)
    samples = [observation_space.sample() for _ in range(25)]
    if isinstance(observation_space, spaces.Dict):
        observations = {
            key: np.stack([sample[key] for sample in samples]) for key in observation_space.spaces
        }
    else:
        observations = np.stack(samples)
    output_values = session.run(
        ["output"], {**game_feeds(observation_space, observations), "state_ins": np.zeros(25, np.float32)}
    )[0]
    actions, _ = model.predict(observations, deterministic=True)
    if isinstance(action_space, spaces.Discrete):
        assert output_values.shape == (25, action_space.n)
        np.testing.assert_array_equal(np.argmax(output_values, axis=1), actions)
    elif isinstance(action_space, spaces.MultiDiscrete):
        splits = np.split(output_values, np.cumsum(action_space.nvec)[:-1], axis=1)
        np.testing.assert_array_equal(np.stack([np.argmax(part, axis=1) for part in splits], axis=1), actions)
    elif algo_of(case) in ("ppo", "a2c"):
        np.testing.assert_allclose(
            np.clip(output_values, action_space.low, action_space.high), actions, atol=1e-5
        )
    else:
        np.testing.assert_allclose(output_values, actions, atol=1e-5)
        assert np.all(output_values >= action_space.low - 1e-5) and np.all(
            output_values <= action_space.high + 1e-5
        )


def test_obs_array_concatenates_dict_keys(models, tmp_path):
    output = tmp_path / "array.onnx"
    summary = sb3_onnx.convert_sb3_file(models["a2c-dict-continuous"], output, use_obs_array=True)
    assert summary.inputs == {"obs": ["batch_size", 5], "state_ins": ["batch_size"]}
    session = assert_godot_interface(output, ["obs"])
    observations = {
        "extra": np.full((1, 2), 0.5, np.float32),
        "obs": np.array([[0.1, -0.2, 0.3]], np.float32),
    }
    concatenated = np.concatenate(
        [observations["extra"], observations["obs"]], axis=1
    )  # the model's key order
    output_values = session.run(["output"], {"obs": concatenated, "state_ins": np.zeros(1, np.float32)})[0]
    model = A2C.load(models["a2c-dict-continuous"], device="cpu")
    np.testing.assert_allclose(output_values, model.predict(observations, deterministic=True)[0], atol=1e-5)


def test_image_input_takes_the_game_layout(models, tmp_path):
    output = tmp_path / "camera.onnx"
    summary = sb3_onnx.convert_sb3_file(models["ppo-dict-image-continuous"], output)
    assert summary.inputs["camera_2d"] == ["batch_size", 36, 36, 1] and summary.inputs["obs"] == [
        "batch_size",
        4,
    ]


def test_export_of_an_in_memory_model_with_defaults(tmp_path):
    """The training script's path: an already-loaded PPO MultiInputPolicy, default versions."""
    model = PPO(
        "MultiInputPolicy",
        SpacesEnv(spaces.Dict({"obs": vector(4)}), box_actions(2)),
        n_steps=16,
        batch_size=16,
    )
    summary = sb3_onnx.export_sb3_model(model, tmp_path / "sub" / "policy.onnx")
    assert summary.algorithm == "PPO" and summary.verified and summary.max_error <= 1e-5
    assert_header(tmp_path / "sub" / "policy.onnx", 13, 9)
    assert_godot_interface(tmp_path / "sub" / "policy.onnx", ["obs"])
    assert (
        "PPO; inputs obs['batch_size', 4], state_ins['batch_size']; outputs output['batch_size', 2]"
        in str(summary)
    )
    assert "opset 13, IR version 9; max verification error" in str(summary)
    assert [path.name for path in (tmp_path / "sub").iterdir()] == ["policy.onnx"], (
        "no temporary file left behind"
    )


# --- algorithm detection ----------------------------------------------------------------------------


def test_detection_by_metadata_and_by_structure(models):
    for case, path in models.items():
        assert sb3_onnx.detect_algorithm(path) == algo_of(case), case
        with zipfile.ZipFile(path) as archive:
            structure = sb3_onnx.algorithm_from_structure(archive)
        assert structure == {"ddpg": "td3"}.get(algo_of(case), algo_of(case)), (
            case
        )  # DDPG's networks are TD3's


def _without_metadata(source: Path, target: Path) -> Path:
    """A copy of the model whose `data` no longer names its policy class's module."""
    with zipfile.ZipFile(source) as archive, zipfile.ZipFile(target, "w") as copy:
        for item in archive.namelist():
            content = archive.read(item)
            if item == "data":
                data = json.loads(content)
                data["policy_class"]["__module__"] = "somewhere.else"
                content = json.dumps(data).encode()
            copy.writestr(item, content)
    return target


def test_structure_decides_when_metadata_is_silent(models, tmp_path):
    copy = _without_metadata(models["dqn-dict-discrete"], tmp_path / "anonymous.zip")
    assert sb3_onnx.algorithm_from_metadata(json.loads(zipfile.ZipFile(copy).read("data"))) is None
    assert sb3_onnx.detect_algorithm(copy) == "dqn"
    assert sb3_onnx.load_sb3_model(copy, "dqn")[1] == "dqn"
    with pytest.raises(UserError, match="--algo ppo does not match .* DQN model"):
        sb3_onnx.load_sb3_model(copy, "ppo")


def test_path_without_zip_suffix_and_default_output(models, tmp_path):
    (tmp_path / "agent.zip").write_bytes(models["dqn-flat-discrete"].read_bytes())
    summary = sb3_onnx.convert_sb3_file(tmp_path / "agent", verify=False)
    assert summary.path == tmp_path / "agent.onnx" and summary.path.exists() and not summary.verified
    assert "not verified" in str(summary)


def test_td3_and_ddpg_flags_are_interchangeable(models, tmp_path):
    summary = sb3_onnx.convert_sb3_file(models["td3-flat-scaled"], tmp_path / "t.onnx", algo="ddpg")
    assert summary.algorithm == "DDPG" and summary.verified


# --- the script, as the controller runs it ----------------------------------------------------------


def convert(*args: str, cwd: Path):
    """The converter's main in this process (its imports paid once for the module); run_script runs it as the
    controller does, in a child."""
    return run_main(export_sb3.main, SCRIPT, *args, cwd=cwd)


@pytest.mark.parametrize(
    "case,algo_flag", [("ppo-dict-discrete", None), ("dqn-flat-discrete", "DQN"), ("sac-flat-scaled", "Sac")]
)
def test_script_converts_with_and_without_algo(models, tmp_path, case, algo_flag):
    output = tmp_path / "out dir" / "policy.onnx"
    args = [str(models[case]), "--output", str(output), "--opset", "13", "--ir-version", "9"] + (
        ["--algo", algo_flag] if algo_flag else []
    )
    in_child = algo_flag is None  # one case proves the command line; the others run main in this process
    result = run_script(SCRIPT, *args, cwd=tmp_path) if in_child else convert(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and lines[0] == str(output)
    assert (
        f"{algo_of(case).upper()}; inputs" in lines[1]
        and "opset 13, IR version 9; max verification error" in lines[1]
    )
    assert result.stderr == ""
    assert_header(output, 13, 9)
    assert_godot_interface(output, observation_inputs(CASES[case][1]))


def test_script_default_output_is_beside_the_model(models, tmp_path):
    copy = tmp_path / "agent.zip"
    copy.write_bytes(models["ddpg-dict-continuous"].read_bytes())
    result = convert("agent.zip", "--opset", "17", "--ir-version", "8", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == str(tmp_path / "agent.onnx")
    assert_header(tmp_path / "agent.onnx", 17, 8)


def test_script_use_obs_array_and_no_verify(models, tmp_path):
    """--use-obs-array: one 'obs' input of every key; --no-verify: written without the comparison."""
    output = tmp_path / "array.onnx"
    result = convert(
        str(models["a2c-dict-continuous"]),
        "-o",
        str(output),
        "--use-obs-array",
        "--no-verify",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    summary = result.stdout.splitlines()[1]
    assert "inputs obs['batch_size', 5], state_ins['batch_size']" in summary and summary.endswith(
        "not verified"
    )
    assert_godot_interface(output, ["obs"])


def _bad_inputs(tmp_path: Path, models) -> dict:
    not_zip = tmp_path / "not_zip.zip"
    not_zip.write_text("hello")
    foreign_zip = tmp_path / "foreign.zip"
    with zipfile.ZipFile(foreign_zip, "w") as archive:
        archive.writestr("readme.txt", "not a model")
    discrete_obs = tmp_path / "discrete_obs.zip"
    PPO("MlpPolicy", SpacesEnv(spaces.Discrete(5), spaces.Discrete(2)), n_steps=16, batch_size=16).save(
        discrete_obs
    )
    ppo = str(models["ppo-dict-discrete"])
    return {
        "missing": ([str(tmp_path / "missing.zip")], "does not exist"),
        "directory": ([str(tmp_path)], "is a directory"),
        "not a zip": ([str(not_zip)], "not a zip file"),
        "zip that is not a model": ([str(foreign_zip)], "not a Stable-Baselines3 model"),
        "wrong algo": ([ppo, "--algo", "SAC"], "--algo sac does not match"),
        "unsupported observation space": ([str(discrete_obs)], "only Box observations"),
        "ir too old for opset": (
            [ppo, "--opset", "17", "--ir-version", "7"],
            "IR version 7 is too old for opset 17",
        ),
        "ir newer than onnx knows": ([ppo, "--ir-version", "99"], "IR version 99 is newer"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "directory",
        "not a zip",
        "zip that is not a model",
        "wrong algo",
        "unsupported observation space",
        "ir too old for opset",
        "ir newer than onnx knows",
    ],
)
def test_bad_input_is_one_error_line_and_no_file(models, tmp_path, case):
    args, message = _bad_inputs(tmp_path, models)[case]
    output = tmp_path / "out.onnx"
    # refused at parse time (cheap in a child), and one refused after the imports, through the command line
    in_child = case in ("missing", "directory", "zip that is not a model")
    all_args = [*args, "-o", str(output)]
    result = run_script(SCRIPT, *all_args, cwd=tmp_path) if in_child else convert(*all_args, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith("ERROR:") and message in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stdout == ""
    assert not output.exists() and not list(tmp_path.glob(".*tmp"))


@pytest.mark.parametrize("flag", ["--opset=8", "--opset=18", "--algo=trpo"])
def test_out_of_range_flags_are_usage_errors(models, tmp_path, flag):
    result = run_script(SCRIPT, str(models["ppo-dict-discrete"]), flag, cwd=tmp_path)
    assert result.returncode == 2 and "error:" in result.stderr and not list(tmp_path.iterdir())


def test_versions_beyond_godot_warn_and_unsupported_actions_are_refused(models, tmp_path, capsys):
    summary = sb3_onnx.convert_sb3_file(models["ppo-dict-discrete"], tmp_path / "ir10.onnx", ir_version=10)
    assert summary.ir_version == 10 and summary.verified
    assert capsys.readouterr().err.startswith(
        "WARNING: the Godot plugin (ONNX Runtime 1.15) loads IR version <= 9"
    )
    binary = PPO("MlpPolicy", SpacesEnv(vector(3), spaces.MultiBinary(2)), n_steps=16, batch_size=16)
    with pytest.raises(UserError, match="MultiBinary actions cannot be exported"):
        sb3_onnx.export_sb3_model(binary, tmp_path / "binary.onnx")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["ir10.onnx"]


# --- verification failures --------------------------------------------------------------------------


def test_mismatching_reference_removes_the_written_file(models, tmp_path):
    model, _ = sb3_onnx.load_sb3_model(models["sac-dict-continuous"])
    exported = tmp_path / "exported.onnx"
    sb3_onnx.export_sb3_model(model, exported, verify=False)
    onnx_model = onnx.load(str(exported))
    feeds = {
        "obs": np.random.default_rng(0).uniform(-1, 1, (20, 4)).astype(np.float32),
        "state_ins": np.zeros(20, np.float32),
    }
    true_actions = model.predict({"obs": feeds["obs"]}, deterministic=True)[0]

    def against(reference):
        return lambda path: onnx_export.check_continuous(
            onnx_export.run_onnx(path, feeds)["output"], reference
        )

    target = tmp_path / "target.onnx"
    target.write_bytes(b"an older export")
    with pytest.raises(
        VerificationError, match=r"differ from the policy's by up to 0\.0[0-9]+ \(tolerance 1e-05\)"
    ):
        onnx_export.save_verified(onnx_model, target, against(true_actions + 0.01))
    assert not target.exists() and sorted(path.name for path in tmp_path.iterdir()) == ["exported.onnx"]
    assert onnx_export.save_verified(onnx_model, target, against(true_actions)) <= 1e-5
    assert target.exists()


def test_discrete_and_state_checks_fail_on_mismatch():
    logits = np.array([[0.1, 0.9, 0.0, 0.2, 0.1], [0.8, 0.1, 0.0, 0.0, 0.3]], np.float32)
    onnx_export.check_discrete(logits, np.array([[1, 0], [0, 1]]), [3, 2])
    with pytest.raises(VerificationError, match="1 of 2 samples \\(action head 1\\)"):
        onnx_export.check_discrete(logits, np.array([[1, 0], [0, 0]]), [3, 2])
    with pytest.raises(VerificationError, match="need 4"):
        onnx_export.check_discrete(logits, np.array([[1], [0]]), [4])
    with pytest.raises(VerificationError, match="state_outs"):
        onnx_export.check_state_passthrough({"state_outs": np.zeros(2)}, np.ones(2))
