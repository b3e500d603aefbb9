"""Self-play for competitive games with RLlib's own multi-agent pieces (old API stack).

The learner is one of the game's policies; the agents of the opponent policies (the game's own policy names)
are mapped, per episode, to the learner itself (`play_against_latest_model_ratio` of the draws) or to one of
the learner's frozen snapshots. A snapshot is the learner's state added to the running algorithm with
`Algorithm.add_policy` every `snapshot_every` iterations, never in `policies_to_train`; the window keeps the
newest `window` of them and `Algorithm.remove_policy` drops the older ones one snapshot later (an episode that
started against one can end first). The policy mapping function (`SelfPlayMapping`) is RLlib's: each env
runner draws the opponent again every `swap_every` episodes it starts. `SelfPlayCallbacks` records each
finished episode's outcome on the env runners (`on_episode_end`), and after each iteration (`on_train_result`)
collects them, updates the league's Elo ratings (league.py), takes the snapshot when due and puts the league
in the result. The league is saved in every checkpoint (`self_play.json`) and read back on resume.
"""

import random
from collections import OrderedDict, deque
from pathlib import Path
from typing import Any, Deque, Dict, List, Optional, Tuple

from godot_rl_cli.errors import UserError, print_warning
from godot_rl_cli.rllib.callbacks import ControllerMetricsCallback
from godot_rl_cli.rllib.env import agent_index
from godot_rl_cli.rllib.league import (
    LATEST,
    OUTCOME_OF_SCORE,
    League,
    SelfPlaySettings,
    check_against_game,
    check_run_length,
    episode_score,
    iteration_summary,
    read_league_file,
)

CHOICES_KEPT = 1000  # per env runner: the opponent drawn for each of its recent episodes
OUTCOMES_KEPT = 100_000  # per env runner, between two iterations (an evaluation runner's are never collected)


class SelfPlayMapping:
    """RLlib's policy mapping function under self-play: learner agents to the learner, opponent agents to the
    opponent drawn for their episode, other agents to their own policy. Picklable: RLlib sends it to every env
    runner and keeps it in checkpoints."""

    def __init__(self, settings: SelfPlaySettings, agent_policy_names: List[str], snapshots: List[str]):
        self.settings = settings
        self.agent_policy_names = list(agent_policy_names)
        self.snapshots = list(snapshots)
        self._reset_draws()

    def _reset_draws(self) -> None:
        self.rng: Optional[random.Random] = None
        self.current = self.settings.learner
        self.episodes_left = 0
        self.chosen: OrderedDict[Any, str] = OrderedDict()

    def __getstate__(self) -> Dict[str, Any]:
        return {k: self.__dict__[k] for k in ("settings", "agent_policy_names", "snapshots")}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset_draws()

    def with_snapshots(self, snapshots: List[str]) -> "SelfPlayMapping":
        return SelfPlayMapping(self.settings, self.agent_policy_names, snapshots)

    def game_policy(self, agent_id: Any) -> str:
        return self.agent_policy_names[agent_index(agent_id)]

    def __call__(self, agent_id: Any, episode: Any = None, worker: Any = None, **kwargs: Any) -> str:
        name = self.game_policy(agent_id)
        if name not in self.settings.opponents:
            return name
        episode_id = getattr(episode, "episode_id", None)
        if episode_id is None:  # asked outside an episode (checks, the debug panel)
            return self.settings.learner
        if episode_id not in self.chosen:
            self.chosen[episode_id] = self._next_opponent(worker)
            while len(self.chosen) > CHOICES_KEPT:
                self.chosen.popitem(last=False)
        return self.chosen[episode_id]

    def _next_opponent(self, worker: Any) -> str:
        """The opponent of a new episode: the current one for `swap_every` episodes, then a new draw."""
        if self.rng is None:
            self.rng = random.Random(f"self-play {getattr(worker, 'worker_index', 0)} {len(self.snapshots)}")
        if self.episodes_left <= 0:
            latest = not self.snapshots or self.rng.random() < self.settings.play_against_latest_model_ratio
            self.current = self.settings.learner if latest else self.rng.choice(self.snapshots)
            self.episodes_left = self.settings.swap_every
        self.episodes_left -= 1
        return self.current


def episode_outcome(mapping: SelfPlayMapping, episode: Any) -> Optional[Tuple[str, float]]:
    """(the opponent policy, the learner's score) of a finished episode, from RLlib's episode (or the batched
    sampler's, which answers the same calls); None when one side had no agent in it."""
    settings = mapping.settings
    values = {"learner": 0.0, "opponent": 0.0}
    opponent = None
    sides = set()
    for agent_id in episode.get_agents():
        name = mapping.game_policy(agent_id)
        side = "learner" if name == settings.learner else "opponent" if name in settings.opponents else None
        if side is None:
            continue
        policy = episode.policy_for(agent_id)
        if settings.outcome_info_key:
            value = (episode.last_info_for(agent_id) or {}).get(settings.outcome_info_key, 0.0)
        else:
            value = episode.agent_rewards.get((agent_id, policy), 0.0)
        try:
            values[side] += float(value)
        except (TypeError, ValueError):
            pass  # a non-numeric info value counts as 0
        sides.add(side)
        if side == "opponent":
            opponent = policy
    if sides != {"learner", "opponent"}:
        return None
    return opponent, episode_score(values["learner"], values["opponent"])


class SelfPlayCallbacks(ControllerMetricsCallback):
    """The league's callbacks: outcomes recorded on the env runners, collected and rated on the driver, where
    the snapshots are taken and the league is saved with each checkpoint."""

    def __init__(self) -> None:
        super().__init__()
        self.outcomes: Deque[Tuple[str, float]] = deque(maxlen=OUTCOMES_KEPT)
        self.league: Optional[League] = None
        self.retired: List[
            str
        ] = []  # dropped from the window; removed from the algorithm at the next snapshot

    def on_episode_end(self, *, episode, worker=None, **kwargs) -> None:
        super().on_episode_end(episode=episode, worker=worker, **kwargs)
        mapping = getattr(worker, "policy_mapping_fn", None)
        if isinstance(mapping, SelfPlayMapping):
            outcome = episode_outcome(mapping, episode)
            if outcome is not None:
                self.outcomes.append(outcome)

    def take_outcomes(self) -> List[Tuple[str, float]]:
        outcomes = list(self.outcomes)
        self.outcomes.clear()
        return outcomes

    def on_algorithm_init(self, *, algorithm, **kwargs) -> None:
        mapping = algorithm.config.policy_mapping_fn
        self.league = League(mapping.settings)
        self.take_snapshot(algorithm, 0)  # the untrained learner: an opponent from the first episode on

    def on_train_result(self, *, algorithm, result: Dict[str, Any], **kwargs) -> None:
        self.update_league(algorithm, result)
        super().on_train_result(algorithm=algorithm, result=result, **kwargs)  # shows the iteration's line

    def update_league(self, algorithm: Any, result: Dict[str, Any]) -> None:
        """Rates this iteration's episodes, takes the snapshot when due, puts the league in the result."""
        league = self.league
        faced: Dict[str, int] = {}
        outcomes: Dict[str, int] = {}
        for per_runner in algorithm.env_runner_group.foreach_env_runner(
            lambda runner: runner.callbacks.take_outcomes()
        ):
            for opponent, score in per_runner:
                league.record_episode(opponent, score)
                name = LATEST if opponent == league.settings.learner else opponent
                faced[name] = faced.get(name, 0) + 1
                outcomes[OUTCOME_OF_SCORE[score]] = outcomes.get(OUTCOME_OF_SCORE[score], 0) + 1
        iteration = int(result["training_iteration"])
        if league.due(iteration):
            self.take_snapshot(algorithm, iteration)
        result["self_play"] = iteration_summary(league, faced, outcomes)

    def mapping(self, algorithm: Any) -> SelfPlayMapping:
        return algorithm.config.policy_mapping_fn.with_snapshots(self.league.snapshots)

    def trained(self, algorithm: Any) -> List[str]:
        """The policies that learn: every one of the config's except the opponents' names."""
        opponents = self.league.settings.opponents
        configured = algorithm.config.policies_to_train or list(algorithm.config.policies)
        return [policy for policy in configured if policy not in opponents]

    def take_snapshot(self, algorithm: Any, iteration: int) -> None:
        """Adds a frozen copy of the learner, retires what the window drops, removes the earlier retired."""
        learner = algorithm.get_policy(self.league.settings.learner)
        snapshot, dropped = self.league.add_snapshot(iteration)
        mapping = self.mapping(algorithm)
        trained = self.trained(algorithm)
        algorithm.add_policy(
            snapshot,
            type(learner),
            observation_space=learner.observation_space,
            action_space=learner.action_space,
            policy_state=learner.get_state(),
            policy_mapping_fn=mapping,
            policies_to_train=trained,
        )
        for old in self.retired:
            if old not in self.league.snapshots:
                algorithm.remove_policy(old, policy_mapping_fn=mapping, policies_to_train=trained)
        self.retired = dropped

    def save_to_checkpoint(self, checkpoint: Path) -> None:
        """Writes the league into a checkpoint directory (called by layout.Trial.save_checkpoint)."""
        if self.league is not None:
            self.league.save(checkpoint, retired=self.retired)

    def restore(self, algorithm: Any, checkpoint: Path) -> None:
        """Continues the league saved in `checkpoint` (RLlib restored its snapshots' policies); a checkpoint
        without one keeps the fresh league."""
        data = read_league_file(checkpoint)
        if data is None:
            print_warning(
                f"{checkpoint} holds no self-play league ({checkpoint.name}/self_play.json): a new one starts"
            )
            return
        league = League.from_json(data, self.league.settings)
        for snapshot in league.snapshots:
            if algorithm.get_policy(snapshot) is None:
                raise UserError(
                    f"the checkpoint's league lists snapshot {snapshot!r}, a policy the checkpoint lacks",
                    "resume from a checkpoint written by a self-play run",
                )
        keep = set(league.snapshots) | set(data.get("retired", []))
        fresh = [s for s in self.league.snapshots if s not in keep]  # this run's initial snapshot
        self.league = league
        self.retired = [s for s in data.get("retired", []) if algorithm.get_policy(s) is not None]
        mapping, trained = self.mapping(algorithm), self.trained(algorithm)
        for snapshot in fresh:
            algorithm.remove_policy(snapshot, policy_mapping_fn=mapping, policies_to_train=trained)
        algorithm.env_runner_group.foreach_env_runner(lambda runner: runner.set_policy_mapping_fn(mapping))


def resume_league(algo: Any, checkpoint: Path) -> None:
    """After `algo.restore(checkpoint)`: the league goes on from the checkpoint (no-op without self-play)."""
    if isinstance(algo.callbacks, SelfPlayCallbacks):
        algo.callbacks.restore(algo, checkpoint)


def planned_iterations(stop: Dict[str, Any], config: Any, agents: int) -> Optional[float]:
    """How many iterations the stop criteria allow at most, when they say (iterations or steps)."""
    limits = []
    if "training_iteration" in stop:
        limits.append(float(stop["training_iteration"]))
    if "timesteps_total" in stop and config.train_batch_size:
        per_agent = config.count_steps_by == "agent_steps"
        env_steps_per_iteration = config.train_batch_size / (agents if per_agent else 1)
        limits.append(max(1.0, float(stop["timesteps_total"]) / env_steps_per_iteration))
    return min(limits) if limits else None


def configure_self_play(config: Any, spec: Any, game: Any) -> List[str]:
    """Sets the AlgorithmConfig up for the YAML's `self_play:` block (policies, mapping, policies_to_train,
    callbacks); returns the policy ids it starts with. Raises UserError for a block the game cannot play."""
    settings: SelfPlaySettings = spec.self_play
    check_against_game(settings, game.agent_policy_names)
    if spec.mapping_source:
        raise UserError(
            "self_play and multiagent.policy_mapping_fn are both set",
            "remove policy_mapping_fn: self-play maps the opponents' agents itself",
        )
    policies = dict(config.policies)
    learner = policies[settings.learner]
    for name in settings.opponents:
        other = policies.get(name)
        if other is not None and (
            other.observation_space != learner.observation_space or other.action_space != learner.action_space
        ):
            raise UserError(
                f"self_play: the opponent {name!r} observes or acts differently from the learner "
                f"{settings.learner!r}",
                "self-play needs both sides to have the same observation and action spaces",
            )
    to_train = list(config.policies_to_train or [])
    if to_train and (settings.learner not in to_train or set(to_train) & set(settings.opponents)):
        raise UserError(
            "self_play: multiagent.policies_to_train must hold the learner and none of the opponents",
            "remove policies_to_train or list the learner in it",
        )
    check_run_length(settings, planned_iterations(spec.stop, config, game.num_envs))
    kept = {name: policy for name, policy in policies.items() if name not in settings.opponents}
    config.multi_agent(
        policies=kept,
        policy_mapping_fn=SelfPlayMapping(settings, game.agent_policy_names, []),
        policies_to_train=to_train or list(kept),
    )
    config.callbacks(SelfPlayCallbacks)
    print(
        f"Self-play: learner {settings.learner} against {', '.join(settings.opponents)} as itself "
        f"({settings.play_against_latest_model_ratio:.0%} of draws) or one of its last {settings.window} "
        f"snapshots (one every {settings.snapshot_every} iterations); opponent drawn every "
        f"{settings.swap_every} episodes; "
        f"Elo K {settings.elo_k:g}",
        flush=True,
    )
    return list(kept)
