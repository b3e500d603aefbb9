"""argparse types for path arguments: each checks, before anything is imported or started, that the path is
the kind of thing the argument needs, so a directory, FIFO, device, broken or looping symlink, a relative path
whose working directory is gone, or a name that would leave its folder is refused at once (a FIFO would block
the read, a broken symlink would write elsewhere). Each returns the text unchanged; the script reads it as
before. Standard library only."""

import argparse
import errno
import os
import stat
from pathlib import Path
from typing import Callable, Optional, Tuple

from godot_rl_cli.errors import exit_with_error


def _problem_with_base(text: str) -> Optional[str]:
    """Why `text` cannot be resolved at all (empty, or relative while the working directory is gone)."""
    if not text.strip():
        return "is empty"
    if not os.path.isabs(os.path.expanduser(text)):
        try:
            os.getcwd()
        except OSError:
            return "is relative, and the current directory no longer exists (cd to a folder that exists)"
    return None


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a file" if stat.S_ISREG(mode) else "not a regular file"


def _stat(path: Path) -> Optional[os.stat_result]:
    """`path`'s stat following symlinks; None if nothing is there; a broken or looping link: ValueError."""
    try:
        return path.stat()
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise ValueError("is a symbolic link loop") from None
        if path.is_symlink():
            raise ValueError(f"is a broken symbolic link (to {os.readlink(path)})") from None
        if error.errno in (errno.ENOENT, errno.ENOTDIR):
            return None
        raise ValueError(f"cannot be read ({error.strerror})") from None


def _inspect(text: str) -> Tuple[Optional[str], Optional[ValueError], Optional[os.stat_result]]:
    """What is at the path `text`: (a problem with its text or base, a broken or looping link, its stat)."""
    problem = _problem_with_base(text)
    if problem:
        return problem, None, None
    try:
        return None, None, _stat(Path(text).expanduser())
    except ValueError as error:
        return None, error, None


def problem_with_input(text: str, want_directory: bool) -> Optional[str]:
    """Why `text` is not an existing regular file (or directory), or None."""
    problem, error, info = _inspect(text)
    if problem or error:
        return problem or str(error)
    if info is None:
        return "does not exist"
    wanted = "a directory" if want_directory else "a file"
    kind = _kind(info.st_mode)
    return None if kind == wanted else f"is {kind}, not {wanted}"


def problem_with_output(text: str, want_directory: bool) -> Optional[str]:
    """Why nothing can be written at `text` (a file, or a directory created if missing), or None."""
    problem = _problem_with_base(text)
    if problem:
        return problem
    path = Path(text).expanduser()
    try:
        info = _stat(path)
    except ValueError as error:
        return f"{error}; writing there would write elsewhere" if "broken" in str(error) else str(error)
    if info is not None:
        wanted = "a directory" if want_directory else "a file"
        kind = _kind(info.st_mode)
        if kind != wanted:
            return f"is {kind}, not {wanted}"
        writable = os.access(path, os.W_OK) and (not want_directory or os.access(path, os.X_OK))
        return None if writable else "is not writable (check its permissions)"
    for folder in path.absolute().parents:
        try:
            info = _stat(folder)
        except ValueError as error:
            return f"is below {folder}, which {error}"
        if info is None:
            continue
        if not stat.S_ISDIR(info.st_mode):
            return f"is below {folder}, which is {_kind(info.st_mode)}"
        if not os.access(folder, os.W_OK | os.X_OK):
            return f"cannot be created: folder {folder} is not writable (check its permissions)"
        return None
    return None


def _argument_type(check: Callable[[str], Optional[str]], label: str, how: str) -> Callable[[str], str]:
    """An argparse type that ends the script with one `ERROR:` line (exit 1, as every other path problem) when
    `check` finds a problem, before anything else is read or started."""

    def parse(text: str) -> str:
        problem = check(text)
        if problem:
            exit_with_error(f"{label} {text} {problem}", how)
        return text

    parse.__name__ = label
    return parse


def input_file(label: str, how: str = "pass the path of an existing file") -> Callable[[str], str]:
    return _argument_type(lambda text: problem_with_input(text, False), label, how)


def input_directory(label: str, how: str = "pass the path of an existing directory") -> Callable[[str], str]:
    return _argument_type(lambda text: problem_with_input(text, True), label, how)


def output_file(
    label: str, how: str = "pass a file path in a folder you can write to"
) -> Callable[[str], str]:
    return _argument_type(lambda text: problem_with_output(text, False), label, how)


def output_directory(label: str, how: str = "pass a directory you can write to") -> Callable[[str], str]:
    return _argument_type(lambda text: problem_with_output(text, True), label, how)


def problem_with_special_file(text: str) -> Optional[str]:
    """Only what would block, loop or cannot be resolved (a FIFO, a device, a link loop, a relative path with
    the working directory gone); a missing path or a wrong file is left to the script's own check."""
    problem, error, info = _inspect(text)
    if problem or error:
        return problem or (None if "broken" in str(error) else str(error))
    if info is not None and _kind(info.st_mode) not in ("a directory", "a file"):
        return f"is {_kind(info.st_mode)}, not a file or a directory"
    return None


def output_folder(label: str) -> Callable[[str], Path]:
    """A directory to write into (cli_types.directory_path: a file in the way is a usage error, as before),
    that can be created and written."""
    from godot_rl_cli.cli_types import directory_path

    check = output_directory(label)
    return lambda text: Path(check(str(directory_path(text))))


def no_special_file(label: str, how: str) -> Callable[[str], str]:
    return _argument_type(problem_with_special_file, label, how)


def export_output(label: str) -> Callable[[str], str]:
    """An ONNX output: a file when it ends in .onnx, else a directory for the files."""
    as_file, as_directory = output_file(label), output_directory(label)
    return lambda text: as_file(text) if text.endswith(".onnx") else as_directory(text)


def model_file(text: str) -> str:
    """An SB3 model to read: `text`, or `text.zip` as SB3 saves it."""
    if not text.endswith(".zip") and problem_with_input(text, False) == "does not exist":
        if problem_with_input(text + ".zip", False) is None:
            return text
    return input_file("model file", "pass a model .zip saved by Stable-Baselines3")(text)


def plain_name(text: str) -> str:
    """A name used inside a folder (a run's name, a file prefix): no path separator and not `.` or `..`, so
    what it names stays in that folder."""
    if os.sep in text or (os.altsep and os.altsep in text) or text in (".", "..") or "\0" in text:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a plain name (no '/', '.' or '..': it names files inside the folder)"
        )
    return text


def same_file(first: str, second: str) -> bool:
    """Whether two paths name the same file (after `..`, symlinks and hard links), for an output that would
    replace an input."""
    try:
        return os.path.samefile(os.path.expanduser(first), os.path.expanduser(second))
    except OSError:
        return os.path.realpath(os.path.expanduser(first)) == os.path.realpath(os.path.expanduser(second))


def refuse_output_over_input(output: str, model: str) -> None:
    """One ERROR and exit when an output path names the input model (directly, through `..`, a symlink or a
    hard link, or as SB3's `name` for `name.zip`): writing it would destroy the model."""
    for candidate in (model, model + ".zip"):
        if os.path.exists(os.path.expanduser(candidate)) and same_file(output, candidate):
            exit_with_error(
                f"the output {output} is the model {candidate} itself: writing it would destroy the model",
                "pass another -o path, e.g. one ending in .onnx",
            )
