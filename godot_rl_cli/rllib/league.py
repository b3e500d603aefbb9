"""The self-play league without Ray: the `self_play:` block of the RLlib YAML, Elo ratings, snapshots kept in
a window, win/draw/loss counts, and the league's file in a checkpoint (`self_play.json`).

Elo: after each finished episode between the learner and a snapshot, with the learner's score S (1 win, 0.5
draw, 0 loss) and its expected score E = 1 / (1 + 10 ** ((R_snapshot - R_learner) / 400)), the learner's
rating moves by K * (S - E) and the snapshot's by the opposite amount (K is `elo_k`, 16 by default). A new
snapshot starts at the learner's rating of that moment. Episodes against the latest learner (both sides the
learner) change no rating.

Who won: the learner side's summed episode reward against the opponent side's (for a zero-sum game: the
learner's reward above 0 wins), or, with `outcome_info_key: KEY`, the sides' summed last `info[KEY]` values;
higher wins, equal is a draw.
"""

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

from godot_rl_cli.errors import UserError
from godot_rl_cli.rllib.values import block_mapping

LEAGUE_FILE = "self_play.json"  # in each checkpoint directory, beside algorithm_state.pkl
LATEST = "latest"  # the opponent name of episodes played against the learner itself
OUTCOMES = ("wins", "draws", "losses")


@dataclass
class SelfPlaySettings:
    """The YAML's `self_play:` block."""

    learner: str
    opponents: List[str]
    snapshot_every: int = 10  # training iterations between snapshots of the learner
    window: int = 10  # snapshots kept; the oldest is dropped
    play_against_latest_model_ratio: float = 0.5  # share of episodes against the learner itself
    swap_every: int = 1  # episodes (of each env runner) before the opponent is drawn again
    elo_k: float = 16.0
    initial_elo: float = 1200.0
    outcome_info_key: Optional[str] = None  # None: the episode rewards decide who won


def _whole(value: Any, key: str, path: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UserError(
            f"self_play.{key} in {path} must be a whole number, {minimum} or more, not {value!r}",
            f"e.g. {key}: {max(minimum, 5)}",
        )
    return value


def _real(value: Any, key: str, path: str, low: float = -math.inf, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        bounds = f" between {low} and {high}" if math.isfinite(low) and math.isfinite(high) else ""
        raise UserError(
            f"self_play.{key} in {path} must be a number{bounds}, not {value!r}", f"fix self_play.{key}"
        )
    return float(value)


EXAMPLE = "e.g. self_play: {learner: left_policy, opponents: [right_policy], snapshot_every: 10, window: 5}"


def parse_self_play(block: Any, path: str) -> Optional[SelfPlaySettings]:
    """The `self_play:` block (None when absent or null); every problem is a one-line UserError."""
    block = block_mapping(block, "self_play", path, SelfPlaySettings.__dataclass_fields__, EXAMPLE)
    if block is None:
        return None
    settings = SelfPlaySettings(*_sides(block, path))
    for key in ("snapshot_every", "window", "swap_every"):
        if key in block:
            setattr(settings, key, _whole(block[key], key, path, 1))
    bounds = {"play_against_latest_model_ratio": (0.0, 1.0), "elo_k": (0.0, math.inf), "initial_elo": ()}
    for key, limits in bounds.items():
        if key in block:
            setattr(settings, key, _real(block[key], key, path, *limits))
    key = block.get("outcome_info_key")
    if key is not None and not isinstance(key, str):
        raise UserError(
            f"self_play.outcome_info_key in {path} must be an info key name, not {key!r}", EXAMPLE
        )
    settings.outcome_info_key = key
    return settings


def _sides(block: Dict[str, Any], path: str) -> Tuple[str, List[str]]:
    """The learner's name and the opponents' names (one name or a list) of the block."""
    learner = block.get("learner")
    if not isinstance(learner, str) or not learner:
        raise UserError(f"self_play.learner in {path} must name the learning policy", EXAMPLE)
    opponents = block.get("opponents")
    if isinstance(opponents, str):
        opponents = [opponents]
    if (
        not isinstance(opponents, list)
        or not opponents
        or not all(isinstance(name, str) for name in opponents)
    ):
        raise UserError(f"self_play.opponents in {path} must list the opponents' policy names", EXAMPLE)
    if learner in opponents:
        raise UserError(
            f"self_play.learner {learner!r} is also listed in self_play.opponents in {path}",
            "the opponents are the other side's policy names in the game",
        )
    return learner, list(dict.fromkeys(opponents))


def check_against_game(settings: SelfPlaySettings, agent_policy_names: List[str]) -> None:
    """A UserError when the game cannot play this league: one policy only, or a name it does not have."""
    names = list(dict.fromkeys(agent_policy_names))
    if len(names) < 2:
        raise UserError(
            f"self_play needs a game with two sides on different policies; this game's agents all use "
            f"{names[0]!r}",
            "give the sides different policy_name values in the game's AIControllers, or remove self_play",
        )
    for role, name in [("learner", settings.learner)] + [("opponents", name) for name in settings.opponents]:
        if name not in names:
            raise UserError(
                f"self_play.{role} names {name!r}, which is not a policy of the game (its agents use "
                f"{', '.join(names)})",
                "use the policy_name of the game's agents",
            )


def check_run_length(settings: SelfPlaySettings, iterations: Optional[float]) -> None:
    """A UserError when the run ends (`iterations`, when the stop criteria say) before its first snapshot."""
    if iterations is not None and settings.snapshot_every > iterations:
        raise UserError(
            f"self_play.snapshot_every is {settings.snapshot_every} iterations but the run stops after "
            f"{iterations:g}",
            "lower snapshot_every or train longer",
        )


def expected_score(rating: float, other: float) -> float:
    """Elo's expected score of a player rated `rating` against one rated `other`."""
    return 1.0 / (1.0 + 10.0 ** ((other - rating) / 400.0))


def elo_update(learner: float, opponent: float, score: float, k: float) -> Tuple[float, float]:
    """Both ratings after one game in which the learner scored `score` (1, 0.5 or 0)."""
    change = k * (score - expected_score(learner, opponent))
    return learner + change, opponent - change


def episode_score(learner_value: float, opponent_value: float) -> float:
    """The learner's score of an episode from the two sides' values: 1 win, 0.5 draw, 0 loss."""
    if learner_value > opponent_value:
        return 1.0
    return 0.5 if learner_value == opponent_value else 0.0


def _record() -> Dict[str, int]:
    return dict.fromkeys(OUTCOMES, 0)


OUTCOME_OF_SCORE = {1.0: "wins", 0.5: "draws", 0.0: "losses"}


@dataclass
class League:
    """The learner's snapshots (oldest first), everyone's rating and the learner's record, per opponent."""

    settings: SelfPlaySettings
    snapshots: List[str] = field(default_factory=list)
    ratings: Dict[str, float] = field(default_factory=dict)
    record: Dict[str, Dict[str, int]] = field(default_factory=dict)  # opponent -> the learner's counts
    snapshot_iterations: Dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ratings.setdefault(self.settings.learner, self.settings.initial_elo)

    @property
    def elo(self) -> float:
        return self.ratings[self.settings.learner]

    def snapshot_id(self, iteration: int) -> str:
        return f"{self.settings.learner}_it{iteration}"

    def add_snapshot(self, iteration: int) -> Tuple[str, List[str]]:
        """Records a snapshot of the learner taken after `iteration`; returns its id and the ids the window
        drops."""
        snapshot = self.snapshot_id(iteration)
        if snapshot in self.snapshots:
            self.snapshots.remove(snapshot)
        self.snapshots.append(snapshot)
        self.ratings[snapshot] = self.elo
        self.snapshot_iterations[snapshot] = iteration
        dropped = self.snapshots[: -self.settings.window]
        self.snapshots = self.snapshots[-self.settings.window :]
        for old in dropped:
            self.ratings.pop(old, None)
            self.snapshot_iterations.pop(old, None)
        return snapshot, dropped

    def due(self, iteration: int) -> bool:
        return iteration > 0 and iteration % self.settings.snapshot_every == 0

    def record_episode(self, opponent: str, score: float) -> None:
        """One finished episode against `opponent` (a snapshot, or the learner itself); Elo moves only against
        a snapshot still in the league."""
        if opponent == self.settings.learner:
            opponent = LATEST
        self.record.setdefault(opponent, _record())[OUTCOME_OF_SCORE[score]] += 1
        if opponent in self.ratings and opponent != LATEST:
            self.ratings[self.settings.learner], self.ratings[opponent] = elo_update(
                self.elo, self.ratings[opponent], score, self.settings.elo_k
            )

    def totals(self) -> Dict[str, int]:
        """The learner's wins, draws and losses against snapshots (episodes against itself not counted)."""
        totals = _record()
        for opponent, counts in self.record.items():
            if opponent != LATEST:
                for key in OUTCOMES:
                    totals[key] += counts[key]
        return totals

    def to_json(self) -> Dict[str, Any]:
        return {
            "settings": asdict(self.settings),
            "snapshots": self.snapshots,
            "ratings": self.ratings,
            "record": self.record,
            "snapshot_iterations": self.snapshot_iterations,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], settings: SelfPlaySettings) -> "League":
        """The saved league under this run's `settings` (the YAML may have changed K or the window)."""
        league = cls(
            settings,
            snapshots=list(data.get("snapshots", [])),
            ratings={str(key): float(value) for key, value in (data.get("ratings") or {}).items()},
            record={str(key): {**_record(), **value} for key, value in (data.get("record") or {}).items()},
            snapshot_iterations={str(k): int(v) for k, v in (data.get("snapshot_iterations") or {}).items()},
        )
        league.ratings.setdefault(settings.learner, settings.initial_elo)
        return league

    def save(self, checkpoint: Path, retired: List[str] = ()) -> None:
        """Writes `self_play.json`; `retired`: snapshots out of the window, still among the policies."""
        data = {**self.to_json(), "retired": list(retired)}
        (checkpoint / LEAGUE_FILE).write_text(json.dumps(data, indent=2))


def read_league_file(checkpoint: Path) -> Optional[Dict[str, Any]]:
    """The `self_play.json` of a checkpoint, or None when the checkpoint has none (no self-play)."""
    path = checkpoint / LEAGUE_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise UserError(f"cannot read {path} ({error})", "resume from an intact checkpoint") from None


def snapshot_ids(checkpoint: Path) -> List[str]:
    """The snapshot policy ids a checkpoint's league lists, retired ones included (none without self-play)."""
    data = read_league_file(checkpoint)
    return list(data.get("snapshots", [])) + list(data.get("retired", [])) if data else []


def iteration_summary(league: League, opponents_this_iter: Dict[str, int], outcomes: Dict[str, int]) -> Dict:
    """What the result (result.json) and the `@METRIC` line say of the league after an iteration."""
    faced = (
        max(opponents_this_iter.items(), key=lambda item: (item[1], item[0]))[0]
        if opponents_this_iter
        else None
    )
    totals = league.totals()
    return {
        "learner": league.settings.learner,
        "elo": league.elo,
        "opponent": faced,  # the opponent of most of this iteration's episodes
        **totals,
        **{f"{key}_this_iter": outcomes.get(key, 0) for key in OUTCOMES},
        "episodes_vs_latest": sum(league.record.get(LATEST, {}).values()),
        "snapshot_count": len(
            league.snapshots
        ),  # their names: the keys of `ratings` (lists upset TensorBoard)
        "ratings": dict(league.ratings),
        "record": {key: dict(value) for key, value in league.record.items()},
    }


def add_to_payload(payload: Dict[str, Any], summary: Optional[Mapping[str, Any]]) -> None:
    """The league on the `@METRIC` line: a `self_play` object, numbers in custom_metrics (the controller
    charts those), and per policy its rating (and the learner's counts; a snapshot's from its own side)."""
    if not summary:
        return
    learner = summary["learner"]
    payload["self_play"] = {**summary, "snapshots": [name for name in summary["ratings"] if name != learner]}
    numbers = {"elo": summary["elo"], **{key: summary[key] for key in OUTCOMES}}
    payload["custom_metrics"].update({f"self_play_{key}": value for key, value in numbers.items()})
    for policy, entry in payload["policies"].items():
        if policy not in summary["ratings"]:
            continue
        values: Dict[str, Any] = {"elo": summary["ratings"][policy]}
        if policy == learner:
            values.update({key: summary[key] for key in OUTCOMES}, opponent=summary["opponent"])
        else:
            own = summary["record"].get(policy, _record())
            values.update(wins=own["losses"], draws=own["draws"], losses=own["wins"])
        entry.update(values)
        entry["custom_metrics"].update({key: value for key, value in values.items() if key != "opponent"})


def bar_notes(result: Mapping[str, Any]) -> Tuple[str, ...]:
    """The league's part of the progress bar: the learner's rating and W/D/L (nothing without self-play)."""
    summary = result.get("self_play")
    if not summary:
        return ()
    return (f"elo {summary['elo']:.0f}", f"W/D/L {summary['wins']}/{summary['draws']}/{summary['losses']}")


def human_summary(result: Mapping[str, Any]) -> str:
    """The league's part of the human iteration line ('' without self-play)."""
    summary = result.get("self_play")
    if not summary:
        return ""
    return (
        f" | elo {summary['elo']:.0f} vs {summary['opponent'] or '-'} | W/D/L {summary['wins']}/"
        f"{summary['draws']}/{summary['losses']} | snapshots {summary['snapshot_count']}"
    )
