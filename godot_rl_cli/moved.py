"""The package's module names before it was split into folders (2026-11-25), still importable.

RLlib checkpoints and SB3 models pickle the classes and functions they were trained with by module path
(`godot_rl_cli.rllib_callbacks.ControllerMetricsCallback`, ...), so models saved by the earlier layout
would otherwise neither resume nor export. Each old name is the new module itself.
"""

import importlib
import importlib.abc
import importlib.util
import sys
from types import ModuleType
from typing import Optional

MOVED = {
    "godot_rl_cli.godot_env": "godot_rl_cli.game.env",
    "godot_rl_cli.spaces": "godot_rl_cli.game.spaces",
    "godot_rl_cli.onnx_export": "godot_rl_cli.onnx.recipe",
    "godot_rl_cli.rllib_onnx": "godot_rl_cli.onnx.rllib",
    "godot_rl_cli.sb3_onnx": "godot_rl_cli.onnx.sb3",
    "godot_rl_cli.rllib_callbacks": "godot_rl_cli.rllib.callbacks",
    "godot_rl_cli.rllib_config": "godot_rl_cli.rllib.config",
    "godot_rl_cli.rllib_env": "godot_rl_cli.rllib.env",
    "godot_rl_cli.rllib_setup": "godot_rl_cli.rllib.setup",
    "godot_rl_cli.sb3_callbacks": "godot_rl_cli.sb3.callbacks",
    "godot_rl_cli.sb3_inference": "godot_rl_cli.sb3.inference",
    "godot_rl_cli.sb3_options": "godot_rl_cli.sb3.options",
    "godot_rl_cli.sb3_policies": "godot_rl_cli.sb3.policies",
    "godot_rl_cli.sb3_env": "godot_rl_cli.sb3.vec_env",
    "godot_rl_cli.stop_signals": "godot_rl_cli.signals",
}


class MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports an old module name as the module that holds its code now."""

    def find_spec(self, fullname: str, path=None, target=None) -> Optional[importlib.machinery.ModuleSpec]:
        return importlib.util.spec_from_loader(fullname, self) if fullname in MOVED else None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module: ModuleType) -> None:
        """The module ran when it was imported under its own name."""


def install() -> None:
    if not any(isinstance(finder, MovedModules) for finder in sys.meta_path):
        sys.meta_path.append(MovedModules())
