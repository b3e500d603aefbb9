"""The RLlib YAML file as a run description (rllib/config.py): both shapes, legacy keys, checks, stop rules.

Only the YAML side: files are read from pytest's tmp_path, nothing imports Ray.
"""

import hashlib
import textwrap
from pathlib import Path

import pytest
from conftest import REPO_ROOT

from godot_rl_cli.errors import UserError
from godot_rl_cli.rllib.config import (
    RENAMED,
    StopCriteria,
    compile_mapping_function,
    controller_model,
    load_run_spec,
)

pytestmark = pytest.mark.fast


def yaml_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "run.yaml"
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_the_shipped_flat_config_reads_as_its_comments_say():
    spec = load_run_spec(str(REPO_ROOT / "rllib_config.yaml"))
    assert spec.algorithm == "PPO"
    assert spec.env_config["env_path"] == "examples/sim/Pong.x86_64"
    assert spec.policies == ["left_policy", "right_policy"]
    assert spec.policies_to_train == ["left_policy", "right_policy"]
    assert compile_mapping_function(spec.mapping_source)(1, None, None) == "right_policy"
    assert spec.checkpoint_frequency == 5 and spec.stop == {"training_iteration": 50}
    assert (
        spec.settings["lambda"] == 0.95 and "env" not in spec.settings and "multiagent" not in spec.settings
    )
    assert spec.config_sha1 == hashlib.sha1((REPO_ROOT / "rllib_config.yaml").read_bytes()).hexdigest()


def test_the_controllers_shape_splits_run_keys_from_settings(tmp_path):
    spec = load_run_spec(
        yaml_file(
            tmp_path,
            """
            algorithm: appo
            env_is_multiagent: false
            checkpoint_frequency: 0
            stop: {timesteps_total: 1000}
            config:
              env: godot
              env_config: {env_path: game.x86_64, speedup: 4}
              lr: 0.001
              sgd_minibatch_size: 64
              sampler: rllib
            """,
        )
    )
    assert (spec.algorithm, spec.env_is_multiagent, spec.checkpoint_frequency) == ("APPO", False, 0)
    assert spec.stop == {"timesteps_total": 1000} and spec.sampler == "rllib"
    assert spec.env_config == {"env_path": "game.x86_64", "speedup": 4}
    assert spec.settings == {"lr": 0.001, "sgd_minibatch_size": 64}  # env: always the Godot game


def test_legacy_keys_name_ray_248_attributes():
    assert RENAMED["lambda"] == "lambda_"
    assert RENAMED["sgd_minibatch_size"] == "minibatch_size"
    assert RENAMED["num_sgd_iter"] == "num_epochs"
    assert RENAMED["num_workers"] == RENAMED["num_rollout_workers"] == "num_env_runners"
    assert RENAMED["num_envs_per_worker"] == "num_envs_per_env_runner"


def test_unknown_keys_warn_with_the_closest_known_name(tmp_path, capsys):
    spec = load_run_spec(
        yaml_file(
            tmp_path,
            """
            algoritm: PPO
            config:
              env_config: {env_path: g.x86_64, speedpu: 2}
            """,
        )
    )
    warnings = capsys.readouterr().err.splitlines()
    assert spec.env_config["speedpu"] == 2  # passed on to the game as --speedpu=2
    assert any("'algoritm'" in line and "did you mean 'algorithm'?" in line for line in warnings)
    assert any("'speedpu'" in line and "did you mean 'speedup'?" in line for line in warnings)
    assert all(line.startswith("WARNING: ") for line in warnings)


@pytest.mark.parametrize(
    "text, message",
    [
        ("algorithm: A3C\n", "unknown algorithm 'A3C'"),
        ("stop: {trainig_iteration: 3}\n", "did you mean training_iteration?"),
        ("stop: {training_iteration: many}\n", "stop.training_iteration"),
        ("stop: {sustained_episode_reward_mean: {threshold: 1}}\n", "needs a numeric threshold and a window"),
        ("checkpoint_frequency: -1\n", "checkpoint_frequency"),
        ("sampler: fast\n", "sampler in"),
        ("env_config: {port: 70000}\n", "env_config port 70000 is not valid"),
        ("multiagent: {policies: left}\n", "multiagent.policies"),
        ("restart_failed_sub_environments: true\n", "restart_failed_sub_environments does not work"),
        ("config: [1]\n", "'config' in"),
        ("- a list\n", "does not hold a YAML mapping"),
        ("a: [1,\n", "invalid YAML in"),
    ],
)
def test_a_bad_file_is_one_user_error(tmp_path, text, message):
    with pytest.raises(UserError) as raised:
        load_run_spec(yaml_file(tmp_path, text))
    assert message in raised.value.what
    assert raised.value.how


def test_invalid_yaml_names_the_line(tmp_path):
    with pytest.raises(UserError, match="at line 3, column"):
        load_run_spec(yaml_file(tmp_path, "lr: 1\ngamma: 0.9\nmodel: {a: [1, }\n"))


def test_a_missing_file_says_so(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_run_spec(str(tmp_path / "absent.yaml"))


def test_controller_model_keys_move_into_custom_model_config():
    model = {"custom_model": "tui_grn", "hidden_size": 128, "fcnet_hiddens": [64]}
    assert controller_model(model) == {
        "custom_model": "tui_grn",
        "fcnet_hiddens": [64],
        "custom_model_config": {"hidden_size": 128},
    }
    cnn = controller_model({"custom_model": "tui_cnn", "channels": [8, 16], "custom_model_config": {"x": 1}})
    assert cnn["custom_model_config"] == {"x": 1, "channels": [8, 16]} and "channels" not in cnn
    plain = {"fcnet_hiddens": [32], "hidden_size": 5}
    assert controller_model(plain) is plain


def test_mapping_function_source_compiles_or_is_a_user_error():
    assert compile_mapping_function("def choose(agent_id, *a, **k):\n    return f'p{agent_id}'\n")(2) == "p2"
    with pytest.raises(UserError, match="does not compile"):
        compile_mapping_function("def policy_mapping_fn(:\n")
    with pytest.raises(UserError, match="no function named policy_mapping_fn"):
        compile_mapping_function("def a():\n    pass\ndef b():\n    pass\n")


def result(iteration: int, reward: float, timesteps: int = 0, this_iter: int = 0) -> dict:
    return {
        "training_iteration": iteration,
        "timesteps_total": timesteps,
        "num_env_steps_sampled_this_iter": this_iter,
        "env_runners": {"episode_reward_mean": reward},
    }


def test_stop_after_iterations_or_a_reward_held_for_a_window():
    assert StopCriteria({"training_iteration": 2}).reason(result(1, 0.0)) is None
    assert StopCriteria({"training_iteration": 2}).reason(result(2, 0.0)) == "training_iteration reached 2"
    sustained = StopCriteria({"sustained_episode_reward_mean": {"threshold": 1.0, "window": 2}})
    reasons = [
        sustained.reason(result(index, reward)) for index, reward in enumerate([2.0, 0.5, 1.0, 1.5], 1)
    ]
    assert reasons[:3] == [None, None, None]
    assert reasons[3] == "episode_reward_mean stayed at or above 1.0 for 2 iterations"


def test_a_resumed_run_counts_its_timestep_budget_from_its_own_start():
    criteria = StopCriteria({"timesteps_total": 500})
    assert criteria.reason(result(11, 0.0, timesteps=1100, this_iter=100)) is None  # started at 1000
    assert criteria.reason(result(15, 0.0, timesteps=1500, this_iter=100)) == (
        "timesteps_total reached 500 in this run"
    )


def test_a_stop_file_in_the_trial_directory_stops_the_run(tmp_path):
    criteria = StopCriteria({}, trial_dir=tmp_path)
    assert criteria.reason(result(1, 0.0)) is None
    (tmp_path / "STOP").touch()
    assert criteria.reason(result(2, 0.0)) == f"stop file {tmp_path / 'STOP'} appeared"


def test_the_spent_part_of_the_nearest_budget_counts_from_the_runs_start():
    criteria = StopCriteria({"training_iteration": 100, "timesteps_total": 1000})
    assert criteria.spent(result(13, 0.0, timesteps=1100, this_iter=100)) == pytest.approx(0.13)  # resumed
    assert criteria.spent(result(14, 0.0, timesteps=1600, this_iter=500)) == pytest.approx(0.6)
    assert StopCriteria({"episode_reward_mean": 5}).spent(result(1, 0.0)) is None
