"""The policies saved in an RLlib checkpoint (`policies/<id>/`): their ids, restoring one with
`Policy.from_checkpoint` (no Ray cluster needed; the controller's cnn and grn models registered first),
and exporting one to ONNX after checking it against the checkpoint's manifest.

Which checkpoint a path designates is `layout.py`'s to say; the ONNX graph is `godot_rl_cli.onnx.rllib`'s.
"""

import logging
from pathlib import Path
from typing import Any, List

import torch

from godot_rl_cli import manifest
from godot_rl_cli.errors import UserError
from godot_rl_cli.onnx import recipe
from godot_rl_cli.onnx.rllib import export_policy

POLICY_FILES = ("rllib_checkpoint.json", "policy_state.pkl")


def policy_ids(checkpoint: Path) -> List[str]:
    """The ids of the policies saved in `checkpoint/policies/`, sorted."""
    folder = checkpoint / "policies"
    try:
        ids = (
            sorted(
                entry.name
                for entry in folder.iterdir()
                if entry.is_dir() and any((entry / name).is_file() for name in POLICY_FILES)
            )
            if folder.is_dir()
            else []
        )
    except OSError as error:
        raise UserError(
            f"cannot read {error.filename or folder} ({error.strerror or error})",
            "check the directory's permissions",
        ) from None
    if not ids:
        raise UserError(
            f"checkpoint {checkpoint} holds no policies (no policies/<id>/ folders with policy_state.pkl)",
            "export a checkpoint written by rllib_training_script.py (RLlib's old API stack); the checkpoint "
            "may be incomplete",
        )
    return ids


def load_policy(checkpoint: Path, policy_id: str):
    """Restore one policy from `checkpoint/policies/<id>`; any failure is a UserError naming it."""
    from ray.rllib.policy.policy import Policy

    from godot_rl_cli.rllib.models import register_models  # imports Ray: only when a policy loads

    register_models()  # a policy of the controller's cnn or grn type names its model
    logging.getLogger("ray").setLevel(logging.ERROR)
    try:
        policy = Policy.from_checkpoint(str(checkpoint / "policies" / policy_id))
    except ImportError as error:
        raise UserError(
            f"cannot load policy {policy_id!r} from {checkpoint}: it refers to Python code that is not "
            f"importable here ({error})",
            "run the converter where the training code is importable (set PYTHONPATH)",
        ) from None
    except Exception as error:
        detail = (str(error).strip().splitlines() or [""])[0]
        raise UserError(
            f"cannot load policy {policy_id!r} from {checkpoint} ({type(error).__name__}: {detail})",
            "the checkpoint is corrupt or incomplete; export another one with --checkpoint-number",
        ) from None
    if not isinstance(policy.model, torch.nn.Module):
        raise UserError(f"policy {policy_id!r} is not a torch policy", "train with framework: torch")
    return policy


def export_checkpoint_policy(
    checkpoint: Path, policy_id: str, output_path: Path, **options: Any
) -> recipe.ExportSummary:
    """Load one policy of `checkpoint` and export it (`options`: export_policy's opset, ir_version, verify);
    refused when its spaces differ from the checkpoint's manifest."""
    policy = load_policy(checkpoint, policy_id)
    manifest.check_spaces(checkpoint, policy.observation_space, policy.action_space, policy_id)
    return export_policy(policy, policy_id, output_path, **options)
