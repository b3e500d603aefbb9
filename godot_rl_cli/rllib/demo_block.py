"""The RLlib YAML's `demos:` block (behaviour cloning of one policy before RL, in
godot_rl_cli/demos/rllib_bc.py): its keys and values, checked when the YAML is read. No ML import."""

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Tuple

from godot_rl_cli.errors import UserError
from godot_rl_cli.rllib.values import block_mapping


@dataclass(frozen=True)
class DemoBlock:
    """The RLlib YAML's `demos:` block: behaviour cloning of one policy from recorded demos before RL."""

    policy: str
    files: Tuple[str, ...]
    bc_epochs: int
    batch_size: int = 64
    learning_rate: float = 1e-3
    validation_share: float = 0.1


DEMO_BLOCK_EXAMPLE = "e.g. demos: {policy: left_policy, files: [demos/left.json], bc_epochs: 20}"


def parse_demo_block(value: Any, path: str) -> Optional[DemoBlock]:
    """The `demos:` block of the YAML file at `path` (None when absent); UserError for a bad one."""
    known = [field.name for field in dataclasses.fields(DemoBlock)]
    value = block_mapping(value, "demos", path, known, DEMO_BLOCK_EXAMPLE)
    if value is None:
        return None
    files = value.get("files")
    if isinstance(files, str):
        files = [files]
    if not isinstance(value.get("policy"), str) or not isinstance(files, list) or not files:
        raise UserError(
            f"demos in {path} needs policy (a name) and files (a list of paths)", DEMO_BLOCK_EXAMPLE
        )
    numbers = {
        "bc_epochs": (int, 1),
        "batch_size": (int, 1),
        "learning_rate": ((int, float), 0),
        "validation_share": ((int, float), 0),
    }
    for key, (kind, low) in numbers.items():
        item = value.get(key)
        if item is None and key != "bc_epochs":
            continue
        if (
            isinstance(item, bool)
            or not isinstance(item, kind)
            or item < low
            or (key == "validation_share" and item >= 1)
        ):
            raise UserError(f"demos.{key} in {path} is {item!r}, not a valid value", DEMO_BLOCK_EXAMPLE)
    # relative paths resolve against the current directory, as env_path and stop_file do
    return DemoBlock(**{**value, "files": tuple(str(Path(str(name)).expanduser()) for name in files)})
