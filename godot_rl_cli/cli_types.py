"""argparse value types shared by every script; no ML imports, so `--help` and bad flags stay fast."""

import argparse
import math
from pathlib import Path
from typing import Any, Callable, List, Optional, Tuple


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each flag's default, except where there is none to show."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.default == []:
            return action.help or ""
        return super()._get_help_string(action)


def int_in_range(low: int, high: Optional[int] = None) -> Callable[[str], int]:
    """An integer in [low, high] (no upper bound when `high` is None)."""

    def parse(text: str) -> int:
        value = int(text)
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(
                f"{value} is out of range [{low}, {high if high is not None else '∞'}]"
            )
        return value

    parse.__name__ = "integer"
    return parse


SEED_MAX = 2**32 - 1  # numpy's and therefore SB3's and RLlib's limit


def seed_value(text: str) -> int:
    """A random seed: an integer from 0 to 2**32 - 1."""
    return int_in_range(0, SEED_MAX)(text)


def positive_float(text: str) -> float:
    """A finite number above 0."""
    value = float(text)
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"{text} must be a positive number")
    return value


def float_in_range(low: float, high: float) -> Callable[[str], float]:
    """A finite number in [low, high]."""

    def parse(text: str) -> float:
        value = float(text)
        if not (low <= value <= high):
            raise argparse.ArgumentTypeError(f"{text} is out of range [{low:g}, {high:g}]")
        return value

    parse.__name__ = "number"
    return parse


def directory_path(text: str) -> Path:
    """A directory to write into, created if missing: not an existing file, nor a path below one."""
    path = Path(text).expanduser()
    for folder in [path, *path.parents]:
        try:
            if folder.exists() and not folder.is_dir():
                which = "is a file" if folder == path else f"is below {folder}, which is a file"
                raise argparse.ArgumentTypeError(f"{text} {which}, not a directory")
        except OSError:
            break  # unreadable: the write itself will say why
    return path


def non_negative_float(text: str) -> float:
    """A finite number of 0 or more."""
    value = float(text)
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"{text} must be a finite number, 0 or more")
    return value


def parse_int_list(text: str) -> List[int]:
    """'64,64' -> [64, 64]; raises ValueError on anything but positive integers separated by commas."""
    values = [int(part) for part in text.replace(" ", "").split(",") if part]
    if not values or any(value <= 0 for value in values):
        raise ValueError(f"expected positive integers separated by commas, got {text!r}")
    return values


def int_list(text: str) -> List[int]:
    """argparse type for `parse_int_list`."""
    try:
        return parse_int_list(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def key_value(text: str) -> Tuple[str, str]:
    """'KEY=VALUE' (a leading '--' on KEY is dropped) -> (KEY, VALUE)."""
    key, separator, value = text.partition("=")
    if not separator or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.lstrip("-"), value


def add_flag(group: Any, name: str, **kwargs: Any) -> None:
    """Add `--name` in both spellings (`--env_path` and `--env-path`): the API reference uses underscores,
    the controller hyphens."""
    spellings = [f"--{name}"]
    for other in (name.replace("_", "-"), name.replace("-", "_")):
        if f"--{other}" not in spellings:
            spellings.append(f"--{other}")
    group.add_argument(*spellings, dest=kwargs.pop("dest", name.replace("-", "_")), **kwargs)
