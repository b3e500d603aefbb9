"""What the env runners need on a Ray cluster: this suite's package, shipped with Ray's runtime environment.

Env runners import `godot_rl_cli` to build the game's env. On a cluster (`--ray_address`), worker nodes may
have only the pinned requirements and the game binary, so the package directory goes to every node as a Ray
`py_modules` entry (uploaded once to the cluster's object store, unpacked by each node into its Ray temp dir).
A local Ray shares this machine's files, so its workers simply get the checkout on their PYTHONPATH.
"""

from pathlib import Path
from typing import Any, Dict, Optional

import godot_rl_cli

PACKAGE_DIR = Path(godot_rl_cli.__file__).resolve().parent


def runtime_env(ray_address: Optional[str]) -> Dict[str, Any]:
    """The runtime_env for `ray.init`: the package shipped as `py_modules` on a cluster, else PYTHONPATH."""
    if ray_address:
        return {"py_modules": [str(PACKAGE_DIR)]}
    return {"env_vars": {"PYTHONPATH": str(PACKAGE_DIR.parent)}}
