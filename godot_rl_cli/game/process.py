"""Launching an exported game as the Godot RL Agents plugin expects, and making sure it ends.

Games are started in their own session (a SIGINT to the trainer does not reach them) with the kernel's
parent-death signal set, so they die with the thread that launched them, SIGKILL of the trainer included.
Their output goes to stdout with a `[game:<port>]` prefix, so it never starts an `@METRIC` line and stderr
keeps the suite's warnings and errors (which quote a failed game's last lines, kept here).
`stop_all_games()` and `request_stop()` are safe in signal handlers.
"""

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections import deque
from pathlib import Path
from typing import Deque, List

from godot_rl_cli.errors import UserError
from godot_rl_cli.game.errors import StopRequested, describe_exit
from godot_rl_cli.game.settings import GameSettings

GAME_SUFFIX = ".x86_64"
GAME_OUTPUT_LINES_KEPT = 20
GAME_EXIT_GRACE_S = 3.0

_running: "weakref.WeakSet[GameProcess]" = weakref.WeakSet()
_stop_requested = threading.Event()

_PR_SET_PDEATHSIG = 1
_prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here: loading libraries after fork can deadlock


def request_stop() -> None:
    """Make every pending and future wait for a game raise `StopRequested` (safe in a signal handler)."""
    _stop_requested.set()


def clear_stop_request() -> None:
    _stop_requested.clear()


def raise_if_stop_requested() -> None:
    if _stop_requested.is_set():
        raise StopRequested()


def stop_all_games() -> None:
    """End every game process this Python process started (safe in a signal handler: no socket I/O)."""
    for process in list(_running):
        process.kill()


def validate_env_path(env_path: str) -> str:
    """Return the absolute path of an exported Linux game, or raise `UserError` saying what is wrong."""
    path = Path(env_path).expanduser().absolute()
    if not path.exists():
        raise UserError(
            f"env_path {env_path} does not exist", "pass the exported game, e.g. --env_path=./MyGame.x86_64"
        )
    if path.is_dir():
        raise UserError(
            f"env_path {env_path} is a directory", f"pass the exported {GAME_SUFFIX} file inside it"
        )
    if path.suffix != GAME_SUFFIX:
        raise UserError(
            f"env_path {env_path} does not end in {GAME_SUFFIX}",
            "export the game for Linux and pass the .x86_64 file",
        )
    if not os.access(path, os.X_OK):
        raise UserError(f"env_path {env_path} is not executable", f"run: chmod +x '{path}'")
    return str(path)


def game_command(settings: GameSettings, env_path: str) -> List[str]:
    """The argv of the game `settings` describe (`env_path`: its checked path), as the Godot RL Agents plugin
    reads it."""
    command = [env_path, f"--port={settings.port}", f"--env_seed={settings.seed}"]
    if not settings.show_window:
        command += ["--disable-render-loop", "--headless"]
    if settings.framerate is not None:
        command += ["--fixed-fps", str(settings.framerate)]
    if settings.action_repeat is not None:
        command.append(f"--action_repeat={settings.action_repeat}")
    command.append(f"--speedup={settings.speedup}")
    command += [f"--{key}={value}" for key, value in settings.game_args.items()]
    return command


def _die_with_parent() -> None:
    """Runs in the game's child process before exec: the kernel kills the game when its launching thread
    dies."""
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class GameProcess:
    """One running game: its process, its relayed output and how it ended."""

    def __init__(self, command: List[str], port: int):
        self.port = port
        self.output: Deque[str] = deque(maxlen=GAME_OUTPUT_LINES_KEPT)
        try:
            self.popen = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        except OSError as error:
            raise UserError(
                f"cannot start the game {command[0]}: {error.strerror}",
                "check the file is a Linux executable",
            ) from None
        _running.add(self)
        threading.Thread(target=self._relay_output, name=f"game-output-{port}", daemon=True).start()

    def _relay_output(self) -> None:
        """Copy the game's output to stdout with a prefix, keeping its last lines for error messages."""
        assert self.popen.stdout is not None
        for raw_line in self.popen.stdout:
            line = raw_line.decode("utf-8", "replace").rstrip()
            self.output.append(line)
            try:
                sys.stdout.write(f"[game:{self.port}] {line}\n")
                sys.stdout.flush()
            except (OSError, ValueError):
                pass

    def has_exited(self) -> bool:
        return self.popen.poll() is not None

    def failure_details(self) -> List[str]:
        """How the game ended (waiting briefly for it) and its last non-blank output lines."""
        try:
            details = [describe_exit(self.popen.wait(timeout=1.0))]
        except subprocess.TimeoutExpired:
            details = ["still running"]
        time.sleep(0.05)  # let the output relay catch the last lines
        last_lines = [line for line in self.output if line.strip()][-5:]
        if last_lines:
            details.append("last output: " + " | ".join(last_lines))
        return details

    def wait_or_kill(self) -> None:
        """Give the game GAME_EXIT_GRACE_S to quit on its own (after `close`), then end it."""
        try:
            self.popen.wait(timeout=GAME_EXIT_GRACE_S)
        except subprocess.TimeoutExpired:
            self.kill()
        _running.discard(self)

    def kill(self) -> None:
        """End the game now: SIGTERM, then SIGKILL. Does no socket I/O."""
        if self.popen.poll() is not None:
            return
        self.popen.terminate()
        try:
            self.popen.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
