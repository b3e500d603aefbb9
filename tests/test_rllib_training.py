"""rllib_training_script.py on the example games: both YAML shapes, resume, stop criteria, SIGINT, faults, a
Ray head."""

import hashlib
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from conftest import SIM_DIR, find_free_port_block
from pong_runs import PONG, SCRIPT, first_trial, metrics_env, run_isolated, shipped_config, trial_dirs
from script_helpers import (
    in_session,
    metric_lines,
    processes_matching,
    ray_head,
    run_script,
    script_command,
)

from godot_rl_cli.errors import UserError
from godot_rl_cli.game import GameSettings
from godot_rl_cli.rllib.config import StopCriteria, compile_mapping_function, load_run_spec


def controller_config(
    tmp_path: Path,
    port: int,
    algorithm: str = "PPO",
    stop=None,
    env_path: str = PONG,
    multiagent: bool = True,
    **config,
) -> Path:
    """A YAML shaped as the Training Controller writes .rlcontroller/rllib_config.yaml."""
    data = {
        "algorithm": algorithm,
        "env_is_multiagent": multiagent,
        "checkpoint_frequency": 1,
        "stop": stop,
        "config": {
            "env": "godot",
            "env_config": {
                "env_path": env_path,
                "action_repeat": 8,
                "show_window": False,
                "speedup": 8,
                "port": port,
            },
            "framework": "torch",
            "lr": 0.0003,
            "lambda": 0.95,
            "gamma": 0.99,
            "vf_loss_coeff": 0.5,
            "vf_clip_param": float("inf"),
            "entropy_coeff": 0.001,
            "entropy_coeff_schedule": None,
            "normalize_actions": False,
            "clip_actions": False,
            "rollout_fragment_length": 200,  # agent steps: 100 steps of 2-player Pong
            "sgd_minibatch_size": 100,
            "minibatch_size": 100,
            "num_workers": 0,
            "num_envs_per_worker": 1,
            "sample_timeout_s": 60,
            "train_batch_size": 400,
            "num_sgd_iter": 2,
            "batch_mode": "truncate_episodes",
            "num_gpus": 0,
            "model": {"vf_share_layers": False, "fcnet_hiddens": [32, 32]},
            **config,
        },
    }
    path = tmp_path / "controller.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def start_until_first_metric(config: Path, cwd: Path, start_new_session: bool = False) -> subprocess.Popen:
    """Start a training run of `config` and read its stdout up to the first @METRIC line."""
    process = subprocess.Popen(
        script_command(SCRIPT, f"--config_file={config}", f"--experiment_dir={cwd / 'exp'}"),
        cwd=cwd,
        env=metrics_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=start_new_session,
    )
    try:
        for line in process.stdout:
            if line.startswith("@METRIC "):
                break
    except BaseException:
        process.kill()
        raise
    return process


# --- configuration, without Ray -------------------------------------------------------------------


def test_both_yaml_shapes_are_read(tmp_path):
    shipped = load_run_spec(str(shipped_config(tmp_path, 12000)))
    assert shipped.algorithm == "PPO" and shipped.policies == ["left_policy", "right_policy"]
    assert shipped.settings["sgd_minibatch_size"] == 100 and "multiagent" not in shipped.settings
    assert compile_mapping_function(shipped.mapping_source)(1, None, None) == "right_policy"
    controller = load_run_spec(str(controller_config(tmp_path, 12000, stop={"training_iteration": 3})))
    assert controller.stop == {"training_iteration": 3} and controller.env_is_multiagent is True
    assert controller.env_config["speedup"] == 8 and "framework" not in controller.settings


def test_legacy_keys_are_translated_and_unknown_keys_warned(tmp_path, capsys):
    from ray.rllib.algorithms.ppo import PPOConfig

    from godot_rl_cli.rllib.config import apply_settings

    config = PPOConfig().api_stack(
        enable_rl_module_and_learner=False, enable_env_runner_and_connector_v2=False
    )
    effective = apply_settings(
        config,
        {
            "sgd_minibatch_size": 64,
            "num_sgd_iter": 3,
            "num_workers": 2,
            "num_envs_per_worker": 2,
            "lambda": 0.9,
            "vf_clip_param": ".inf",
            "model": {"fcnet_hiddens": [8]},
            "no_such_key": 1,
        },
    )
    assert (
        config.minibatch_size,
        config.num_epochs,
        config.num_env_runners,
        config.num_envs_per_env_runner,
        config.lambda_,
    ) == (64, 3, 2, 2, 0.9)
    assert (
        config.vf_clip_param == float("inf")
        and config.model["fcnet_hiddens"] == [8]
        and "fcnet_activation" in config.model
    )
    assert "no_such_key" not in effective and "WARNING: setting 'no_such_key'" in capsys.readouterr().err


def test_unknown_top_level_keys_are_warnings_naming_the_closest_key(tmp_path, capsys):
    from ray.rllib.algorithms.ppo import PPOConfig

    from godot_rl_cli.rllib.config import apply_settings

    path = controller_config(tmp_path, 12000, stop={"training_iteration": 3})
    data = yaml.safe_load(path.read_text())
    data.update(stopp={"training_iteration": 1}, checkpoint_frequncy=5, zzz=1)
    data["config"]["env_config"]["speedupp"] = 2
    path.write_text(yaml.safe_dump(data))
    spec = load_run_spec(str(path))
    warnings = capsys.readouterr().err.splitlines()
    assert spec.stop == {"training_iteration": 3} and spec.checkpoint_frequency == 1
    assert any("key 'stopp' in" in line and "ignored (did you mean 'stop'?)" in line for line in warnings)
    assert any(
        "'checkpoint_frequncy' in" in line and "(did you mean 'checkpoint_frequency'?)" in line
        for line in warnings
    )
    assert any("'zzz' in" in line and "(known: algorithm, checkpoint_frequency," in line for line in warnings)
    assert any("'speedupp' is not a game setting" in line and "'speedup'?" in line for line in warnings)
    assert all(line.startswith("WARNING: ") for line in warnings)

    flat = shipped_config(tmp_path, 12000, stopp={"training_iteration": 1}, checkpoint_frequncy=3)
    spec = load_run_spec(str(flat))
    assert spec.stop == {"training_iteration": 2}
    apply_settings(
        PPOConfig().api_stack(enable_rl_module_and_learner=False, enable_env_runner_and_connector_v2=False),
        spec.settings,
    )
    warnings = capsys.readouterr().err
    assert "setting 'stopp' is not known to PPOConfig; ignored (did you mean 'stop'?)" in warnings
    assert (
        "'checkpoint_frequncy' is not known to PPOConfig; ignored (did you mean 'checkpoint_frequency'?)"
        in (warnings)
    )


def test_checkpoint_frequency_0_means_only_the_final_checkpoint(tmp_path):
    assert (
        load_run_spec(str(shipped_config(tmp_path, 12000, checkpoint_frequency=0))).checkpoint_frequency == 0
    )
    assert (
        load_run_spec(str(shipped_config(tmp_path, 12000, checkpoint_frequency=None))).checkpoint_frequency
        == 10
    )
    for bad in ("abc", -1, 1.5, True):
        with pytest.raises(UserError, match="checkpoint_frequency .* must be a whole number"):
            load_run_spec(str(shipped_config(tmp_path, 12000, checkpoint_frequency=bad)))


@pytest.mark.parametrize(
    "content,message",
    [
        ("algorithm: PPO\nenv_config: env_path: x\nlr: 1\n", "invalid YAML in .* at line 2"),
        ("algorithm: TRPO\nenv_config: {env_path: x}\n", "unknown algorithm 'TRPO'"),
        ("env_config: {speedup: 1}\n", "no env_path"),
        ("env_config: {env_path: /nonexistent/Game.x86_64}\n", "does not exist"),
        ("stop: {iterations: 3}\nenv_config: {env_path: x}\n", "unknown stop criteria iterations"),
        (
            "multiagent:\n  policies: [a]\n"
            "  policy_mapping_fn: 'def policy_mapping_fn(agent_id:\\n  return 1'\n"
            "env_config: {env_path: PONG}\n",
            "policy_mapping_fn does not compile",
        ),
        ("sampler: fast\nenv_config: {env_path: PONG}\n", "sampler in .* must be one of batched, rllib"),
        (
            "restart_failed_sub_environments: true\nenv_config: {env_path: PONG}\n",
            "restart_failed_sub_environments does not work .* max_env_restarts",
        ),
    ],
)
def test_config_errors_are_one_line_and_before_ray(tmp_path, content, message):
    import re

    path = tmp_path / "bad.yaml"
    path.write_text(content.replace("PONG", PONG))
    started = time.monotonic()
    result = run_script(SCRIPT, f"--config_file={path}", f"--experiment_dir={tmp_path / 'exp'}", cwd=tmp_path)
    assert (
        result.returncode == 1
        and result.stderr.startswith("ERROR:")
        and result.stderr.strip().count("\n") == 0
    ), result.stderr
    assert re.search(message, result.stderr), result.stderr
    assert time.monotonic() - started < 20 and "Ray" not in result.stdout and not (tmp_path / "exp").exists()


def test_missing_config_file(tmp_path):
    result = run_script(SCRIPT, cwd=tmp_path)
    assert result.returncode == 1 and "config file rllib_config.yaml not found" in result.stderr


def test_mapping_to_an_undefined_policy_is_refused_before_training(tmp_path):
    mapping = "def policy_mapping_fn(agent_id, episode, worker, **kwargs):\n    return 'nobody'\n"
    path = shipped_config(
        tmp_path,
        find_free_port_block(2),
        multiagent={"policies": ["left_policy", "right_policy"], "policy_mapping_fn": mapping},
    )
    result = run_script(SCRIPT, f"--config_file={path}", f"--experiment_dir={tmp_path / 'exp'}", cwd=tmp_path)
    assert (
        result.returncode == 1
        and "maps agent 0 to 'nobody'" in result.stderr
        and not (tmp_path / "exp").exists()
    )


def test_stop_criteria(tmp_path):
    def result(**values):
        return {"training_iteration": 1, "timesteps_total": 100, "time_total_s": 1.0, **values}

    assert StopCriteria({"training_iteration": 2}).reason(result(training_iteration=2))
    assert StopCriteria({"timesteps_total": 500}).reason(result()) is None
    assert StopCriteria({"time_total_s": 0.5}).reason(result())
    assert StopCriteria({"episode_reward_mean": 3}).reason(result(env_runners={"episode_reward_mean": 3.5}))
    sustained = StopCriteria({"sustained_episode_reward_mean": {"threshold": 1.0, "window": 3}})
    rewards = [2.0, 0.5, 2.0, 2.0, 1.5]
    reasons = [sustained.reason(result(env_runners={"episode_reward_mean": r})) for r in rewards]
    assert reasons[:4] == [None] * 4 and reasons[4]
    stale = tmp_path / "STOP"
    stale.write_text("left over")
    criteria = StopCriteria({"stop_file": str(stale)})
    assert criteria.reason(result()) is None, "a stop file from an earlier run does not stop this one"
    time.sleep(0.02)
    stale.write_text("again")
    os.utime(stale, (time.time() + 5, time.time() + 5))
    assert criteria.reason(result())
    fresh = tmp_path / "STOP2"
    criteria = StopCriteria({"stop_file": str(fresh)})
    assert criteria.reason(result()) is None
    fresh.touch()
    assert criteria.reason(result())
    assert StopCriteria({}).reason(result(training_iteration=10**6)) is None
    # a resumed run trains its time and step budgets again; the iteration count is the trial's own
    resumed = StopCriteria({"timesteps_total": 300, "time_total_s": 30.0})
    first = dict(timesteps_total=1100, num_env_steps_sampled_this_iter=100, time_this_iter_s=1.0)
    assert resumed.reason(result(**first, time_total_s=11.0)) is None
    assert resumed.reason(result(timesteps_total=1250, time_total_s=12.0)) is None
    assert (
        resumed.reason(result(timesteps_total=1300, time_total_s=13.0))
        == "timesteps_total reached 300 in this run"
    )
    timed = StopCriteria({"time_total_s": 30.0})
    assert timed.reason(result(**first, time_total_s=11.0)) is None
    assert timed.reason(result(time_total_s=39.0)) is None
    assert timed.reason(result(time_total_s=40.0)) == "time_total_s reached 30.0 in this run"
    trial = tmp_path / "trial"
    trial.mkdir()
    in_trial = StopCriteria({"training_iteration": 100}, trial_dir=trial)
    assert in_trial.reason(result()) is None
    (trial / "STOP").touch()
    assert in_trial.reason(result()) == f"stop file {trial / 'STOP'} appeared"
    with pytest.raises(UserError):
        compile_mapping_function("x = 1")


def test_game_seed_is_seed_plus_port_offset_whatever_the_port():
    """Game i of the run gets seed + i (its port offset): the same seed gives the same games on any port."""
    from ray.rllib.env.env_context import EnvContext

    from godot_rl_cli.rllib.env import GodotEnvConfig, GodotMultiAgentEnv

    def game_of(port: int, worker: int, vector: int):
        settings = GameSettings(env_path=PONG, port=port, seed=5)
        env_config = GodotEnvConfig(settings, envs_per_runner=2).as_env_config()
        env = GodotMultiAgentEnv(EnvContext(env_config, worker_index=worker, vector_index=vector))
        try:
            [command] = processes_matching(f"--port={port + 2 * worker + vector} ")
            return command.split("--env_seed=")[1].split()[0], env.reset()[0][0]
        finally:
            env.close()

    (seed, observation), (other_seed, other_observation) = (
        game_of(find_free_port_block(4), 1, 1),
        game_of(find_free_port_block(4), 1, 1),
    )
    assert seed == other_seed == "8" and (observation == other_observation).all()
    assert game_of(find_free_port_block(2), 0, 0)[0] == "5"


# --- real runs --------------------------------------------------------------------------------------


def assert_pong_metrics(samples: list) -> None:
    assert [s["training_iteration"] for s in samples] == [1, 2]
    for sample in samples:
        assert set(sample["policies"]) == {"left_policy", "right_policy"}
        for policy in sample["policies"].values():
            assert policy["learner"] == policy["learner_stats"]
            assert {"policy_loss", "vf_loss", "entropy", "kl", "learning_rate"} <= set(policy["learner"])
    # train_batch_size counts agent steps; the reported steps are steps of the game
    assert samples[-1]["timesteps_total"] == 400 and samples[-1]["num_agent_steps_sampled"] == 800
    assert samples[-1]["env_steps_this_iter"] == samples[-1]["num_env_steps_sampled"] - 200 == 200


def test_shipped_config_trains_two_policies_with_layout_and_metrics(shipped_pong_run):
    directory, result = shipped_pong_run.directory, shipped_pong_run.result
    assert result.returncode == 0, result.stderr[-3000:]
    samples = metric_lines(result.stdout)
    assert_pong_metrics(samples)
    assert [s["checkpoints"] for s in samples] == [1, 2], (
        "the checkpoints on disk after each iteration's save"
    )
    assert all(s["env_restarts"] == 0 for s in samples)
    with_episodes = [s for s in samples if s["episodes_this_iter"]]
    assert with_episodes and {"hits", "misses"} <= set(
        with_episodes[-1]["policies"]["left_policy"]["custom_metrics"]
    )
    assert "Torch threads for the learner: 1 (default" in result.stdout
    trial = first_trial(directory / "exp")
    assert trial.parent.name.startswith("PPO_") and trial.name.startswith("PPO_godot_")
    for sample in samples:  # what the controller uses to find the trial directory, and stores
        assert sample["trial_id"] and sample["trial_id"] in trial.name
        assert sample["experiment_tag"] == trial.parent.name
        assert isinstance(sample["experiment_id"], str) and len(sample["experiment_id"]) >= 8
        assert re.fullmatch(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d", sample["date"])
    manifest = json.loads((trial / "run_manifest.json").read_text())
    assert (
        manifest["algorithm"] == "PPO"
        and manifest["checkpoint_frequency"] == 1
        and manifest["checkpoint_index_offset"] == 0
    )
    assert (
        manifest["trial_dir"] == str(trial)
        and manifest["created_at"].endswith("Z")
        and manifest["resume_from"] is None
    )
    # the run's one experiment_id, on every line and in the manifest, with the reference script's other keys
    assert {sample["experiment_id"] for sample in samples} == {manifest["experiment_id"]}
    assert manifest["trial_id"] == samples[0]["trial_id"] and manifest["env_path"] == PONG
    assert manifest["stop"] == {"training_iteration": 2}
    config_bytes = (directory / "rllib_config.yaml").read_bytes()
    assert manifest["config_sha1"] == hashlib.sha1(config_bytes).hexdigest()
    lines = (trial / "result.json").read_text().splitlines()
    assert [json.loads(line)["training_iteration"] for line in lines] == [1, 2]
    assert (
        (trial / "progress.csv").is_file()
        and (trial / "params.json").is_file()
        and list(trial.glob("events.out.tfevents.*"))
    )
    assert sorted(p.name for p in trial.glob("checkpoint_*")) == ["checkpoint_000000", "checkpoint_000001"]
    assert all(
        (p / "algorithm_state.pkl").is_file() and (p / "policies" / "left_policy").is_dir()
        for p in trial.glob("checkpoint_*")
    )


def test_resume_continues_iterations_and_checkpoint_numbers(shipped_pong_run, resumed_pong_run):
    result = resumed_pong_run.run.result
    assert result.returncode == 0, result.stderr[-3000:]
    samples = metric_lines(result.stdout)
    assert [s["training_iteration"] for s in samples] == [3, 4]
    first = samples[0]
    assert first["timesteps_total"] == 600 and first["env_steps_this_iter"] == 200, "from the checkpoint on"
    assert first["episodes_total"] >= first["episodes_this_iter"]
    shipped_trial = resumed_pong_run.first_trial
    second = [trial for trial in trial_dirs(shipped_pong_run.directory / "exp") if trial != shipped_trial][0]
    assert sorted(p.name for p in second.glob("checkpoint_*")) == ["checkpoint_000002", "checkpoint_000003"]
    manifest = json.loads((second / "run_manifest.json").read_text())
    checkpoint = resumed_pong_run.checkpoint
    assert manifest["resume_from"] == str(checkpoint) and manifest["checkpoint_index_offset"] == 2
    after = {p: p.stat().st_mtime_ns for p in shipped_trial.rglob("*")}
    assert after == resumed_pong_run.before, "nothing earlier overwritten"


@pytest.fixture(scope="module")
def flags_run(shipped_pong_run, tmp_path_factory):
    """One run for the flags --restore, --env_path, --seed, --num_workers and --debug_panel, from a config
    without env_path that says num_workers: 0."""
    directory = tmp_path_factory.mktemp("rllib_flags")
    trial = first_trial(shipped_pong_run.directory / "exp")  # not the resumed run's trial
    port = find_free_port_block(4)
    config = shipped_config(directory, port, stop={"training_iteration": 3})
    data = yaml.safe_load(config.read_text())
    del data["env_config"]["env_path"]
    config.write_text(yaml.safe_dump(data))
    args = [
        f"--config_file={config}",
        f"--experiment_dir={directory / 'exp'}",
        f"--restore={trial}",  # a trial directory: its newest checkpoint, checkpoint_000001
        f"--env_path={PONG}",
        "--seed=7",
        "--num_workers=1",
        "--debug_panel",
    ]
    return port, run_isolated(args, directory, metrics_env())


def test_restore_continues_like_resume(flags_run):
    _, result = flags_run
    assert result.returncode == 0, result.stderr[-3000:]
    assert [s["training_iteration"] for s in metric_lines(result.stdout)] == [3]
    assert "its newest checkpoint is " in result.stdout and "checkpoint_000001" in result.stdout
    assert "Resumed from" in result.stdout


def test_a_successful_run_writes_nothing_on_stderr(shipped_pong_run, flags_run):
    """Ray's logger deprecations, its gputil hint and its core worker's error about env runners' arguments in
    the object store are removed by name (rllib/noise.py); the games' output and the suite's information
    lines go to stdout. Both runs: no env runner, and one env runner with --restore and --debug_panel."""
    for result in (shipped_pong_run.result, flags_run[1]):
        assert result.returncode == 0 and result.stderr == "", result.stderr[-3000:]


def test_env_path_seed_and_num_workers_flags_override_the_yaml(flags_run):
    """The YAML has no env_path and num_workers: 0; game i of the run gets seed 7 + i."""
    port, result = flags_run
    assert result.returncode == 0, result.stderr[-3000:]
    assert "env_runners 1 x 1 envs" in result.stdout
    assert f"Pong (Godot RL example game, simulated) seed=7 port={port}" in result.stdout, "the probe game"
    assert f"seed=8 port={port + 1}" in result.stdout, "env runner 1's game"


def test_debug_panel_shows_a_real_reset_and_step_then_trains(flags_run):
    _, result = flags_run
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    start, end = lines.index("=== Debug panel (RLlib) ==="), lines.index("=== end of debug panel ===")
    panel = "\n".join(lines[start:end])
    assert f"env_path: {PONG}" in panel and "agents: 2: 0 -> left_policy, 1 -> right_policy" in panel
    for policy in ("left_policy", "right_policy"):
        assert f"policy {policy} (agents" in panel
    assert panel.count("observation space: Dict('obs': Box(-1.0, 1.0, (6,), float32))") == 2
    assert panel.count("action space: Dict('move': Discrete(3)) (trained as Discrete(3))") == 2
    assert re.search(r"reset observation, agent 1: \{'obs': \[", panel)
    assert re.search(r"sampled action, agent 0: \{'move': [012]\}", panel)
    assert (
        "step rewards: [" in panel and "step terminated: [False, False], truncated: [False, False]" in panel
    )
    assert "step info: [{'hits': 0, 'misses': 0}" in panel
    assert end < next(i for i, line in enumerate(lines) if line.startswith("Training policies"))
    assert metric_lines(result.stdout), "training runs after the panel"


def test_controller_shaped_config_with_a_remote_env_runner(tmp_path):
    port = find_free_port_block(4)
    config = controller_config(tmp_path, port, stop={"training_iteration": 2}, num_workers=1)
    result = run_isolated(
        [f"--config_file={config}", f"--experiment_dir={tmp_path / 'exp'}"], tmp_path, metrics_env()
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert_pong_metrics(metric_lines(result.stdout))
    assert "minibatch_size" in result.stdout and "num_env_runners" in result.stdout, (
        "effective settings are printed"
    )
    started_ports = sorted(
        int(port) for port in re.findall(r"simulated\) seed=-?\d+ port=(\d+)", result.stdout + result.stderr)
    )
    assert started_ports == [port, port + 1], (
        "the probe game, then only the env runner's: no idle game in the driver"
    )


@pytest.mark.parametrize(
    "game, model, layers",
    [
        ("BallChaseCamera", {"custom_model": "tui_cnn", "channels": [8, 16], "fcnet_hiddens": [32]}, [8, 16]),
        ("BallChase", {"custom_model": "tui_grn", "hidden_size": 24}, [24]),
    ],
    ids=["cnn", "grn"],
)
def test_controller_cnn_and_grn_policy_types_train_and_export(tmp_path, game, model, layers):
    """The model blocks the controller writes for its cnn and grn policy types: the run trains with the
    batched sampler, and its checkpoint loads and exports to ONNX with the network the YAML asked for."""
    import torch

    from godot_rl_cli.rllib.saved_policies import load_policy

    port = find_free_port_block(2)
    config = controller_config(
        tmp_path, port, stop={"training_iteration": 1}, env_path=str(SIM_DIR / f"{game}.x86_64"), model=model
    )
    result = run_isolated([f"--config_file={config}", f"--experiment_dir={tmp_path / 'exp'}"], tmp_path, {})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "; sampler: batched" in result.stdout
    [checkpoint] = sorted((tmp_path / "exp").glob("*/*/checkpoint_000000"))
    policy = load_policy(checkpoint, "shared_policy")
    widths = [
        module.out_channels if isinstance(module, torch.nn.Conv2d) else module.normalized_shape[0]
        for module in policy.model.modules()
        if isinstance(module, torch.nn.Conv2d | torch.nn.LayerNorm)
    ]
    assert type(policy.model).__name__ == {"tui_cnn": "TuiCnn", "tui_grn": "TuiGrn"}[model["custom_model"]]
    assert sorted(set(widths)) == layers, widths
    exported = run_script(
        "convert_rllib_to_onnx.py", str(checkpoint), "-o", str(tmp_path / "onnx"), cwd=tmp_path
    )
    assert exported.returncode == 0, exported.stderr[-2000:]
    assert (
        tmp_path / "onnx" / "shared_policy.onnx"
    ).is_file() and "max verification error" in exported.stdout


def test_controller_cnn_without_an_image_is_one_line_before_ray(tmp_path):
    config = controller_config(
        tmp_path,
        find_free_port_block(2),
        env_path=str(SIM_DIR / "BallChase.x86_64"),
        model={"custom_model": "tui_cnn", "channels": [8], "fcnet_hiddens": [16]},
    )
    result = run_script(
        SCRIPT, f"--config_file={config}", f"--experiment_dir={tmp_path / 'exp'}", cwd=tmp_path
    )
    assert result.returncode == 1 and result.stderr.strip().splitlines()[-1].startswith(
        "ERROR: custom_model tui_cnn needs an image observation"
    ), result.stderr[-2000:]
    assert not (tmp_path / "exp").exists()


def test_single_policy_ballchase_with_own_episodes_per_agent_and_only_a_final_checkpoint(tmp_path):
    port = find_free_port_block(2)
    config = controller_config(
        tmp_path,
        port,
        stop={"training_iteration": 2},
        env_path=str(SIM_DIR / "BallChase.x86_64"),
        multiagent=False,
    )
    config.write_text(config.read_text().replace("checkpoint_frequency: 1", "checkpoint_frequency: 0"))
    args = [f"--config_file={config}", f"--experiment_dir={tmp_path / 'exp'}", "--game_arg", "n_agents=3"]
    result = run_isolated(args, tmp_path, metrics_env())
    assert result.returncode == 0, result.stderr[-3000:]
    samples = metric_lines(result.stdout)
    assert set(samples[-1]["policies"]) == {"shared_policy"}
    assert samples[-1]["num_agent_steps_sampled"] == 3 * samples[-1]["num_env_steps_sampled"]
    assert samples[-1]["episodes_total"] >= 1 and samples[-1]["episode_len_mean"] is not None
    [trial] = trial_dirs(tmp_path / "exp")
    assert [p.name for p in trial.glob("checkpoint_*")] == ["checkpoint_000000"], "checkpoint_frequency 0"
    assert json.loads((trial / "run_manifest.json").read_text())["checkpoint_frequency"] == 0


def test_dqn_off_policy_on_pong(tmp_path):
    port = find_free_port_block(2)
    config = controller_config(tmp_path, port, algorithm="DQN", stop={"training_iteration": 2})
    data = yaml.safe_load(config.read_text())
    for key in (
        "lambda",
        "vf_loss_coeff",
        "vf_clip_param",
        "entropy_coeff",
        "entropy_coeff_schedule",
        "sgd_minibatch_size",
        "minibatch_size",
        "num_sgd_iter",
    ):
        data["config"].pop(key, None)
    data["config"].update(num_steps_sampled_before_learning_starts=100)
    config.write_text(yaml.safe_dump(data))
    result = run_isolated(
        [f"--config_file={config}", f"--experiment_dir={tmp_path / 'exp'}"], tmp_path, metrics_env()
    )
    assert result.returncode == 0, result.stderr[-3000:]
    samples = metric_lines(result.stdout)
    assert [s["training_iteration"] for s in samples] == [1, 2] and set(samples[-1]["policies"]) == {
        "left_policy",
        "right_policy",
    }
    [trial] = trial_dirs(tmp_path / "exp")
    assert json.loads((trial / "run_manifest.json").read_text())["algorithm"] == "DQN"


def test_sigterm_saves_a_final_checkpoint_and_leaves_nothing(tmp_path):
    """SIGTERM (timeout, docker stop, Slurm, systemd) behaves exactly as the controller's SIGINT, which
    test_reliability's RLlib SIGINT cycles and test_signals' moments in training check the same way."""
    port = find_free_port_block(2)
    config = controller_config(tmp_path, port, stop=None)
    data = yaml.safe_load(config.read_text())
    data["checkpoint_frequency"] = 1000
    config.write_text(yaml.safe_dump(data))
    process = start_until_first_metric(config, tmp_path, start_new_session=True)
    try:
        process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        _, stderr = process.communicate(timeout=60)
        assert time.monotonic() - started < 30
    finally:
        process.kill()
    assert process.returncode == 0, stderr[-3000:]
    [trial] = trial_dirs(tmp_path / "exp")
    assert list(trial.glob("checkpoint_000000/policies/left_policy"))
    time.sleep(1.0)
    assert in_session(process.pid) == []


def test_crashing_game_is_reported_with_a_checkpoint(tmp_path):
    port = find_free_port_block(2)
    config = controller_config(tmp_path, port, stop={"training_iteration": 50})
    result = run_isolated(
        [
            f"--config_file={config}",
            f"--experiment_dir={tmp_path / 'exp'}",
            "--game_arg",
            "crash_after_steps=500",
        ],
        tmp_path,
        metrics_env(),
    )
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR:")]
    assert len(errors) == 1 and "Pong.x86_64" in errors[0] and "exit code 3" in errors[0], result.stderr[
        -3000:
    ]
    [trial] = trial_dirs(tmp_path / "exp")
    assert list(trial.glob("checkpoint_*/algorithm_state.pkl"))


@pytest.mark.parametrize("where", ["stop_file", "trial_dir"])
def test_stop_file_that_appears_stops_the_run(tmp_path, where):
    port = find_free_port_block(2)
    stop = {"training_iteration": 200}
    if where == "stop_file":
        stop["stop_file"] = str(tmp_path / "STOP")
    config = controller_config(tmp_path, port, stop=stop)
    process = start_until_first_metric(config, tmp_path)
    try:
        stop_file = tmp_path / "STOP" if where == "stop_file" else trial_dirs(tmp_path / "exp")[0] / "STOP"
        stop_file.touch()
        stdout, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, stderr[-3000:]
    assert f"Stopping: stop file {stop_file} appeared" in stdout


def test_run_on_a_separately_started_ray_head(tmp_path):
    with ray_head() as address:
        port = find_free_port_block(2)
        config = controller_config(tmp_path, port, stop={"training_iteration": 2}, num_workers=1)
        result = run_script(
            SCRIPT,
            f"--config_file={config}",
            f"--experiment_dir={tmp_path / 'exp'}",
            f"--ray_address={address}",
            cwd=tmp_path,
            env=metrics_env(),
            timeout=240,
        )
    assert result.returncode == 0, result.stderr[-3000:]
    assert_pong_metrics(metric_lines(result.stdout))
