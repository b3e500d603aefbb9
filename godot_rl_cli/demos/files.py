"""The Godot RL Agents plugin's expert demo files, read and checked against the game's spaces.

The plugin's recorder (`sync.gd`, an AIController in "Record Expert Demos" mode) writes, when the game
window closes, one JSON array of episodes; each episode is `[observations, actions]`, where `observations`
holds the agent's `obs` array at every decision step and `actions` what the controller's `get_action()`
returned for it: one entry fewer, because the terminal observation has no action. Actions are a flat array
(continuous values, or discrete indices, head after head in the order the trainers see the heads: sorted by
name, as gymnasium's Dict sorts them); a single discrete head may also be a bare index. Only the `obs` key
is recorded, and no reward.

Every problem is one UserError naming the file, the episode and the step (both counted from 1), and how to
fix it. No ML import here beyond numpy and gymnasium's spaces.
"""

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from gymnasium import spaces

from godot_rl_cli.errors import UserError

OBS_KEY = "obs"
LAYOUT = "a JSON array of episodes, each [observations, actions] with one observation more than actions"
RECORD_AGAIN = "record the demos again with this game's AIController in 'Record Expert Demos' mode"


@dataclass(frozen=True)
class Head:
    """One action head of the game: its name, whether it is discrete, and its size (values or choices)."""

    name: str
    discrete: bool
    size: int


@dataclass(frozen=True)
class DemoSpaces:
    """What a demo step must look like for this game: the `obs` size and the action heads."""

    obs_size: int
    heads: Tuple[Head, ...]

    @property
    def action_width(self) -> int:
        """Values in one recorded action: one per discrete head, `size` per continuous head."""
        return sum(1 if head.discrete else head.size for head in self.heads)

    @property
    def discrete(self) -> bool:
        return self.heads[0].discrete

    def describe_action(self) -> str:
        return ", ".join(
            f"{head.name}: index 0..{head.size - 1}" if head.discrete else f"{head.name}: {head.size} values"
            for head in self.heads
        )


def demo_spaces(observation_space: spaces.Dict, action_heads: spaces.Dict, game: str) -> DemoSpaces:
    """The demo layout for a game's spaces (one agent's); a game whose observation has keys other than `obs`
    is refused, since the plugin records only `obs`."""
    keys = list(observation_space.spaces)
    if keys != [OBS_KEY]:
        raise UserError(
            f"{game} observes {', '.join(repr(key) for key in keys)}, but the plugin's demo recorder records "
            f"only the 'obs' key, so its demos cannot be replayed for this game",
            "put every observation of the AIController under the single key 'obs' to learn from demos",
        )
    heads = tuple(
        Head(name, True, int(head.n))
        if isinstance(head, spaces.Discrete)
        else Head(name, False, int(head.shape[0]))
        for name, head in action_heads.spaces.items()
    )
    if len({head.discrete for head in heads}) > 1:
        raise UserError(
            f"{game} mixes discrete and continuous action heads, which these trainers cannot train",
            "use only discrete or only continuous action heads",
        )
    return DemoSpaces(int(np.prod(observation_space[OBS_KEY].shape)), heads)


@dataclass
class DemoFile:
    """One file as loaded: its path, content hash and counts (for the manifest)."""

    path: Path
    sha256: str
    episodes: int
    steps: int

    def record(self) -> Dict[str, Any]:
        return {"path": str(self.path), "sha256": self.sha256, "episodes": self.episodes, "steps": self.steps}


@dataclass
class Demonstrations:
    """Every decision step of every loaded episode: observations (N, obs_size) float32 and actions (N,) int64
    for one discrete head, (N, heads) int64 for several, (N, width) float32 for continuous heads (clamped to
    [-1, 1] as the plugin clamps them)."""

    spaces: DemoSpaces
    observations: np.ndarray
    actions: np.ndarray
    files: List[DemoFile] = field(default_factory=list)

    @property
    def episodes(self) -> int:
        return sum(item.episodes for item in self.files)

    @property
    def steps(self) -> int:
        return len(self.observations)

    def summary(self) -> Dict[str, Any]:
        """What the manifest records: every file's sha256 and counts, and the totals."""
        return {
            "files": [item.record() for item in self.files],
            "episodes": self.episodes,
            "steps": self.steps,
            "rewards": None,
        }

    def describe(self) -> str:
        mean_length = self.steps / self.episodes
        return (
            f"Demonstrations: {len(self.files)} file(s), {self.episodes} episode(s), {self.steps} steps "
            f"({mean_length:.1f} per episode); their mean return is unknown: the plugin's demo format "
            "records no rewards"
        )


def demo_paths(names: Sequence[str]) -> List[Path]:
    """The files named, a folder standing for the `.json` files in it (sorted); UserError for a missing
    one."""
    paths: List[Path] = []
    for name in names:
        path = Path(name).expanduser()
        if path.is_dir():
            found = sorted(item for item in path.glob("*.json") if item.is_file())
            if not found:
                raise UserError(f"demo folder {name} holds no .json files", "pass demo files or their folder")
            paths += found
        elif path.is_file():
            paths.append(path)
        else:
            raise UserError(
                f"demo file {name} does not exist", "pass the JSON files the plugin's recorder wrote"
            )
    return paths


def _where(path: Path, episode: Optional[int] = None, step: Optional[int] = None) -> str:
    text = f"demo file {path}"
    if episode is not None:
        text += f", episode {episode + 1}"
    if step is not None:
        text += f", step {step + 1}"
    return text


def _parse(path: Path) -> Tuple[Any, str]:
    """The JSON in a file and its sha256; NaN and infinities are kept as floats, to be reported by step."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise UserError(
            f"cannot read demo file {path} ({error.strerror or error})", "check the file"
        ) from None
    try:
        text = raw.decode("utf-8")
        return json.loads(text, parse_constant=float), hashlib.sha256(raw).hexdigest()
    except UnicodeDecodeError as error:
        raise UserError(
            f"demo file {path} is not UTF-8 text (byte {error.start})",
            f"pass a file the plugin wrote; {RECORD_AGAIN}",
        ) from None
    except json.JSONDecodeError as error:
        rest = text[error.pos : error.pos + 4].lower()
        if rest.startswith(("nan", "inf", "-inf")):
            what = (
                f"demo file {path} holds a NaN or infinite value at line {error.lineno} column {error.colno}"
            )
            how = "the game sent a non-finite observation or action: fix it in the game, then record again"
        elif error.pos >= len(text.rstrip()):
            what = f"demo file {path} ends early ({len(raw)} bytes): it is truncated"
            how = "close the game window (not the editor's Stop button) so the recorder finishes the file"
        else:
            what = f"demo file {path} is not JSON ({error.msg} at line {error.lineno} column {error.colno})"
            how = f"pass a file the plugin wrote; {RECORD_AGAIN}"
        raise UserError(what, how) from None


def _numbers(value: Any, path: Path, episode: int, step: int, what: str) -> List[float]:
    """A flat list of finite numbers (a bare number counts as a list of one)."""
    items = value if isinstance(value, list) else [value]
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (int, float)):
            raise UserError(
                f"{_where(path, episode, step)}: the {what} holds {json.dumps(item)[:40]}, not a number",
                f"the file is not the plugin's layout ({LAYOUT}); {RECORD_AGAIN}",
            )
        if not math.isfinite(item):
            raise UserError(
                f"{_where(path, episode, step)}: the {what} holds {item}",
                "the game recorded a non-finite value: fix the game's get_obs()/get_action(), then record "
                "again",
            )
    return [float(item) for item in items]


def _observation(value: Any, spaces_: DemoSpaces, path: Path, episode: int, step: int) -> List[float]:
    values = _numbers(value, path, episode, step, "observation")
    if not isinstance(value, list) or len(values) != spaces_.obs_size:
        size = len(values) if isinstance(value, list) else "1 bare"
        raise UserError(
            f"{_where(path, episode, step)}: the observation has {size} values, the game's 'obs' has "
            f"{spaces_.obs_size}",
            f"the demos were recorded with another observation: {RECORD_AGAIN}",
        )
    return values


def _action(value: Any, spaces_: DemoSpaces, path: Path, episode: int, step: int) -> List[float]:
    values = _numbers(value, path, episode, step, "action")
    if len(values) != spaces_.action_width:
        raise UserError(
            f"{_where(path, episode, step)}: the action has {len(values)} value(s), the game takes "
            f"{spaces_.action_width} ({spaces_.describe_action()})",
            f"make get_action() return every head's values, heads sorted by name; {RECORD_AGAIN}",
        )
    if spaces_.discrete:
        for head, index in zip(spaces_.heads, values, strict=True):
            if index != int(index) or not 0 <= index < head.size:
                raise UserError(
                    f"{_where(path, episode, step)}: action {head.name} is {index:g}, outside the discrete "
                    f"range 0..{head.size - 1}",
                    f"make get_action() return the chosen index of each discrete head; {RECORD_AGAIN}",
                )
    return values


def _episodes(data: Any, spaces_: DemoSpaces, path: Path) -> Tuple[List[List[float]], List[List[float]], int]:
    """The decision steps (observation, action) of every episode in a file, and the episode count."""
    if not isinstance(data, list) or not data:
        found = "an empty array" if data == [] else f"a JSON {type(data).__name__}"
        raise UserError(f"demo file {path} holds {found}, not the plugin's layout ({LAYOUT})", RECORD_AGAIN)
    observations: List[List[float]] = []
    actions: List[List[float]] = []
    for episode, item in enumerate(data):
        if not (isinstance(item, list) and len(item) == 2 and all(isinstance(part, list) for part in item)):
            raise UserError(
                f"{_where(path, episode)} is not [observations, actions] ({LAYOUT})", RECORD_AGAIN
            )
        episode_obs, episode_actions = item
        if not episode_actions:
            raise UserError(
                f"{_where(path, episode)} is empty (no action recorded)",
                "remove the episode from the file, or record it again",
            )
        if len(episode_obs) != len(episode_actions) + 1:
            raise UserError(
                f"{_where(path, episode)} has {len(episode_obs)} observations and {len(episode_actions)} "
                "actions; "
                f"the plugin records one observation more than actions ({LAYOUT})",
                RECORD_AGAIN,
            )
        for step, (obs, action) in enumerate(zip(episode_obs, episode_actions, strict=False)):
            observations.append(_observation(obs, spaces_, path, episode, step))
            actions.append(_action(action, spaces_, path, episode, step))
        _observation(episode_obs[-1], spaces_, path, episode, len(episode_actions))  # the terminal one
    return observations, actions, len(data)


def load_demonstrations(names: Sequence[str], spaces_: DemoSpaces) -> Demonstrations:
    """Read every file (or folder of files) and check each step against the game's spaces; the first
    problem is a UserError."""
    observations: List[List[float]] = []
    actions: List[List[float]] = []
    files: List[DemoFile] = []
    for path in demo_paths(names):
        data, sha256 = _parse(path)
        file_obs, file_actions, episodes = _episodes(data, spaces_, path)
        observations += file_obs
        actions += file_actions
        files.append(DemoFile(path.absolute(), sha256, episodes, len(file_obs)))
    action_array = np.asarray(actions, dtype=np.float32)
    if spaces_.discrete:
        action_array = action_array.astype(np.int64)
        if len(spaces_.heads) == 1:
            action_array = action_array[:, 0]
    else:
        action_array = np.clip(action_array, -1.0, 1.0)
    return Demonstrations(spaces_, np.asarray(observations, dtype=np.float32), action_array, files)
