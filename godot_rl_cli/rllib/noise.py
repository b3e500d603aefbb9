"""Building the Algorithm without the lines Ray prints on stderr that a user of the suite cannot act on.

Each message is named here and removed alone, while the Algorithm is built (where Ray prints them); any
other warning or error still reaches stderr:
- the deprecation warnings of Ray's `UnifiedLogger` and of the three loggers it makes (JSON, CSV,
  TensorBoard): they write the trial's result.json (which the controller reads), progress.csv and
  TensorBoard files, and Ray has no replacement outside Ray Tune's trial runner;
- "Install gputil for GPU system monitoring." (RLlib's system monitor; the suite trains on the CPU);
- Ray's core worker's error that an env runner actor with restarts (`restart_failed_env_runners`) has its
  constructor arguments in the object store (RLlib puts the config there for every env runner: nothing the
  user can change). Ray's C++ core writes it to file descriptor 2 directly, so that descriptor is held in a
  temporary file during the build and copied to stderr without that line.
"""

import contextlib
import logging
import os
import re
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

UNIFIED_LOGGER_DEPRECATIONS = (
    r"(?s).*`UnifiedLogger` will be removed",
    r"(?s).*The `JsonLogger interface is deprecated",
    r"(?s).*The `CSVLogger interface is deprecated",
    r"(?s).*The `TBXLogger interface is deprecated",
)
GPUTIL_HINT = "Install gputil for GPU system monitoring."
GPUTIL_LOGGER = "ray.tune.utils.util"  # UtilMonitor's
ACTOR_ARGUMENTS_WARNING = re.compile(r"core_worker\.cc:\d+: Actor with class name: .* max_restarts > 0\.")


def build_algorithm(config: Any, trial_dir: Path) -> Any:
    """`config.build_algo()` writing RLlib's result files into `trial_dir`, without the messages above."""
    logging.getLogger(GPUTIL_LOGGER).addFilter(_drop_gputil_hint)
    with stderr_without(ACTOR_ARGUMENTS_WARNING):
        return config.build_algo(logger_creator=result_logger_creator(trial_dir))


def result_logger_creator(trial_dir: Path) -> Callable[[Any], Any]:
    """RLlib's result.json, progress.csv, params.json and TensorBoard files in `trial_dir`, through Ray's
    UnifiedLogger, its deprecation warnings filtered by their messages."""

    def create(algorithm_config: Any) -> Any:
        from ray.tune.logger import UnifiedLogger
        from ray.util.annotations import RayDeprecationWarning

        with warnings.catch_warnings():
            for message in UNIFIED_LOGGER_DEPRECATIONS:
                warnings.filterwarnings("ignore", message=message, category=RayDeprecationWarning)
            return UnifiedLogger(algorithm_config, str(trial_dir), loggers=None)

    return create


def _drop_gputil_hint(record: logging.LogRecord) -> bool:
    return record.getMessage() != GPUTIL_HINT


@contextlib.contextmanager
def stderr_without(pattern: "re.Pattern[str]") -> Iterator[None]:
    """Run the block with file descriptor 2 (Python's stderr and every library's) going to a temporary file,
    then write what it got to stderr without the lines that `pattern` matches."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode("utf-8", "replace").splitlines(keepends=True):
                if not pattern.search(line):
                    sys.stderr.write(line)
            sys.stderr.flush()
