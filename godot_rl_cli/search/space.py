"""The search space file: each hyperparameter with its distribution, checked before any game starts.

Shape (YAML):

    hyperparameters:              # the trainer's own flag names (SB3) or YAML keys (RLlib)
      learning_rate: {loguniform: [1.0e-5, 1.0e-3]}
      gamma: {uniform: [0.9, 0.9999]}
      n_steps: {choice: [32, 64, 128]}
      n_epochs: {int: [3, 10]}    # both ends included
    game_args:                    # optional: --KEY=VALUE arguments of the game, searched the same way
      difficulty: {choice: [1, 2]}
    first_trials:                 # optional: settings tried first, in order (e.g. the shipped defaults)
      - {learning_rate: 0.0003}

Reading imports no ML library; the caller passes the names the trainer knows and a checker per name.
"""

import difflib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional

import yaml

from godot_rl_cli.errors import UserError

DISTRIBUTIONS = ("loguniform", "uniform", "int", "choice")
GAME_ARG_PREFIX = "game_arg."  # a searched game argument's key in a trial's config
SECTIONS = ("hyperparameters", "game_args", "first_trials")
SPACES_DIR = Path(__file__).resolve().parent / "spaces"


@dataclass(frozen=True)
class Dimension:
    """One searched setting: its distribution and that distribution's arguments (bounds or choices)."""

    name: str
    distribution: str
    values: List[Any]

    def to_tune(self) -> Any:
        """The Ray Tune domain (imports Ray)."""
        from ray import tune

        if self.distribution == "loguniform":
            return tune.loguniform(*self.values)
        if self.distribution == "uniform":
            return tune.uniform(*self.values)
        if self.distribution == "int":
            return tune.randint(self.values[0], self.values[1] + 1)  # randint excludes its upper bound
        return tune.choice(self.values)


@dataclass
class SearchSpace:
    source: Path
    dimensions: Dict[str, Dimension] = field(default_factory=dict)  # config key -> dimension
    first_trials: List[Dict[str, Any]] = field(default_factory=list)

    def hyperparameter_names(self) -> List[str]:
        return [key for key in self.dimensions if not key.startswith(GAME_ARG_PREFIX)]

    def to_tune(self) -> Dict[str, Any]:
        return {key: dimension.to_tune() for key, dimension in self.dimensions.items()}


def default_space_path(trainer: str, algorithm: str) -> Path:
    """The shipped space for a trainer's algorithm (UserError when none ships)."""
    path = SPACES_DIR / f"{trainer}_{algorithm.lower()}.yaml"
    if not path.is_file():
        shipped = ", ".join(sorted(p.stem for p in SPACES_DIR.glob("*.yaml")))
        raise UserError(
            f"no default search space for {trainer} {algorithm.upper()}",
            f"pass --search_space FILE (shipped: {shipped})",
        )
    return path


def load_space(
    path: Path, known: Mapping[str, Optional[Callable[[Any], Any]]], what: str, hint: str
) -> SearchSpace:
    """Read and check the space file. `known` maps each searchable name to a checker that raises
    ValueError for a value the trainer refuses (None: any value); `what` names them in errors ("SB3 flag"),
    `hint` tells where to look them up."""
    data = _read(path)
    space = SearchSpace(source=path)
    hyperparameters = _mapping(data.get("hyperparameters"), "hyperparameters", path)
    if not hyperparameters:
        raise UserError(f"{path} searches nothing", "list at least one entry under hyperparameters:")
    for name, spec in hyperparameters.items():
        name = str(name)
        if name not in known:
            close = difflib.get_close_matches(name, list(known), n=1)
            raise UserError(
                f"{path}: {name!r} is not a {what}" + (f" (did you mean {close[0]!r}?)" if close else ""),
                hint,
            )
        space.dimensions[name] = _dimension(name, spec, path, known[name])
    for name, spec in _mapping(data.get("game_args"), "game_args", path).items():
        key = GAME_ARG_PREFIX + str(name).lstrip("-")
        space.dimensions[key] = _dimension(key, spec, path, None)
    space.first_trials = _first_trials(data.get("first_trials"), space, path)
    return space


def _read(path: Path) -> Dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise UserError(
            f"cannot read search space {path} ({error.strerror or error})", "pass an existing YAML file"
        ) from None
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise UserError(f"search space {path} is not valid YAML: {' '.join(str(error).split())}") from None
    if not isinstance(data, dict):
        raise UserError(f"search space {path} is not a YAML mapping", "see godot_rl_cli/search/spaces/")
    unknown = [str(key) for key in data if key not in SECTIONS]
    if unknown:
        close = difflib.get_close_matches(unknown[0], SECTIONS, n=1)
        raise UserError(
            f"{path}: unknown section {unknown[0]!r}" + (f" (did you mean {close[0]!r}?)" if close else ""),
            f"the sections are {', '.join(SECTIONS)}",
        )
    return data


def _mapping(value: Any, key: str, path: Path) -> Dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UserError(f"{path}: {key} must be a mapping of names to distributions", "see --help")
    return value


def _dimension(name: str, spec: Any, path: Path, check: Optional[Callable[[Any], Any]]) -> Dimension:
    example = "e.g. {loguniform: [1.0e-5, 1.0e-3]} or {choice: [32, 64]}"
    if not isinstance(spec, dict) or len(spec) != 1:
        raise UserError(f"{path}: {name} must be one distribution, not {spec!r}", example)
    distribution, values = next(iter(spec.items()))
    if distribution not in DISTRIBUTIONS:
        close = difflib.get_close_matches(str(distribution), DISTRIBUTIONS, n=1)
        raise UserError(
            f"{path}: unknown distribution {distribution!r} for {name}"
            + (f" (did you mean {close[0]!r}?)" if close else ""),
            f"use one of {', '.join(DISTRIBUTIONS)}",
        )
    if not isinstance(values, list) or not values:
        raise UserError(f"{path}: {name}: {distribution} needs a list", example)
    if distribution == "choice":
        _check_values(name, values, values, path, check)
        return Dimension(name, distribution, list(values))
    return Dimension(name, distribution, _range(name, distribution, values, path, check))


def _range(
    name: str, distribution: str, values: List[Any], path: Path, check: Optional[Callable[[Any], Any]]
) -> List[Any]:
    """[low, high] checked: numbers (whole for int), finite, low below high, positive for loguniform."""
    number = int if distribution == "int" else (int, float)
    if len(values) != 2 or not all(isinstance(v, number) and not isinstance(v, bool) for v in values):
        kind = "whole numbers" if distribution == "int" else "numbers"
        raise UserError(f"{path}: {name}: {distribution} needs [low, high] as two {kind}, not {values}")
    low, high = values
    if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
        raise UserError(f"{path}: {name}: the range [{low}, {high}] is empty or inverted", "give low < high")
    if distribution == "loguniform" and low <= 0:
        raise UserError(f"{path}: {name}: loguniform needs a low bound above 0, not {low}")
    _check_values(name, [low, high], values, path, check)
    return [float(low), float(high)] if distribution != "int" else [low, high]


def _check_values(
    name: str, samples: List[Any], values: List[Any], path: Path, check: Optional[Callable[[Any], Any]]
) -> None:
    if check is None:
        return
    for value in samples:
        try:
            check(value)
        except (ValueError, TypeError) as error:
            raise UserError(
                f"{path}: {name}: {value!r} (of {values}) is refused by the trainer ({error})",
                "narrow the range",
            ) from None


def _first_trials(value: Any, space: SearchSpace, path: Path) -> List[Dict[str, Any]]:
    """Settings tried before the sampler's own, each a mapping of searched names (game args by their name)."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise UserError(f"{path}: first_trials must be a list of mappings", "e.g. - {learning_rate: 0.0003}")
    trials = []
    for item in value:
        trial = {}
        for name, setting in item.items():
            key = str(name) if str(name) in space.dimensions else GAME_ARG_PREFIX + str(name)
            if key not in space.dimensions:
                raise UserError(f"{path}: first_trials names {name!r}, which is not searched")
            trial[key] = setting
        trials.append(trial)
    return trials
