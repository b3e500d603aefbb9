"""in_process.run_main: a script's main run in the test process leaves the process as it found it."""

import logging
import os
import signal
import sys
import warnings
from pathlib import Path
from typing import List, Optional

import pytest
import torch
from in_process import run_main


def unruly_main(argv: Optional[List[str]] = None) -> int:
    """Changes everything a script may change, prints, then exits as exit_with_error does."""
    os.chdir("/")
    sys.argv.append("--more")
    os.environ["IN_PROCESS_PROBE"] = "set"
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.getLogger("ray").setLevel(logging.CRITICAL)
    warnings.simplefilter("ignore")
    torch.set_num_threads(torch.get_num_threads() + 1)
    print("out", argv)
    print("ERROR: bad (fix it)", file=sys.stderr)
    sys.exit(1)


def process_state() -> tuple:
    return (
        os.getcwd(),
        list(sys.argv),
        dict(os.environ),
        signal.getsignal(signal.SIGTERM),
        logging.getLogger("ray").level,
        list(warnings.filters),
        torch.get_num_threads(),
    )


@pytest.mark.fast
def test_run_main_captures_the_outcome_and_restores_the_process(tmp_path: Path):
    before = process_state()
    result = run_main(unruly_main, "script.py", "a", "b", cwd=tmp_path)
    assert result.returncode == 1
    assert (result.stdout, result.stderr) == ("out ['a', 'b']\n", "ERROR: bad (fix it)\n")
    assert process_state() == before
