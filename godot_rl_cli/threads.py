"""How many threads torch may use for the learner, chosen by the trainers themselves.

Measured on a 2-core machine with the games running beside the trainer: torch's default (one intra-op
thread per core) made an SB3 run 8-11x slower than one thread, and RLlib's learner step 7-11x slower,
because the learner's threads fight the games and Ray's workers for the same cores. The networks these
trainers build (a few 64-256 wide layers, small batches) gain nothing from more threads. So the default
is one thread; `--torch_threads N` overrides it, and so does an OMP_NUM_THREADS the user exported.
"""

import argparse
import os
from typing import Optional

from godot_rl_cli.cli_types import int_in_range

DEFAULT_THREADS = 1


def add_thread_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--torch_threads",
        "--torch-threads",
        type=int_in_range(1),
        default=None,
        metavar="N",
        help=f"torch threads for the learner (default: OMP_NUM_THREADS when set, else {DEFAULT_THREADS}, "
        "the fastest beside the games; see README)",
    )


def thread_count() -> int:
    """What the user asked for with OMP_NUM_THREADS, else DEFAULT_THREADS (also for onnxruntime sessions)."""
    try:
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    except (KeyError, ValueError):
        return DEFAULT_THREADS


def configure_torch_threads(requested: Optional[int]) -> str:
    """Set torch's intra-op threads; returns the choice and its reason for the startup summary."""
    import torch

    if requested is not None:
        torch.set_num_threads(requested)
        return f"{requested} (--torch_threads)"
    if os.environ.get("OMP_NUM_THREADS", "").strip():
        return f"{torch.get_num_threads()} (OMP_NUM_THREADS)"
    torch.set_num_threads(DEFAULT_THREADS)
    return f"{DEFAULT_THREADS} (default: fastest beside the games; --torch_threads to change)"
