"""A trial's trainer process, forked from a server that imported the trainer's libraries once per Tune actor.

A fresh Python per trial paid the imports of torch and SB3 every time (3 to 5 s on a quiet 2-core machine,
10 s and more under load, on trials whose training takes seconds). Tune reuses a search's actors, so each
actor starts one multiprocessing forkserver that imports them once and forks every trainer from that clean,
single-threaded state. The trainer is still its own process: its own session, its own stdout/stderr files,
the script's `main` with the trial's argv, its exit code as the process's.
"""

import atexit
import importlib
import multiprocessing
import multiprocessing.connection
import os
import signal
import subprocess
import sys
import threading
from typing import Dict, List, Optional

MAINS = {"sb3": "godot_rl_cli.cli.train_sb3", "rllib": "godot_rl_cli.cli.train_rllib"}
# What the server imports before forking: what each trainer imports once its flags are good.
PRELOAD = {"sb3": ["godot_rl_cli.sb3.run", "godot_rl_cli.demos.phases"], "rllib": ["torch"]}
INTERRUPTED_EXIT = 130  # a second SIGINT, as for the script


class TrainerProcess:
    """The subprocess.Popen subset a trial uses (pid, poll, wait, send_signal, kill, returncode)."""

    def __init__(self, trainer: str, argv: List[str], env: Dict[str, str], cwd: str, outputs: List[str]):
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(PRELOAD[trainer])
        self._process = context.Process(
            target=run_trainer, args=(MAINS[trainer], argv, env, cwd, outputs), name=f"trainer {trainer}"
        )
        self._process.start()
        self.pid = self._process.pid
        self._lock = threading.Lock()  # the exit status is read once from the server: one reader at a time

    @property
    def returncode(self) -> Optional[int]:
        return self.poll()

    def poll(self) -> Optional[int]:
        with self._lock:
            return self._process.exitcode

    def wait(self, timeout: Optional[float] = None) -> int:
        multiprocessing.connection.wait([self._process.sentinel], timeout)  # join() would read the status
        code = self.poll()
        if code is None:
            raise subprocess.TimeoutExpired(self._process.name, timeout or 0)
        return code

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def kill(self) -> None:
        self._process.kill()


def run_trainer(module: str, argv: List[str], env: Dict[str, str], cwd: str, outputs: List[str]) -> None:
    """In the forked trainer: detach as `start_new_session` would, take the trial's environment, directory
    and output files, then run the script's `main` as the script does (exit code included)."""
    os.setsid()  # signals reach it from its trial only, once
    signal.pthread_sigmask(signal.SIG_SETMASK, [])  # a Ray worker blocks SIGINT; the server inherited that
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    for fd, path in zip((1, 2), outputs, strict=True):
        target = os.open(path, os.O_WRONLY | os.O_APPEND)  # the trial created it, and reads it
        os.dup2(target, fd)
        os.close(target)
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(line_buffering=True)
    from godot_rl_cli.signals import exit_cleanly_on_stop_signals

    exit_cleanly_on_stop_signals(trainer=True)
    sys.argv = [module, *argv]
    try:
        code = importlib.import_module(module).main(argv)
    except KeyboardInterrupt:
        code = INTERRUPTED_EXIT
    finally:
        atexit._run_exitfuncs()  # a forked process skips them at its exit; the script's would run them
    sys.exit(code)
