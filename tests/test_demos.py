"""Learning from the plugin's recorded expert demos: the file checks, behaviour cloning, GAIL, and the phases
in the SB3 and RLlib trainers, on demos the example games' scripted experts record."""

import hashlib
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SIM_DIR, find_free_port_block
from gymnasium import spaces
from script_helpers import interrupt, metric_lines, run_script, start_script, wait_for_line

from godot_rl_cli.demos.bc import BCSettings, BehaviourCloning, SB3PolicyAdapter
from godot_rl_cli.demos.files import demo_spaces, load_demonstrations
from godot_rl_cli.demos.gail import SAVED_DISCRIMINATOR, DiscriminatorTrainer, GailSettings
from godot_rl_cli.errors import UserError

SCRIPT = "stable_baselines3_training_script.py"
torch.set_num_threads(1)  # the machine's cores are the games' and the scripts' (tests train in-process here)
OBS = spaces.Dict({"obs": spaces.Box(-1.0, 1.0, (4,), np.float32)})
CONTINUOUS = spaces.Dict({"move": spaces.Box(-1.0, 1.0, (2,), np.float32)})
DISCRETE = spaces.Dict({"move": spaces.Discrete(5)})
TWO_HEADS = spaces.Dict({"turn": spaces.Discrete(3), "jump": spaces.Discrete(2)})


def record(game: str, path: Path, episodes: int, *args: str) -> Path:
    """Demos written by an example game's scripted expert (`--record_demos`), as the plugin writes them."""
    subprocess.run(
        [str(SIM_DIR / f"{game}.x86_64"), f"--record_demos={path}", f"--demo_episodes={episodes}", *args],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return path


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def episode(steps: int, obs_size: int = 4, action=(0.5, -0.5)) -> list:
    return [[[0.1] * obs_size for _ in range(steps + 1)], [list(action) for _ in range(steps)]]


# --- the file format and its checks (fast) ------------------------------------------------------------------


def test_a_file_the_scripted_expert_recorded_reads_back_with_the_experts_actions(tmp_path):
    path = record("BallChase", tmp_path / "demo.json", 3)
    data = json.loads(path.read_text())
    assert [len(obs) - len(actions) for obs, actions in data] == [1, 1, 1]  # the terminal observation
    demos = load_demonstrations([str(tmp_path)], demo_spaces(OBS, CONTINUOUS, "BallChase"))
    assert (demos.episodes, demos.steps) == (3, 300)
    assert demos.observations.shape == (300, 4) and demos.actions.shape == (300, 2)
    # the expert heads straight at the target: its action is the unit direction of obs[0:2] (the offset / 2)
    direction = demos.observations[:, :2] / np.linalg.norm(demos.observations[:, :2], axis=1, keepdims=True)
    assert np.allclose(demos.actions, direction, atol=1e-5)
    assert demos.summary()["files"][0]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert "no rewards" in demos.describe()


@pytest.mark.fast
def test_discrete_demos_take_bare_indices_and_several_heads(tmp_path):
    single = write(tmp_path / "one.json", json.dumps([[[[0.0] * 4] * 3, [[4], 2]]]))
    assert load_demonstrations([single], demo_spaces(OBS, DISCRETE, "game")).actions.tolist() == [4, 2]
    heads = write(tmp_path / "two.json", json.dumps([[[[0.0] * 4] * 3, [[1, 2], [0, 0]]]]))  # jump, turn
    assert load_demonstrations([heads], demo_spaces(OBS, TWO_HEADS, "game")).actions.tolist() == [
        [1, 2],
        [0, 0],
    ]


BAD_FILES = {
    "wrong observation size": (
        json.dumps([episode(3), episode(2, obs_size=5)]),
        "episode 2, step 1",
        "observation",
    ),
    "wrong action size": (json.dumps([episode(2, action=(0.5,))]), "episode 1, step 1", "action has 1"),
    "empty episode": (json.dumps([episode(2), [[[0.1] * 4], []]]), "episode 2", "empty"),
    "NaN": (json.dumps([episode(2)]).replace("-0.5", "NaN", 1), "episode 1, step 1", "nan"),
    "Godot's nan": (json.dumps([episode(2)]).replace("-0.5", "nan", 1), "line 1", "NaN or infinite"),
    "truncated": (json.dumps([episode(20)])[:-40], "", "truncated"),
    "not JSON": ("obs,action\n0.1,0.5\n", "", "not JSON"),
    "an object": (json.dumps({"obs": [], "acts": []}), "", "not the plugin's layout"),
    "no episodes": ("[]\n", "", "empty array"),
    "observation count": (
        json.dumps([[[[0.1] * 4] * 2, [[0.5, 0.5]] * 2]]),
        "episode 1",
        "one observation more",
    ),
    "text in an action": (
        json.dumps([[[[0.1] * 4] * 2, [["left", 0.5]]]]),
        "episode 1, step 1",
        "not a number",
    ),
}


@pytest.mark.fast
@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_each_bad_file_is_one_error_naming_file_episode_and_step(tmp_path, kind):
    text, where, what = BAD_FILES[kind]
    path = write(tmp_path / "bad.json", text)
    with pytest.raises(UserError) as error:
        load_demonstrations([path], demo_spaces(OBS, CONTINUOUS, "game"))
    message = str(error.value)
    assert "\n" not in message and path in message and where in message and what.lower() in message.lower()
    assert error.value.how


@pytest.mark.fast
def test_a_discrete_action_out_of_range_and_a_game_with_other_keys_are_refused(tmp_path):
    path = write(tmp_path / "bad.json", json.dumps([[[[0.0] * 4] * 3, [[1], [5]]]]))
    with pytest.raises(
        UserError, match=r"episode 1, step 2: action move is 5, outside the discrete range 0\.\.4"
    ):
        load_demonstrations([path], demo_spaces(OBS, DISCRETE, "game"))
    camera = spaces.Dict({"obs": OBS["obs"], "camera_2d": spaces.Box(0, 255, (8, 8, 1), np.uint8)})
    with pytest.raises(UserError, match="records only the 'obs' key"):
        demo_spaces(camera, DISCRETE, "BallChaseCamera")


# --- behaviour cloning and the discriminator on an SB3 policy (fast) ----------------------------------------


def synthetic_demos(tmp_path: Path, heads: spaces.Dict, steps: int = 1200):
    """An expert whose action is a fixed function of the observation, for each kind of action space."""
    rng = np.random.default_rng(0)
    obs = rng.uniform(-1, 1, (steps, 4))
    if heads is CONTINUOUS:
        actions = np.clip(obs[:, :2] * 1.5, -1, 1).tolist()
    elif heads is DISCRETE:
        actions = [[int(np.argmax(row))] for row in obs]
    else:  # heads by name: jump (2 choices), then turn (3)
        actions = [[int(row[1] > 0), int(row[0] > 0.3) + int(row[0] > -0.3)] for row in obs]
    path = write(tmp_path / "synthetic.json", json.dumps([[obs.tolist() + [obs[-1].tolist()], actions]]))
    return load_demonstrations([path], demo_spaces(OBS, heads, "game"))


@pytest.mark.parametrize(
    "heads,policy_type",
    [(CONTINUOUS, "mlp"), (DISCRETE, "mlp"), (TWO_HEADS, "mlp"), (DISCRETE, "grn"), (CONTINUOUS, "grn")],
    ids=["continuous-mlp", "discrete-mlp", "two-heads-mlp", "discrete-grn", "continuous-grn"],
)
def test_behaviour_cloning_learns_the_expert_on_held_out_steps(tmp_path, heads, policy_type):
    from stable_baselines3.common.policies import MultiInputActorCriticPolicy

    from godot_rl_cli.game.spaces import flat_action_space
    from godot_rl_cli.sb3.policies import policy_kwargs_for

    torch.manual_seed(0)
    demos = synthetic_demos(tmp_path, heads)
    kwargs = policy_kwargs_for(policy_type, [64, 64], OBS, [32, 64, 64], 64)
    policy = MultiInputActorCriticPolicy(OBS, flat_action_space(heads), lambda _: 3e-4, **kwargs)
    history = BehaviourCloning(SB3PolicyAdapter(policy), demos, BCSettings(epochs=30, seed=0)).run(
        lambda _: None
    )
    first, last = history[0], history[-1]
    assert last.validation_steps == 120 and last.train_steps == 1080
    assert last.validation_loss < first.validation_loss
    assert last.validation_accuracy >= 0.8, [round(item.validation_accuracy, 3) for item in history]


def test_the_discriminator_tells_expert_pairs_from_random_ones(tmp_path):
    demos = synthetic_demos(tmp_path, DISCRETE)
    trainer = DiscriminatorTrainer(demos, GailSettings(seed=0))
    rng = np.random.default_rng(1)
    policy_obs = rng.uniform(-1, 1, (512, 4)).astype(np.float32)
    policy_actions = rng.integers(5, size=512)
    accuracies = [trainer.train(policy_obs, policy_actions)["discriminator_accuracy"] for _ in range(30)]
    assert accuracies[-1] >= 0.85, accuracies
    for form in ("logit", "softplus"):
        expert_reward = trainer.discriminator.reward(demos.observations[:200], demos.actions[:200], form)
        policy_reward = trainer.discriminator.reward(policy_obs[:200], policy_actions[:200], form)
        assert expert_reward.mean() > policy_reward.mean(), form
    assert (policy_reward > 0).all()  # -log(1 - D) is always positive; the logit is negative where D < 1/2


# --- the SB3 trainer's phases, end to end on the example games ----------------------------------------------


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("demos")
    record("BallChaseDiscrete", directory / "discrete.json", 12)
    record("BallChase", directory / "continuous.json", 8)
    record("Pong", directory / "pong.json", 4)
    return directory


def trainer_args(directory: Path, game: str, *extra: str) -> list:
    return [
        f"--env_path={SIM_DIR / f'{game}.x86_64'}",
        f"--experiment_dir={directory}",
        "--experiment_name=run",
        f"--port={find_free_port_block(2)}",
        "--n_steps=128",
        *extra,
    ]


@pytest.fixture(scope="module")
def bc_run(demo_dir, tmp_path_factory):
    directory = tmp_path_factory.mktemp("bc")
    args = trainer_args(
        directory,
        "BallChaseDiscrete",
        f"--demo_files={demo_dir / 'discrete.json'}",
        "--bc_epochs=12",
        "--eval_episode_count=3",
        "--rl_timesteps=256",
        f"--onnx_export_path={directory / 'bc.onnx'}",
    )
    env = dict(os.environ, CONTROLLER_METRICS="1")
    return directory, run_script(SCRIPT, *args, cwd=directory, env=env, timeout=180)


def test_bc_then_rl_reports_each_phase_learns_and_exports_a_verified_onnx(bc_run, demo_dir):
    directory, result = bc_run
    assert result.returncode == 0, result.stderr[-3000:]
    samples = metric_lines(result.stdout)
    phases = [sample.get("phase") for sample in samples]
    # the evaluation comes last, after RL (where sb3_imitation.py evaluates)
    assert phases == ["bc"] * 12 + ["rl"] * 2 + ["eval"]
    assert result.stdout.index("Training finished") < result.stdout.index("Evaluation after training")
    iterations = [sample["training_iteration"] for sample in samples]
    assert iterations == list(range(1, len(samples) + 1))
    # one run: the demo phases' lines carry the identity of the RL phase's, which the controller groups by
    assert len({(sample["trial_id"], sample["experiment_id"]) for sample in samples}) == 1
    bc = [sample["policies"]["shared_policy"]["learner"] for sample in samples[:12]]
    assert (
        bc[-1]["bc_validation_accuracy"] >= 0.8 and bc[-1]["bc_validation_loss"] < bc[0]["bc_validation_loss"]
    )
    # random play scores about 2 on BallChaseDiscrete, the expert 45: RL going on from BC, then the evaluation
    rl_returns = [sample["episode_reward_mean"] for sample in samples[12:14] if sample["episodes_this_iter"]]
    assert rl_returns and min(rl_returns) >= 20, rl_returns
    assert (
        samples[14]["episode_reward_mean"] >= 20
        and samples[14]["policies"]["shared_policy"]["completed_episodes"] == 3
    ), samples[14]
    assert "max verification error" in result.stdout and (directory / "bc.onnx").is_file()
    manifest = json.loads((directory / "run_final.manifest.json").read_text())
    recorded = manifest["demonstrations"]["files"][0]
    assert recorded["sha256"] == hashlib.sha256((demo_dir / "discrete.json").read_bytes()).hexdigest()
    assert (recorded["episodes"], recorded["steps"]) == (12, 1200)
    assert (directory / "run_bc.zip").is_file() and (directory / "run_bc.manifest.json").is_file()


def test_resuming_the_model_saved_after_bc_continues_its_iterations(bc_run, demo_dir):
    directory, _ = bc_run
    args = trainer_args(
        directory / "resumed", "BallChaseDiscrete", f"--resume_model_path={directory / 'run_bc.zip'}"
    ) + ["--rl_timesteps=128"]
    result = run_script(SCRIPT, *args, cwd=directory, env=dict(os.environ, CONTROLLER_METRICS="1"))
    assert result.returncode == 0, result.stderr[-3000:]
    samples = metric_lines(result.stdout)
    assert [sample["training_iteration"] for sample in samples] == [13]  # after the 12 epochs
    assert {sample["phase"] for sample in samples} == {"rl"}


@pytest.fixture(scope="module")
def gail_run(demo_dir, tmp_path_factory):
    """GAIL without the game's reward, 10 rollouts of 128 steps."""
    directory = tmp_path_factory.mktemp("gail")
    args = trainer_args(
        directory,
        "BallChase",
        f"--demo_files={demo_dir / 'continuous.json'}",
        "--gail_timesteps=1280",
        "--game_arg=zero_reward=1",
    )
    result = run_script(SCRIPT, *args, cwd=directory, env=dict(os.environ, CONTROLLER_METRICS="1"))
    assert result.returncode == 0, result.stderr[-3000:]
    return directory, [sample for sample in metric_lines(result.stdout) if sample.get("phase") == "gail"]


def test_gail_trains_the_discriminator_and_reports_it(gail_run):
    directory, samples = gail_run
    assert len(samples) == 10
    assert all(sample["episode_reward_mean"] in (None, 0.0) for sample in samples)  # the game's reward is off
    losses = [sample["discriminator_loss"] for sample in samples]
    accuracies = [sample["discriminator_accuracy"] for sample in samples]
    assert max(accuracies) >= 0.65 and min(losses) < 0.66, (accuracies, losses)
    # the logit reward: below 0 on the policy's pairs once the discriminator tells them apart
    assert all(-20 < sample["custom_metrics"]["gail_reward_mean"] < 20 for sample in samples)
    assert (directory / "run_gail.zip").is_file()


def discriminator_updates(model_path: Path) -> int:
    """How many steps the optimizer of the discriminator saved in an SB3 model file has taken."""
    from stable_baselines3 import PPO

    state = getattr(PPO.load(model_path, device="cpu"), SAVED_DISCRIMINATOR)
    return int(next(iter(state["optimizer"]["state"].values()))["step"])


def test_a_bad_demo_file_is_one_error_and_nothing_is_trained_or_overwritten(tmp_path):
    """Each kind of bad file is one UserError (the fast tests above); the trainer turns it into one line."""
    what = "episode 1, step 1: the observation has 6 values"
    path = write(tmp_path / "bad.json", json.dumps([episode(2, obs_size=6)]))
    final = tmp_path / "run_final.zip"
    final.write_bytes(b"an earlier model")
    args = trainer_args(tmp_path, "BallChase", f"--demo_files={path}", "--bc_epochs=5", "--rl_timesteps=1000")
    result = run_script(SCRIPT, *args, cwd=tmp_path, env=dict(os.environ, CONTROLLER_METRICS="1"))
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR:")]
    assert len(errors) == 1 and path in errors[0] and what in errors[0], result.stderr[-2000:]
    assert metric_lines(result.stdout) == []
    assert final.read_bytes() == b"an earlier model" and not (tmp_path / "run_bc.zip").exists()


def test_sigint_in_bc_saves_the_model_and_exits_0(demo_dir, tmp_path):
    args = trainer_args(
        tmp_path, "BallChase", f"--demo_files={demo_dir / 'continuous.json'}", "--bc_epochs=100000",
        "--bc_batch_size=8",
    )  # fmt: skip
    process = start_script(SCRIPT, *args, cwd=tmp_path, env=dict(os.environ, CONTROLLER_METRICS="1"))
    try:
        wait_for_line(process, "behaviour cloning epoch", timeout=120)
        stdout, stderr = interrupt(process)
    finally:
        process.kill()
    assert process.returncode == 0, stderr[-3000:]
    assert (tmp_path / "run_final.zip").is_file() and (tmp_path / "run_final.manifest.json").is_file()
    assert "demonstrations" in json.loads((tmp_path / "run_final.manifest.json").read_text())


def test_sigint_in_resumed_gail_saves_the_model_with_the_discriminator_it_went_on_with(
    gail_run, demo_dir, tmp_path
):
    directory, _ = gail_run
    args = trainer_args(
        tmp_path, "BallChase", f"--demo_files={demo_dir / 'continuous.json'}", "--gail_timesteps=100000",
        f"--resume_model_path={directory / 'run_gail.zip'}",
    )  # fmt: skip
    process = start_script(SCRIPT, *args, cwd=tmp_path, env=dict(os.environ, CONTROLLER_METRICS="1"))
    try:
        before = wait_for_line(process, "GAIL discriminator |", timeout=120)
        stdout, stderr = interrupt(process)
    finally:
        process.kill()
    assert process.returncode == 0, stderr[-3000:]
    assert "GAIL goes on with the discriminator saved with the resumed model\n" in before
    assert (tmp_path / "run_final.zip").is_file() and (tmp_path / "run_final.manifest.json").is_file()
    assert "demonstrations" in json.loads((tmp_path / "run_final.manifest.json").read_text())
    # the discriminator and its optimizer travel in the model's zip: Adam's step count went on from the saved
    # one (10 rollouts), through the rollouts of this run, into the model saved at the interrupt
    updates = GailSettings().updates
    assert discriminator_updates(directory / "run_gail.zip") == 10 * updates
    saved = discriminator_updates(tmp_path / "run_final.zip")
    assert saved > 10 * updates and saved % updates == 0, saved


# --- RLlib: behaviour cloning of a YAML-named policy (one Ray start) ----------------------------------------


def test_rllib_clones_the_policy_the_yaml_names_before_ppo(demo_dir, tmp_path):
    config = tmp_path / "pong.yaml"
    config.write_text(
        f"""algorithm: PPO
env_config:
  env_path: {SIM_DIR / "Pong.x86_64"}
  speedup: 8
  port: {find_free_port_block(4)}
multiagent:
  policies: [left_policy, right_policy]
  policy_mapping_fn: |
    def policy_mapping_fn(agent_id, episode, worker, **kwargs):
        return "left_policy" if agent_id == 0 else "right_policy"
demos:
  policy: left_policy
  files: [{demo_dir / "pong.json"}]
  bc_epochs: 8
checkpoint_frequency: 0
stop: {{training_iteration: 1}}
num_workers: 0
rollout_fragment_length: 100
train_batch_size: 200
sgd_minibatch_size: 64
num_sgd_iter: 1
"""
    )
    env = dict(os.environ, CONTROLLER_METRICS="1", RAY_DEDUP_LOGS="0")
    args = [f"--config_file={config}", f"--experiment_dir={tmp_path / 'runs'}"]
    result = run_script("rllib_training_script.py", *args, cwd=tmp_path, env=env, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    samples = metric_lines(result.stdout)
    bc = [sample for sample in samples if sample.get("phase") == "bc"]
    assert [sample["bc_epoch"] for sample in bc] == list(range(1, 9))
    learner = [sample["policies"]["left_policy"]["learner"] for sample in bc]
    assert learner[-1]["bc_validation_accuracy"] >= 0.7, [item["bc_validation_accuracy"] for item in learner]
    assert samples[-1]["training_iteration"] == 1 and samples[-1]["phase"] == "rl"
    assert len({(sample["trial_id"], sample["experiment_id"]) for sample in samples}) == 1  # one run
    manifests = sorted((tmp_path / "runs").rglob("checkpoint_000000/manifest.json"))
    assert manifests and json.loads(manifests[0].read_text())["demonstrations"]["policy"] == "left_policy"
