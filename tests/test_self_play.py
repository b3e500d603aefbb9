"""Self-play in the RLlib trainer (issue 28): the league's bookkeeping and Elo without Ray, then two real runs
of rllib_training_script.py on PongDuel (a fresh one, and one resumed from its checkpoint with RLlib's own
sampler) and the one-line errors for blocks the game cannot play."""

import dataclasses
import json
import os
import pickle
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
import yaml
from conftest import REPO_ROOT, SIM_DIR, find_free_port_block
from script_helpers import metric_lines, run_script

from godot_rl_cli.errors import UserError
from godot_rl_cli.progress import Progress, bar_text
from godot_rl_cli.rllib.config import load_run_spec
from godot_rl_cli.rllib.league import (
    League,
    SelfPlaySettings,
    bar_notes,
    check_against_game,
    elo_update,
    episode_score,
    expected_score,
    iteration_summary,
    parse_self_play,
)
from godot_rl_cli.rllib.sampler import Episode
from godot_rl_cli.rllib.self_play import SelfPlayMapping, episode_outcome

SCRIPT = "rllib_training_script.py"
DUEL = str(SIM_DIR / "PongDuel.x86_64")


def settings(**changes) -> SelfPlaySettings:
    return SelfPlaySettings(learner="left_policy", opponents=["right_policy"], **changes)


# --- without Ray -------------------------------------------------------------------------------------


@pytest.mark.fast
def test_elo_expected_score_and_update_follow_the_standard_rule():
    assert expected_score(1200, 1200) == pytest.approx(0.5)
    assert expected_score(1600, 1200) == pytest.approx(1 / (1 + 10 ** (-1)))
    learner, opponent = elo_update(1200, 1200, 1.0, 16)
    assert (learner, opponent) == pytest.approx((1208, 1192))
    learner, opponent = elo_update(1200, 1200, 0.0, 32)
    assert (learner, opponent) == pytest.approx((1184, 1216))
    assert elo_update(1300, 1100, 0.5, 16)[0] < 1300  # a draw against a weaker player costs rating


@pytest.mark.fast
def test_scripted_wins_raise_the_learner_and_losses_lower_it():
    league = League(settings(elo_k=20))
    league.add_snapshot(0)
    for _ in range(10):
        league.record_episode("left_policy_it0", 1.0)
    assert league.elo > 1200 > league.ratings["left_policy_it0"]
    assert league.elo + league.ratings["left_policy_it0"] == pytest.approx(2400)  # zero-sum transfers
    after_wins = league.elo
    for _ in range(10):
        league.record_episode("left_policy_it0", 0.0)
    assert league.elo < after_wins
    league.record_episode("left_policy", 1.0)  # against itself: counted apart, no rating change
    assert league.totals() == {"wins": 10, "draws": 0, "losses": 10}
    assert league.record["latest"]["wins"] == 1


@pytest.mark.fast
def test_window_keeps_the_newest_snapshots_at_the_learners_rating():
    league = League(settings(window=2, snapshot_every=5))
    assert league.add_snapshot(0) == ("left_policy_it0", [])
    league.ratings["left_policy"] = 1250.0
    assert league.add_snapshot(5) == ("left_policy_it5", [])
    assert league.add_snapshot(10) == ("left_policy_it10", ["left_policy_it0"])
    assert league.snapshots == ["left_policy_it5", "left_policy_it10"]
    assert "left_policy_it0" not in league.ratings and league.ratings["left_policy_it10"] == 1250.0
    assert [league.due(i) for i in (0, 4, 5, 10)] == [False, False, True, True]


@pytest.mark.fast
def test_league_json_round_trip(tmp_path):
    league = League(settings(window=3))
    league.add_snapshot(0)
    league.record_episode("left_policy_it0", 1.0)
    league.save(tmp_path, retired=["left_policy_it9"])
    data = json.loads((tmp_path / "self_play.json").read_text())
    restored = League.from_json(data, settings(window=3))
    assert restored.to_json() == league.to_json() and data["retired"] == ["left_policy_it9"]


@pytest.mark.fast
def test_progress_bar_shows_the_learners_rating_and_record():
    league = League(settings())
    league.add_snapshot(0)
    for score in (1.0, 1.0, 0.5, 0.0):
        league.record_episode("left_policy_it0", score)
    result = {"self_play": iteration_summary(league, {"left_policy_it0": 4}, {})}
    progress = Progress(iteration=3, steps=2400, reward=0.5, steps_per_s=800, notes=bar_notes(result))
    text = bar_text(progress, 200)
    assert text == (
        f"iteration 3 | 2400 steps | reward 0.50 (last 100 episodes) | elo {league.elo:.0f} | W/D/L 2/1/1 | "
        "800 steps/s"
    )
    assert league.elo > 1200 and bar_notes({}) == ()
    progress.done = 0.45  # an 80-column terminal: the short form keeps the league in sight
    assert bar_text(progress, 80) == (
        f"45% | iteration 3 | 2400 steps | reward 0.50 | elo {league.elo:.0f} | W/D/L 2/1/1"
    )


@pytest.mark.fast
def test_mapping_plays_the_latest_learner_in_the_configured_share_of_episodes():
    mapping = SelfPlayMapping(
        settings(play_against_latest_model_ratio=0.3), ["left_policy", "right_policy"], ["a", "b"]
    )
    episodes = [Episode(eps_id) for eps_id in range(4000)]
    opponents = [mapping(1, episode) for episode in episodes]
    assert all(mapping(0, episode) == "left_policy" for episode in episodes[:50])
    assert [mapping(1, episode) for episode in episodes[-50:]] == opponents[-50:]  # one draw per episode
    share = opponents.count("left_policy") / len(opponents)
    assert 0.27 < share < 0.33
    assert opponents.count("a") == pytest.approx(opponents.count("b"), rel=0.15)


@pytest.mark.fast
def test_mapping_keeps_an_opponent_for_swap_every_episodes():
    mapping = SelfPlayMapping(settings(swap_every=4), ["left_policy", "right_policy"], ["a", "b", "c"])
    opponents = [mapping(1, Episode(eps_id)) for eps_id in range(400)]
    for start in range(0, 400, 4):
        assert len(set(opponents[start : start + 4])) == 1
    assert len(set(opponents)) == 4  # the three snapshots and the learner


@pytest.mark.fast
def test_mapping_pickles_without_its_draws():
    mapping = SelfPlayMapping(settings(), ["left_policy", "right_policy"], ["a"])
    mapping(1, Episode(7))
    copy = pickle.loads(pickle.dumps(mapping))
    assert copy.snapshots == ["a"] and not copy.chosen


def _episode(rewards: List[float], policies: List[str], infos: List[Dict]) -> Episode:
    episode = Episode(1, policy_of=dict(enumerate(policies)), last_info=dict(enumerate(infos)))
    for agent, (reward, policy) in enumerate(zip(rewards, policies, strict=True)):
        episode.agent_rewards[(agent, policy)] = reward
    return episode


@pytest.mark.fast
def test_outcome_from_rewards_by_default_and_from_an_info_key_when_asked():
    names = ["left_policy", "right_policy"]
    win = _episode([1.0, -1.0], ["left_policy", "left_policy_it3"], [{"won": -1}, {"won": 1}])
    assert episode_outcome(SelfPlayMapping(settings(), names, []), win) == ("left_policy_it3", 1.0)
    by_info = SelfPlayMapping(settings(outcome_info_key="won"), names, [])
    assert episode_outcome(by_info, win) == ("left_policy_it3", 0.0)
    draw = _episode([0.0, 0.0], ["left_policy", "left_policy"], [{}, {}])
    assert episode_outcome(SelfPlayMapping(settings(), names, []), draw) == ("left_policy", 0.5)
    assert episode_score(-2, -1) == 0.0


@pytest.mark.fast
@pytest.mark.parametrize(
    "block, message",
    [
        ({"learner": "left_policy", "opponents": ["right_policy"], "window": 0}, "self_play.window"),
        ({"learner": "left_policy", "opponents": []}, "self_play.opponents"),
        ({"learner": "left_policy", "opponents": ["left_policy"]}, "also listed"),
        (
            {"learner": "left_policy", "opponents": "right_policy", "ratio": 1},
            "unknown self_play key\\(s\\) ratio",
        ),
        (
            {"learner": "left_policy", "opponents": "right_policy", "play_against_latest_model_ratio": 2},
            "between 0.0 and 1.0",
        ),
    ],
)
def test_bad_blocks_are_user_errors(block, message):
    with pytest.raises(UserError, match=message):
        parse_self_play(block, "x.yaml")


@pytest.mark.fast
def test_game_checks():
    with pytest.raises(UserError, match="two sides"):
        check_against_game(settings(), ["left_policy"])
    with pytest.raises(UserError, match="'right_policy', which is not a policy"):
        check_against_game(settings(), ["left_policy", "blue"])
    check_against_game(settings(), ["left_policy", "right_policy"])


# --- real runs ---------------------------------------------------------------------------------------

SNAPSHOT_EVERY = 2
WINDOW = 2
ITERATIONS = 5


def duel_config(tmp_path: Path, name: str, **changes) -> Path:
    """The shipped examples/self_play_pong.yaml, small, on free ports, with `changes` to its self_play block
    (a key set to None is removed) and the other top-level `changes`."""
    data = yaml.safe_load((REPO_ROOT / "examples" / "self_play_pong.yaml").read_text())
    data["env_config"].update(env_path=DUEL, port=find_free_port_block(4))
    block = changes.pop("self_play", {})
    data["self_play"].update(block)
    data["self_play"] = {key: value for key, value in data["self_play"].items() if value is not None}
    data.update(
        {
            "num_envs_per_worker": 2,
            "rollout_fragment_length": 100,
            "train_batch_size": 400,
            "sgd_minibatch_size": 100,
            "num_sgd_iter": 2,
            "checkpoint_frequency": 1,
            "stop": {"training_iteration": ITERATIONS},
            **changes,
        }
    )
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def train(tmp_path: Path, config: Path, *args: str):
    return run_script(
        SCRIPT,
        f"--config_file={config}",
        f"--experiment_dir={tmp_path / 'runs'}",
        "--torch_threads=1",
        *args,
        cwd=tmp_path,
        env={**os.environ, "CONTROLLER_METRICS": "1"},
        timeout=240,
    )


def checkpoints(tmp_path: Path) -> List[Path]:
    return sorted((tmp_path / "runs").glob("*/*/checkpoint_*"))


@pytest.fixture(scope="module")
def fresh_run(tmp_path_factory):
    """One self-play run: a snapshot every 2 iterations, a window of 2, a checkpoint every iteration."""
    tmp_path = tmp_path_factory.mktemp("self_play")
    config = duel_config(
        tmp_path, "duel.yaml", self_play={"snapshot_every": SNAPSHOT_EVERY, "window": WINDOW}
    )
    result = train(tmp_path, config)
    assert result.returncode == 0, result.stderr[-3000:]
    return tmp_path, result


def weights(checkpoint: Path, policy: str) -> Dict[str, np.ndarray]:
    with open(checkpoint / "policies" / policy / "policy_state.pkl", "rb") as handle:
        return pickle.load(handle)["weights"]


def test_snapshots_appear_at_the_interval_and_the_window_drops_the_oldest(fresh_run):
    tmp_path, result = fresh_run
    found = checkpoints(tmp_path)
    assert len(found) == ITERATIONS
    for iteration, checkpoint in enumerate(found, start=1):
        league = json.loads((checkpoint / "self_play.json").read_text())
        taken = [f"left_policy_it{i}" for i in range(0, iteration + 1, SNAPSHOT_EVERY)]
        assert league["snapshots"] == taken[-WINDOW:], iteration
        policies = {path.name for path in (checkpoint / "policies").iterdir()}
        assert set(league["snapshots"]) <= policies and "right_policy" not in policies
    lines = [line for line in result.stdout.splitlines() if line.startswith("iteration ")]
    assert len(lines) == ITERATIONS and all(" | elo " in line and " W/D/L " in line for line in lines)


def test_snapshots_stay_frozen_while_the_learner_trains(fresh_run):
    tmp_path, _ = fresh_run
    found = checkpoints(tmp_path)  # left_policy_it2 is in the checkpoints of iterations 2 to 5
    first, last = weights(found[1], "left_policy_it2"), weights(found[4], "left_policy_it2")
    assert all(np.array_equal(first[name], last[name]) for name in first)
    learner_then, learner_now = weights(found[1], "left_policy"), weights(found[4], "left_policy")
    assert any(not np.array_equal(learner_then[name], learner_now[name]) for name in learner_then)
    snapshot_at_2 = weights(found[1], "left_policy_it2")
    assert all(np.array_equal(snapshot_at_2[name], learner_then[name]) for name in snapshot_at_2)


def test_metric_lines_carry_the_league(fresh_run):
    _, result = fresh_run
    samples = metric_lines(result.stdout)
    assert len(samples) == ITERATIONS
    for sample in samples:
        league = sample["self_play"]
        assert league["learner"] == "left_policy" and isinstance(league["elo"], float)
        assert sample["custom_metrics"]["self_play_elo"] == league["elo"]
        learner = sample["policies"]["left_policy"]
        assert learner["elo"] == league["elo"] and learner["custom_metrics"]["wins"] == league["wins"]
        for snapshot in league["snapshots"]:
            if snapshot in sample["policies"]:
                assert sample["policies"][snapshot]["custom_metrics"]["elo"] == league["ratings"][snapshot]
    last = samples[-1]["self_play"]
    rated = last["wins"] + last["draws"] + last["losses"]
    assert rated > 0 and last["episodes_vs_latest"] > 0  # both kinds of opponent were played
    share = last["episodes_vs_latest"] / (rated + last["episodes_vs_latest"])
    assert 0.2 < share < 0.8  # ratio 0.5 over a few dozen episodes (exact share: the mapping's unit test)
    assert last["elo"] != 1200.0


def test_resume_keeps_the_league_with_rllibs_own_sampler(fresh_run):
    tmp_path, _ = fresh_run
    saved = checkpoints(tmp_path)[-1]
    league = json.loads((saved / "self_play.json").read_text())
    config = duel_config(
        tmp_path,
        "resume.yaml",
        self_play={"snapshot_every": SNAPSHOT_EVERY, "window": WINDOW},
        sampler="rllib",
        stop={"training_iteration": ITERATIONS + 1},
    )
    result = train(tmp_path, config, f"--resume={saved}", f"--experiment_dir={tmp_path / 'resumed'}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "sampler: RLlib's" in result.stdout
    sample = metric_lines(result.stdout)[0]["self_play"]
    taken = f"left_policy_it{ITERATIONS + 1}"  # due at the resumed run's one iteration
    assert sample["snapshots"] == (league["snapshots"] + [taken])[-WINDOW:]
    for opponent, counts in league["record"].items():
        for key, count in counts.items():
            assert sample["record"][opponent][key] >= count
    total = sum(sum(counts.values()) for counts in sample["record"].values())
    assert total > sum(sum(counts.values()) for counts in league["record"].values())
    resumed = sorted((tmp_path / "resumed").glob("*/*/checkpoint_*"))[-1]
    policies = {path.name for path in (resumed / "policies").iterdir()}
    assert "left_policy_it0" not in policies  # the resumed run's own initial snapshot is not kept


def test_a_bad_block_gives_one_error_line_before_ray(tmp_path):
    """The script's end of every refused block (the checks themselves: the tests around this one)."""
    config = duel_config(tmp_path, "bad.yaml", self_play={"window": 0})
    result = train(tmp_path, config)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR:")]
    assert len(errors) == 1 and "self_play.window" in errors[0], result.stderr[-2000:]
    assert not (tmp_path / "runs").exists()  # nothing started


@pytest.mark.parametrize(
    "changes, game_args, message",
    [
        ({"self_play": {"learner": "blue_policy"}}, {}, "self_play.learner names 'blue_policy'"),
        ({"self_play": {"opponents": ["red_policy"]}}, {}, "self_play.opponents names 'red_policy'"),
        (
            {"self_play": {"snapshot_every": 50}},
            {},
            "snapshot_every is 50 iterations but the run stops after 5",
        ),
        (
            {"stop": {"timesteps_total": 500}},
            {},
            "snapshot_every is 5 iterations but the run stops after 2.5",
        ),
        ({}, {"opponent": "scripted"}, "self_play needs a game with two sides"),
    ],
)
def test_blocks_the_game_cannot_play_are_refused_when_the_config_is_built(
    tmp_path, changes, game_args, message
):
    """The trainer's steps before Ray starts (read the YAML, probe the game, build the config), in-process."""
    from godot_rl_cli.rllib.setup import build_config, probe_game

    spec = load_run_spec(str(duel_config(tmp_path, "bad.yaml", **changes)))
    settings = dataclasses.replace(spec.game, game_args={**spec.game.game_args, **game_args})
    game = probe_game(settings)
    try:
        with pytest.raises(UserError) as caught:
            build_config(spec, settings, game, None)
    finally:
        game.close()
    assert message in caught.value.what
