"""An SB3 model file read without SB3: its zip archive, opened and checked (`open_model_zip`).

The trainer's resume check (`sb3/model.py`) and the loader of the ONNX converter and playback
(`onnx/sb3.py`) both read model files through it, so it sits below both. No ML import here.
"""

import zipfile
import zlib
from pathlib import Path

from godot_rl_cli.errors import UserError

MODEL_HOW = "pass the .zip saved by the training script or by SB3's model.save()"


def open_model_zip(model_path: Path, how: str = MODEL_HOW) -> zipfile.ZipFile:
    """The model's zip archive, its members' checksums verified; UserError unless it is a readable SB3 save (a
    zip holding `data` and `policy.pth`)."""
    try:
        if not model_path.exists():
            raise UserError(f"model file {model_path} does not exist", how)
        if model_path.is_dir():
            raise UserError(f"{model_path} is a directory, not a model file", how)
        archive = zipfile.ZipFile(model_path)
    except OSError as error:
        raise UserError(
            f"cannot read {model_path} ({error.strerror or error})", "check the file's permissions"
        ) from None
    except zipfile.BadZipFile:
        raise UserError(f"{model_path} is not a Stable-Baselines3 model (not a zip file)", how) from None
    try:
        corrupt = archive.testzip()  # reads every member: a bad CRC or broken data shows here, not mid-load
    except (OSError, zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError) as error:
        corrupt = f"? ({type(error).__name__}: {error})"
    if corrupt is not None:
        archive.close()
        raise UserError(
            f"cannot read {model_path}: its zip member {corrupt} is corrupt", "the file is damaged; " + how
        )
    if not {"data", "policy.pth"} <= set(archive.namelist()):
        archive.close()
        raise UserError(
            f"{model_path} is a zip file but not a Stable-Baselines3 model (no data and policy.pth inside)",
            how,
        )
    return archive
