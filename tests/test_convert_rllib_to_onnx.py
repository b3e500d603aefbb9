"""convert_rllib_to_onnx.py on real RLlib (old API stack) checkpoints: tiny in-process runs of five
algorithms, and runs of rllib_training_script.py on the example games (two policies, a resumed run, a single
policy)."""

import json
import os
import shutil
from pathlib import Path
from typing import Dict, List

import gymnasium as gym
import numpy as np
import onnx
import pytest
import torch
import yaml
from conftest import SIM_DIR, find_free_port_block
from gymnasium import spaces
from in_process import run_main
from onnx_helpers import assert_godot_interface, assert_header
from ray.rllib.env.multi_agent_env import MultiAgentEnv
from script_helpers import run_script

from godot_rl_cli.cli import export_rllib
from godot_rl_cli.errors import UserError
from godot_rl_cli.onnx import recipe as onnx_export
from godot_rl_cli.onnx import rllib as rllib_onnx
from godot_rl_cli.onnx.recipe import VerificationError
from godot_rl_cli.rllib import saved_policies

SCRIPT = "convert_rllib_to_onnx.py"
PAIR = ["left_policy", "right_policy"]


# --- tiny checkpoints made in this process ---------------------------------------------------------


class TwoPaddles(MultiAgentEnv):
    """Pong's shape: agents 0 and 1, Box(6) observations, Discrete(3) actions, 20-step shared episodes."""

    def __init__(self, config=None):
        super().__init__()
        self.possible_agents = self.agents = [0, 1]
        self.observation_space = spaces.Dict(
            {agent: spaces.Box(-1.0, 1.0, (6,), np.float32) for agent in self.agents}
        )
        self.action_space = spaces.Dict({agent: spaces.Discrete(3) for agent in self.agents})
        self.steps = 0

    def reset(self, *, seed=None, options=None):
        self.steps = 0
        return {agent: self.observation_space[agent].sample() for agent in self.agents}, {}

    def step(self, actions):
        self.steps += 1
        observations = {agent: self.observation_space[agent].sample() for agent in self.agents}
        rewards = {agent: float(action == agent + 1) for agent, action in actions.items()}
        return observations, rewards, {"__all__": self.steps >= 20}, {"__all__": False}, {}


class OneAgent(gym.Env):
    """A single agent with Box(5) observations and the action space of env_config["actions"], 20-step
    episodes."""

    ACTIONS = {
        "box": spaces.Box(-1.0, 1.0, (2,), np.float32),
        "discrete": spaces.Discrete(4),
        "multidiscrete": spaces.MultiDiscrete([3, 2]),
    }

    def __init__(self, config=None):
        self.observation_space = spaces.Box(-1.0, 1.0, (5,), np.float32)
        self.action_space = self.ACTIONS[(config or {}).get("actions", "box")]
        self.steps = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.steps = 0
        return self.observation_space.sample(), {}

    def step(self, action):
        self.steps += 1
        return self.observation_space.sample(), float(np.sum(action)), self.steps >= 20, False, {}


def old_stack(config):
    return (
        config.api_stack(enable_rl_module_and_learner=False, enable_env_runner_and_connector_v2=False)
        .framework("torch")
        .env_runners(num_env_runners=0)
        .debugging(log_level="ERROR")
        .training(model={"fcnet_hiddens": [32, 32]})
        .reporting(min_time_s_per_iteration=0)
    )


def single_agent_configs() -> Dict[str, object]:
    """name -> AlgorithmConfig of a single-policy (default_policy) run, one per algorithm the trainer
    supports."""
    from ray.rllib.algorithms.appo import APPOConfig
    from ray.rllib.algorithms.dqn import DQNConfig
    from ray.rllib.algorithms.impala import IMPALAConfig
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.algorithms.sac import SACConfig

    from godot_rl_cli.rllib.setup import OLD_STACK_REPLAY_BUFFERS

    def off_policy(config, name: str, actions: str):
        return (
            old_stack(config)
            .environment("one_agent", env_config={"actions": actions})
            .env_runners(rollout_fragment_length=20)
            .training(
                train_batch_size=32,
                num_steps_sampled_before_learning_starts=0,
                replay_buffer_config={"type": OLD_STACK_REPLAY_BUFFERS[name]},
            )
            .reporting(min_sample_timesteps_per_iteration=40)
        )

    return {
        "ppo-box": old_stack(PPOConfig())
        .environment("one_agent", env_config={"actions": "box"})
        .training(train_batch_size=200, minibatch_size=100, num_epochs=1),
        "appo-multidiscrete": old_stack(APPOConfig())
        .environment("one_agent", env_config={"actions": "multidiscrete"})
        .training(train_batch_size=100),
        "impala-discrete": old_stack(IMPALAConfig())
        .environment("one_agent", env_config={"actions": "discrete"})
        .training(train_batch_size=100)
        .resources(num_gpus=0)
        .learners(num_gpus_per_learner=0),
        "ppo-lstm": old_stack(PPOConfig())
        .environment("one_agent")
        .training(
            train_batch_size=200,
            minibatch_size=100,
            num_epochs=1,
            model={"use_lstm": True, "lstm_cell_size": 8, "max_seq_len": 5},
        ),
        "ppo-filtered": old_stack(PPOConfig())
        .environment("one_agent")
        .training(train_batch_size=200, minibatch_size=100, num_epochs=1)
        .env_runners(observation_filter="MeanStdFilter"),
        "dqn-discrete": off_policy(DQNConfig(), "DQN", "discrete"),
        "sac-box": off_policy(SACConfig(), "SAC", "box"),
    }


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Dict[str, Path]:
    """Checkpoints written by algo.save(), with Ray started once (a local instance even if a Ray head runs
    here)."""
    import ray
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.tune.registry import register_env

    root = tmp_path_factory.mktemp("made")
    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
    # Registered names, not classes: checkpoints must load where this test module cannot be imported.
    register_env("two_paddles", TwoPaddles)
    register_env("one_agent", OneAgent)
    try:
        pair = (
            old_stack(PPOConfig())
            .environment("two_paddles")
            .training(train_batch_size=200, minibatch_size=100, num_epochs=1, lr=0.01)
            .multi_agent(
                policies=set(PAIR), policy_mapping_fn=lambda agent_id, *args, **kwargs: PAIR[agent_id]
            )
            .build_algo()
        )
        trial = root / "pair" / "PPO_2026-01-01_00-00-00" / "PPO_godot_abcde"
        for number in range(2):  # two different checkpoints, so tests can tell which one was exported
            pair.train()
            pair.save(str(trial / f"checkpoint_{number:06d}"))
        pair.stop()
        checkpoints = {"pair": trial}
        for name, config in single_agent_configs().items():
            algo = config.build_algo()
            algo.train()
            algo.save(str(root / name / "checkpoint_000000"))
            algo.stop()
            checkpoints[name] = root / name / "checkpoint_000000"
    finally:
        ray.shutdown()
    return checkpoints


def copy_of(source: Path, destination: Path) -> Path:
    shutil.copytree(source, destination)
    return destination


# --- what the files must compute ---------------------------------------------------------------------


def load(checkpoint: Path, policy_id: str):
    return saved_policies.load_policy(checkpoint, policy_id)


def observations(count: int = 24, size: int = 6, seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (count, size)).astype(np.float32)


def run_file(path: Path, obs: np.ndarray) -> np.ndarray:
    return onnx_export.run_onnx(path, {"obs": obs, "state_ins": np.zeros(len(obs), np.float32)})["output"]


def assert_computes_model_of(path: Path, checkpoint: Path, policy_id: str) -> None:
    """The file's output is `policy.model`'s output of this very checkpoint's policy (logits, or the means of
    a Box)."""
    policy = load(checkpoint, policy_id)
    obs = observations(size=policy.observation_space.shape[0])
    with torch.no_grad():
        expected = policy.model({"obs": torch.from_numpy(obs)}, [], None)[0].numpy()
    if isinstance(policy.action_space, spaces.Box):
        expected = expected[:, : policy.action_space.shape[0]]
    np.testing.assert_allclose(run_file(path, obs), expected, atol=1e-5)


def assert_acts_like(path: Path, checkpoint: Path, policy_id: str) -> None:
    """The game's action from the file (argmax per head, or the means) is the policy's deterministic
    action."""
    policy = load(checkpoint, policy_id)
    obs = observations(size=policy.observation_space.shape[0])
    output = run_file(path, obs)
    actions = np.asarray(policy.compute_actions(obs, explore=False)[0])
    space = policy.action_space
    if isinstance(space, spaces.Box):
        size = space.shape[0]
        assert output.shape == (len(obs), size), "means only, so the plugin reads them key after key"
        np.testing.assert_allclose(output, actions, atol=1e-5)
        return
    sizes = [int(space.n)] if isinstance(space, spaces.Discrete) else list(space.nvec)
    assert output.shape == (len(obs), sum(sizes))
    starts = np.cumsum([0] + sizes)
    chosen = np.stack(
        [output[:, start:end].argmax(axis=1) for start, end in zip(starts[:-1], starts[1:], strict=False)],
        axis=1,
    )
    np.testing.assert_array_equal(chosen, actions.reshape(len(obs), -1))


def convert(*args: object, cwd: Path):
    """The converter's main in this process (its imports paid once for the module)."""
    return run_main(export_rllib.main, SCRIPT, *[str(arg) for arg in args], cwd=cwd)


def convert_in_child(*args: object, cwd: Path):
    """The converter as the controller runs it: a child process and its command line."""
    return run_script(SCRIPT, *[str(arg) for arg in args], cwd=cwd, timeout=120)


def exported(result) -> List[Path]:
    """The paths printed on stdout: each path alone on a line, followed by its one-line summary (after the
    line naming the checkpoint, when the converter looked for the newest run's)."""
    lines = [line for line in result.stdout.splitlines() if not line.startswith("Exporting ")]
    assert len(lines) % 2 == 0, result.stdout
    paths = [Path(line) for line in lines[0::2]]
    for path, summary in zip(paths, lines[1::2], strict=False):
        assert summary.startswith(f"{path}: RLlib ") and "max verification error" in summary
    return paths


def assert_one_error(result, *fragments: str) -> str:
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR: ")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


# --- paths, policies, names -------------------------------------------------------------------------


def test_trial_directory_exports_every_policy_of_the_latest_checkpoint(made, tmp_path):
    trial = made["pair"]
    result = convert_in_child(trial, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "onnx_exports"
    assert exported(result) == [out / "left_policy.onnx", out / "right_policy.onnx"]
    assert sorted(path.name for path in out.iterdir()) == ["left_policy.onnx", "right_policy.onnx"]
    for policy_id in PAIR:
        path = out / f"{policy_id}.onnx"
        assert_header(path, 13, 9)
        assert_godot_interface(path, ["obs"])
        assert_computes_model_of(path, trial / "checkpoint_000001", policy_id)
        assert_acts_like(path, trial / "checkpoint_000001", policy_id)


@pytest.mark.parametrize("form", ["checkpoint", "trial", "run", "experiment"])
def test_path_forms_pick_the_real_latest_checkpoint(made, tmp_path, form):
    """A backup copy or a temporary folder with a higher number, an empty checkpoint_ folder and a stray file
    are never picked."""
    experiment = tmp_path / "exp"
    trial = copy_of(made["pair"], experiment / "PPO_2026-01-01_00-00-00" / "PPO_godot_abcde")
    copy_of(trial / "checkpoint_000000", trial / "checkpoint_000003_backup_1730000000")
    copy_of(
        trial / "checkpoint_000000", trial / ".checkpoint_000004.tmp"
    )  # the trainer's checkpoint being written
    (trial / "checkpoint_000009").mkdir()
    (trial / "checkpoint_000010").write_text("not a directory")
    target = {
        "checkpoint": trial / "checkpoint_000001",
        "trial": trial,
        "run": trial.parent,
        "experiment": experiment,
    }[form]
    result = convert(target, f"--output={tmp_path / 'models'}", "--policy", "left_policy", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert exported(result) == [tmp_path / "models" / "left_policy.onnx"]
    assert_computes_model_of(
        tmp_path / "models" / "left_policy.onnx", trial / "checkpoint_000001", "left_policy"
    )


@pytest.mark.parametrize("number, expected", [("0", "checkpoint_000000"), ("1", "checkpoint_1")])
def test_checkpoint_number_matches_padded_and_plain_names(made, tmp_path, number, expected):
    trial = tmp_path / "trial"
    copy_of(made["pair"] / "checkpoint_000000", trial / "checkpoint_000000")
    copy_of(made["pair"] / "checkpoint_000001", trial / "checkpoint_1")
    result = convert(
        trial, "--checkpoint-number", number, "-o", tmp_path / "out", "--policy", "right_policy", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert_computes_model_of(tmp_path / "out" / "right_policy.onnx", trial / expected, "right_policy")


def test_policy_and_prefix_name_the_single_file(made, tmp_path):
    result = convert(
        made["pair"], "--output-dir", "models", "--policy", "right_policy", "--prefix", "pong_", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert exported(result) == [tmp_path / "models" / "pong_right_policy.onnx"]
    assert [path.name for path in (tmp_path / "models").iterdir()] == ["pong_right_policy.onnx"]


def test_controller_cli_export_takes_the_newest_run_of_the_configs_algorithm(made, tmp_path):
    """`controller export` runs `--config_file CFG --output_dir DIR [--checkpoint PATH]` in the project:
    without --checkpoint, the newest checkpoint of the newest run under the default logs/rllib."""
    experiment = tmp_path / "logs" / "rllib"

    def run(name: str, created_at: str) -> Path:
        trial = copy_of(made["pair"], experiment / name / f"{name.split('_')[0]}_godot_{created_at[8:10]}abc")
        (trial / "run_manifest.json").write_text(json.dumps({"created_at": created_at}))
        return trial

    older = run("PPO_2026-01-01_00-00-00", "2026-01-01T00:00:00Z")
    newer = run("PPO_2026-01-02_00-00-00", "2026-01-02T00:00:00Z")
    shutil.rmtree(newer / "checkpoint_000001")  # so the two runs' newest checkpoints differ
    run("DQN_2026-01-03_00-00-00", "2026-01-03T00:00:00Z")  # newer still, but not the config's algorithm
    config = tmp_path / "rllib_config.yaml"
    config.write_text("algorithm: PPO\nenv_config: {env_path: Game.x86_64}\n")
    result = convert_in_child(
        "--config_file", config, "--output_dir", "out", "--policy", "left_policy", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert exported(result) == [tmp_path / "out" / "left_policy.onnx"]
    assert result.stdout.startswith(f"Exporting {newer / 'checkpoint_000000'}, of the newest run under ")
    assert result.stderr == ""
    assert_computes_model_of(
        tmp_path / "out" / "left_policy.onnx", newer / "checkpoint_000000", "left_policy"
    )

    result = convert(
        "--config_file",
        config,
        "--output_dir",
        "given",
        "--checkpoint",
        older,
        "--policy",
        "left_policy",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert_computes_model_of(
        tmp_path / "given" / "left_policy.onnx", older / "checkpoint_000001", "left_policy"
    )
    assert_one_error(
        convert("--config_file", config, "--experiment_dir", "logs", cwd=tmp_path),
        "no PPO runs with a checkpoint",
    )
    assert_one_error(convert_in_child(cwd=tmp_path / "logs"), "experiment directory", "does not exist")


def test_no_verify_through_the_script(made, tmp_path):
    result = convert(made["pair"], "-o", "out", "--policy", "left_policy", "--no-verify", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1].endswith("not verified")
    assert_computes_model_of(
        tmp_path / "out" / "left_policy.onnx", made["pair"] / "checkpoint_000001", "left_policy"
    )


def test_output_paths(tmp_path):
    assert rllib_onnx.output_paths(tmp_path / "out", "p_", PAIR) == {
        policy_id: tmp_path / "out" / f"p_{policy_id}.onnx" for policy_id in PAIR
    }
    assert rllib_onnx.output_paths(tmp_path / "model.onnx", "", ["left_policy"]) == {
        "left_policy": tmp_path / "model.onnx"
    }
    with pytest.raises(UserError, match="names one file, but 2 policies"):
        rllib_onnx.output_paths(tmp_path / "model.onnx", "", PAIR)
    (tmp_path / "file").write_text("")
    with pytest.raises(UserError, match="is a file"):
        rllib_onnx.output_paths(tmp_path / "file", "", PAIR)


def test_no_multiagent_exports_default_policy_with_action_means(made, tmp_path):
    checkpoint = made["ppo-box"]
    result = convert(checkpoint, "--no-multiagent", "-o", tmp_path, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    path = tmp_path / "default_policy.onnx"
    assert exported(result) == [path]
    assert "means of 2 continuous actions" in result.stdout
    assert_godot_interface(path, ["obs"])
    assert_computes_model_of(path, checkpoint, "default_policy")
    assert_acts_like(path, checkpoint, "default_policy")


@pytest.mark.parametrize("opset, ir_version", [(9, 7), (13, 8), (17, 9)])
def test_opset_and_ir_version_are_written_exactly(made, tmp_path, opset, ir_version):
    result = convert(made["pair"], "-o", tmp_path, "--opset", opset, "--ir-version", ir_version, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for policy_id in PAIR:
        assert_header(tmp_path / f"{policy_id}.onnx", opset, ir_version)
        assert_acts_like(tmp_path / f"{policy_id}.onnx", made["pair"] / "checkpoint_000001", policy_id)


# --- every algorithm of the trainer ------------------------------------------------------------------


@pytest.mark.parametrize(
    "case, layout",
    [
        ("ppo-box", "means of 2 continuous actions"),
        ("appo-multidiscrete", "logits per head [3, 2]"),
        ("impala-discrete", "logits [4]"),
        ("dqn-discrete", "Q-values [4]"),
        ("sac-box", "tanh-squashed means of 2 continuous actions"),
    ],
)
def test_each_algorithm_exports_the_deterministic_action(made, tmp_path, case, layout):
    summary = saved_policies.export_checkpoint_policy(
        made[case], "default_policy", tmp_path / "policy.onnx", opset=13, ir_version=9
    )
    assert summary.verified and summary.max_error <= 1e-5
    assert isinstance(summary.outputs["output"][1], int) and summary.outputs["output"][1] > 0, (
        "the plugin reads the output width"
    )
    assert (
        summary.algorithm.startswith(f"RLlib {case.split('-')[0].upper()} policy 'default_policy'")
        and layout in summary.algorithm
    )
    assert_header(tmp_path / "policy.onnx", 13, 9)
    assert_godot_interface(tmp_path / "policy.onnx", ["obs"])
    assert_acts_like(tmp_path / "policy.onnx", made[case], "default_policy")


def test_verification_catches_a_file_that_differs_and_removes_it(made, tmp_path):
    """A file exported from the policy before its weights changed no longer matches it: VerificationError,
    file removed."""
    policy = load(made["pair"] / "checkpoint_000001", "left_policy")
    path = tmp_path / "left_policy.onnx"
    rllib_onnx.export_policy(policy, "left_policy", path, verify=False)
    with torch.no_grad():
        for parameter in policy.model.parameters():
            parameter.add_(torch.randn_like(parameter))
    graph = rllib_onnx.GodotPolicyGraph(policy)
    with pytest.raises(VerificationError, match="differ"):
        onnx_export.save_verified(
            onnx.load(str(path)),
            path,
            lambda written: rllib_onnx.verify_against_policy(policy, graph, written),
        )
    assert not path.exists()


def test_recurrent_and_filtered_policies_are_refused(made, tmp_path):
    """An LSTM's state and a MeanStdFilter's statistics are not inputs the plugin can feed: refused, nothing
    written."""
    with pytest.raises(UserError, match="observation_filter MeanStdFilter"):
        saved_policies.export_checkpoint_policy(
            made["ppo-filtered"], "default_policy", tmp_path / "filtered.onnx"
        )
    assert_one_error(convert(made["ppo-lstm"], "-o", tmp_path, cwd=tmp_path), "'default_policy' is recurrent")
    assert list(tmp_path.glob("*.onnx")) == []


# --- bad input ---------------------------------------------------------------------------------------


def test_missing_path_and_directory_without_checkpoints(tmp_path):
    assert_one_error(convert_in_child(tmp_path / "nowhere", cwd=tmp_path), "does not exist")
    (tmp_path / "file").write_text("")
    assert_one_error(
        convert_in_child(tmp_path / "file", cwd=tmp_path), "checkpoint", "is a file, not a directory"
    )
    empty = tmp_path / "empty" / "checkpoint_000002_backup_1730000000"
    (empty / "policies").mkdir(parents=True)
    error = assert_one_error(
        convert(tmp_path / "empty", cwd=tmp_path),
        "no RLlib checkpoint found",
        str(tmp_path / "empty"),
        "4 levels",
    )
    assert "checkpoint_<number>" in error


def test_unknown_checkpoint_number_lists_the_existing_ones(made, tmp_path):
    assert_one_error(
        convert(made["pair"], "--checkpoint-number", "7", cwd=tmp_path),
        "checkpoint number 7 not found",
        "checkpoints 0, 1",
    )


def test_unknown_policy_lists_the_policy_ids(made, tmp_path):
    assert_one_error(
        convert(made["pair"], "--policy", "center_policy", cwd=tmp_path),
        "'center_policy'",
        "left_policy, right_policy",
    )
    assert not (tmp_path / "onnx_exports").exists()


def test_no_multiagent_on_two_policies_is_refused(made, tmp_path):
    assert_one_error(
        convert(made["pair"], "--no-multiagent", cwd=tmp_path), "--no-multiagent", "left_policy, right_policy"
    )


def test_several_trials_are_listed(made, tmp_path):
    for name in ("PPO_godot_one", "PPO_godot_two"):
        copy_of(made["pair"], tmp_path / "exp" / "PPO_2026" / name)
    assert_one_error(convert(tmp_path / "exp", cwd=tmp_path), "2 trials", "PPO_godot_one", "PPO_godot_two")


def test_ir_version_too_old_for_the_opset(made, tmp_path):
    assert_one_error(
        convert(made["pair"], "--opset", "17", "--ir-version", "7", cwd=tmp_path),
        "IR version 7 is too old for opset 17",
    )


def test_corrupt_policy_fails_the_run_but_not_the_other_policy(made, tmp_path):
    checkpoint = copy_of(made["pair"] / "checkpoint_000001", tmp_path / "checkpoint_000001")
    state = checkpoint / "policies" / "right_policy" / "policy_state.pkl"
    state.write_bytes(state.read_bytes()[:100])
    result = convert_in_child(checkpoint, "-o", tmp_path / "out", cwd=tmp_path)
    assert_one_error(result, "cannot load policy 'right_policy'", "corrupt")
    assert exported(result) == [tmp_path / "out" / "left_policy.onnx"]
    assert not (tmp_path / "out" / "right_policy.onnx").exists()


def test_checkpoint_without_policies_is_refused(tmp_path):
    checkpoint = tmp_path / "checkpoint_000000"
    checkpoint.mkdir()
    (checkpoint / "rllib_checkpoint.json").write_text("{}")
    assert_one_error(convert(checkpoint, cwd=tmp_path), "holds no policies")


# --- checkpoints of rllib_training_script.py ---------------------------------------------------------


def train(config: dict, experiment: Path, cwd: Path, *extra: str) -> None:
    """Run the suite's RLlib trainer on a small budget (a local Ray instance even if a Ray head runs here)."""
    path = cwd / f"config_{len(list(cwd.glob('config_*')))}.yaml"
    path.write_text(yaml.safe_dump(config))
    env = dict(os.environ, RAY_ADDRESS="local")
    result = run_script(
        "rllib_training_script.py",
        f"--config_file={path}",
        f"--experiment_dir={experiment}",
        *extra,
        cwd=cwd,
        env=env,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_pong_run_of_the_training_script_and_its_resumed_run(shipped_pong_run, resumed_pong_run, tmp_path):
    """The shipped config's run and its resumed run (conftest, shared with test_rllib_training)."""
    experiment = shipped_pong_run.directory / "exp"
    first = resumed_pong_run.first_trial
    result = convert(first.parent, "-o", tmp_path / "first", cwd=tmp_path)  # the run directory
    assert result.returncode == 0, result.stderr
    for policy_id in PAIR:
        assert_computes_model_of(
            tmp_path / "first" / f"{policy_id}.onnx", first / "checkpoint_000001", policy_id
        )
        assert_acts_like(tmp_path / "first" / f"{policy_id}.onnx", first / "checkpoint_000001", policy_id)

    assert resumed_pong_run.run.result.returncode == 0, resumed_pong_run.run.result.stderr[-3000:]
    [resumed] = [path.parent for path in experiment.glob("*/*/run_manifest.json") if path.parent != first]
    result = convert(
        resumed, "--checkpoint-number", "2", "-o", tmp_path / "resumed", "--prefix", "pong_", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert exported(result) == [tmp_path / "resumed" / f"pong_{policy_id}.onnx" for policy_id in PAIR]
    for policy_id in PAIR:
        assert_computes_model_of(
            tmp_path / "resumed" / f"pong_{policy_id}.onnx", resumed / "checkpoint_000002", policy_id
        )
    assert_one_error(convert(experiment, cwd=tmp_path), "2 trials", str(first), str(resumed))


def test_single_policy_ballchase_run_of_the_training_script(tmp_path):
    config = {
        "algorithm": "PPO",
        "env_is_multiagent": False,
        "checkpoint_frequency": 1,
        "stop": {"training_iteration": 1},
        "config": {
            "env": "godot",
            "env_config": {
                "env_path": str(SIM_DIR / "BallChase.x86_64"),
                "speedup": 8,
                "action_repeat": 8,
                "show_window": False,
                "port": find_free_port_block(2),
            },
            "rollout_fragment_length": 100,
            "train_batch_size": 200,
            "sgd_minibatch_size": 100,
            "num_sgd_iter": 2,
            "num_workers": 0,
            "model": {"fcnet_hiddens": [32, 32]},
        },
    }
    train(config, tmp_path / "exp", tmp_path)
    result = convert(tmp_path / "exp", "--no-multiagent", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    [path] = exported(result)
    assert path == tmp_path / "onnx_exports" / "shared_policy.onnx"
    session = assert_godot_interface(path, ["obs"])
    assert session.get_inputs()[0].shape[1] == 4 and session.get_outputs()[0].shape[1] == 2, (
        "obs size 4; the means of move (2)"
    )
    [checkpoint] = sorted((tmp_path / "exp").glob("*/*/checkpoint_*"))[-1:]
    assert_acts_like(path, checkpoint, "shared_policy")
