"""Run a script's `main(argv)` in the test process, with the result `run_script` gives for a child process,
so a module that runs a script many times imports torch, Ray and RLlib once instead of once a call. Each run
starts and ends with the process as it was: working directory, sys.argv, environment, signal handlers,
logging levels, warnings filters and torch's thread count. A few subprocess tests per script keep proving the
command line itself (argv as the controller sends it, exit codes, stderr and stdout as a child writes them:
a handler that writes to the real stderr is not captured here)."""

import contextlib
import io
import logging
import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Callable, Iterator, List, Optional

SIGNALS = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2]


def _logger_levels() -> dict:
    loggers = [logging.getLogger(), *map(logging.getLogger, list(logging.root.manager.loggerDict))]
    return {logger: (logger.level, logger.disabled) for logger in loggers}


@contextlib.contextmanager
def process_state_kept() -> Iterator[None]:
    """Put back what a script's main may change in its process."""
    cwd, argv, environ = os.getcwd(), list(sys.argv), dict(os.environ)
    handlers = {number: signal.getsignal(number) for number in SIGNALS}
    levels = _logger_levels()
    torch = sys.modules.get("torch")
    threads = torch.get_num_threads() if torch else None
    with warnings.catch_warnings():
        try:
            yield
        finally:
            os.chdir(cwd)
            sys.argv[:] = argv
            os.environ.clear()
            os.environ.update(environ)
            for number, handler in handlers.items():
                signal.signal(number, handler)
            for logger, (level, disabled) in levels.items():
                logger.setLevel(level)
                logger.disabled = disabled
            if threads is not None and torch.get_num_threads() != threads:
                torch.set_num_threads(threads)


def _exit_code(stop: SystemExit, stderr: io.StringIO) -> int:
    """The exit code a child would have: sys.exit(text) prints the text and exits 1."""
    if stop.code is None or isinstance(stop.code, int):
        return stop.code or 0
    print(stop.code, file=stderr)
    return 1


def run_main(
    main: Callable[[Optional[List[str]]], int], script: str, *args: str, cwd: Path
) -> subprocess.CompletedProcess:
    """`main(args)` run in `cwd` with stdout and stderr captured, as `run_script(script, *args, cwd=cwd)`."""
    stdout, stderr = io.StringIO(), io.StringIO()
    argv = [str(arg) for arg in args]
    with process_state_kept(), contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        os.chdir(cwd)
        sys.argv[:] = [script, *argv]
        try:
            code = main(argv)
        except SystemExit as stop:
            code = _exit_code(stop, stderr)
    return subprocess.CompletedProcess([script, *argv], code, stdout.getvalue(), stderr.getvalue())
