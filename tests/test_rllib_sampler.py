"""The batched PPO sampler (rllib/sampler.py) against RLlib's own, on example games, with one Ray for the
module: the same trajectories and episodes, the same columns, GAE bootstrapped from the policy's value,
learning, several games per runner, and RLlib's sampler wherever the batched one does not apply."""

from collections import Counter
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pytest
import torch
from conftest import SIM_DIR, find_free_port_block
from ray.rllib.evaluation.sampler import SyncSampler
from ray.rllib.policy.sample_batch import SampleBatch

from godot_rl_cli.game import GameSettings
from godot_rl_cli.rllib.config import RunSpec
from godot_rl_cli.rllib.sampler import BatchedSampler, unsupported_policy
from godot_rl_cli.rllib.setup import build_config, probe_game

BALLCHASE = str(SIM_DIR / "BallChase.x86_64")
PONG = str(SIM_DIR / "Pong.x86_64")
SMALL_PPO = {"minibatch_size": 20, "num_epochs": 1, "model": {"fcnet_hiddens": [16, 16]}}


@pytest.fixture(scope="module", autouse=True)
def ray_once():
    import ray

    ray.init(
        address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False
    )
    yield
    ray.shutdown()


@pytest.fixture
def build(tmp_path):
    """`build(settings, ...)`: a PPO Algorithm from our build_config, stopped (its games closed) after the
    test; also returns the startup line's sampler words."""
    from ray.tune.logger import UnifiedLogger

    algos = []

    def _build(
        settings: Dict[str, Any],
        env_path: str = BALLCHASE,
        game_args: Dict[str, Any] = None,
        sampler: str = "batched",
        multiagent: bool = True,
        algorithm: str = "PPO",
    ):
        env_config = {
            "env_path": env_path,
            "port": find_free_port_block(8),
            "seed": 3,
            "speedup": 8,
            "action_repeat": 8,
            "game_args": game_args or {},
        }
        spec = RunSpec(
            source=Path("test.yaml"),
            algorithm=algorithm,
            env_is_multiagent=multiagent,
            env_config=env_config,
            game=GameSettings.from_env_config(env_config),
            sampler=sampler,
            settings={"num_env_runners": 0, **settings},
        )
        game = probe_game(spec.game)
        try:
            config, _ = build_config(spec, spec.game, game, None)
        finally:
            game.close()
        directory = tmp_path / f"algo{len(algos)}"
        algo = config.build_algo(logger_creator=lambda c: UnifiedLogger(c, str(directory), loggers=None))
        algos.append(algo)
        return algo

    yield _build
    for algo in algos:
        algo.stop()


def trajectories(batch: SampleBatch) -> List[tuple]:
    """Each trajectory of a policy batch as (length, first t, ends terminated, ends truncated), sorted. A
    trajectory is a run of rows of one episode and agent index with consecutive t that does not end before."""
    found = []
    eps_id, index, t = batch[SampleBatch.EPS_ID], batch[SampleBatch.AGENT_INDEX], batch[SampleBatch.T]
    ended = batch[SampleBatch.TERMINATEDS] | batch[SampleBatch.TRUNCATEDS]
    start = 0
    for row in range(1, batch.count + 1):
        last = row - 1
        if (
            row == batch.count
            or ended[last]
            or (eps_id[row], index[row], t[row]) != (eps_id[last], index[last], t[last] + 1)
        ):
            found.append(
                (
                    row - start,
                    int(t[start]),
                    bool(batch[SampleBatch.TERMINATEDS][last]),
                    bool(batch[SampleBatch.TRUNCATEDS][last]),
                )
            )
            start = row
    return sorted(found)


def episodes(worker) -> List[tuple]:
    """The episodes finished since the last call: (length, the agents that took part, custom metric keys)."""
    return [
        (m.episode_length, sorted(str(agent) for agent, _ in m.agent_rewards), sorted(m.custom_metrics))
        for m in worker.get_metrics()
    ]


@pytest.mark.parametrize("multiagent", [True, False], ids=["shared episodes", "episodes per agent"])
def test_batched_sampler_cuts_the_same_trajectories_and_episodes_as_rllibs(build, multiagent):
    """Agents that finish at different steps (6, 8 and 10 steps): the batched sampler and RLlib's give the
    same trajectories (lengths, where they start, terminated or truncated), the same episodes and the same
    columns, over two batches so that trajectories carry over a cut."""
    settings = {
        **SMALL_PPO,
        "count_steps_by": "env_steps",
        "rollout_fragment_length": 23,
        "train_batch_size": 23,
    }
    game_args = {"n_agents": 3, "max_steps": 6, "stagger": 2}
    sampled = {}
    for sampler in ("batched", "rllib"):
        algo = build(settings, game_args=game_args, sampler=sampler, multiagent=multiagent)
        worker = algo.env_runner_group.local_env_runner
        expected = BatchedSampler if sampler == "batched" else SyncSampler
        assert type(worker.sampler) is expected
        batches = [worker.sample() for _ in range(2)]
        sampled[sampler] = {
            "env_steps": [batch.env_steps() for batch in batches],
            "trajectories": [trajectories(batch.policy_batches["shared_policy"]) for batch in batches],
            "columns": {
                name: (column.dtype, column.shape[1:])
                for name, column in batches[0].policy_batches["shared_policy"].items()
            },
            "episodes": episodes(worker),
        }
    assert sampled["batched"] == sampled["rllib"]
    assert sampled["batched"]["env_steps"] == [23, 23]
    ends = Counter(trajectory[2:] for batch in sampled["batched"]["trajectories"] for trajectory in batch)
    assert ends[(True, False)] >= 6, "agents' episodes end terminated"
    assert ends[(False, False)] >= 1, "a trajectory is cut at the end of a batch"
    assert len(sampled["batched"]["episodes"]) >= 3


def test_a_cut_trajectory_is_bootstrapped_from_the_policys_value_of_its_last_observation(build):
    algo = build(
        {**SMALL_PPO, "rollout_fragment_length": 60, "train_batch_size": 60}, game_args={"n_agents": 2}
    )
    batch = algo.env_runner_group.local_env_runner.sample().policy_batches["shared_policy"]
    policy = algo.get_policy("shared_policy")
    ends = np.flatnonzero(np.diff(batch[SampleBatch.AGENT_INDEX], append=-1))
    assert len(ends) == 2, "one cut trajectory per agent (episodes last 100 steps)"
    with torch.no_grad():
        policy.model({SampleBatch.OBS: torch.from_numpy(batch[SampleBatch.NEXT_OBS][ends])})
        values = policy.model.value_function().numpy()
    np.testing.assert_allclose(batch[SampleBatch.VALUES_BOOTSTRAPPED][ends], values, rtol=1e-5, atol=1e-6)
    assert not batch[SampleBatch.TERMINATEDS].any() and not batch[SampleBatch.TRUNCATEDS].any()
    np.testing.assert_array_equal(batch[SampleBatch.NEXT_OBS][:29], batch[SampleBatch.OBS][1:30])


def test_batched_sampler_learns_ballchase(build):
    algo = build(
        {"rollout_fragment_length": 1600, "train_batch_size": 1600, "minibatch_size": 128, "num_epochs": 5},
        game_args={"n_agents": 4},
    )
    rewards = [algo.train()["env_runners"]["episode_reward_mean"] for _ in range(8)]
    assert rewards[-1] > max(3 * rewards[0], 15), rewards


def test_two_games_per_runner_are_stepped_together(build):
    algo = build(
        {**SMALL_PPO, "num_envs_per_env_runner": 2, "rollout_fragment_length": 200, "train_batch_size": 400},
        game_args={"n_agents": 2, "max_steps": 30},
    )
    worker = algo.env_runner_group.local_env_runner
    assert type(worker.sampler) is BatchedSampler and len(worker.sampler.envs) == 2
    batch = worker.sample()
    assert batch.agent_steps() == 400 and batch.env_steps() == 200, "100 steps of each of two 2-agent games"
    policy_batch = batch.policy_batches["shared_policy"]
    assert len(set(policy_batch[SampleBatch.EPS_ID])) == 2 * 4, "each game's 100 steps: 30 + 30 + 30 + 10"
    assert [m.episode_length for m in worker.get_metrics()] == [30] * 6


def test_each_policy_gets_its_agents_rows(build):
    algo = build({**SMALL_PPO, "rollout_fragment_length": 100, "train_batch_size": 100}, env_path=PONG)
    batch = algo.env_runner_group.local_env_runner.sample()
    assert set(batch.policy_batches) == {"left_policy", "right_policy"}
    for index, policy in enumerate(("left_policy", "right_policy")):
        assert set(batch.policy_batches[policy][SampleBatch.AGENT_INDEX]) == {index}
        assert batch.policy_batches[policy].count == 50


@pytest.mark.parametrize(
    "settings, sampler, algorithm, reason",
    [
        ({}, "rllib", "PPO", "sampler: rllib"),
        ({"model": {"use_lstm": True}}, "batched", "PPO", "a recurrent or attention model"),
        ({"batch_mode": "complete_episodes"}, "batched", "PPO", "batch_mode: complete_episodes"),
        ({}, "batched", "APPO", "PPO's, not APPO's"),
    ],
    ids=["sampler rllib", "lstm", "complete episodes", "APPO"],
)
def test_rllib_samples_where_the_batched_sampler_does_not_apply(
    build, capsys, settings, sampler, algorithm, reason
):
    settings = {**SMALL_PPO, "rollout_fragment_length": 20, "train_batch_size": 40, **settings}
    algo = build(settings, game_args={"n_agents": 2}, sampler=sampler, algorithm=algorithm)
    assert type(algo.env_runner_group.local_env_runner.sampler) is SyncSampler
    startup = next(line for line in capsys.readouterr().out.splitlines() if "; sampler: " in line)
    assert startup.split("; sampler: ")[1].startswith("RLlib's (") and reason in startup
    if algorithm != "PPO":  # the env runner's own check of its built policies says the same
        worker = algo.env_runner_group.local_env_runner
        assert "APPOTorchPolicy, not PPO's" in unsupported_policy(
            algo.get_policy("shared_policy"), worker, "p"
        )
