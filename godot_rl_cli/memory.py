"""Whether a network of the requested layer sizes, or a number of env runners, fits in this machine's memory:
checked with the flags (before torch is imported) instead of failing or swapping once training starts."""

import argparse
import os
from typing import List, Optional

BYTES_PER_PARAMETER = (
    4 * 4 * 2
)  # float32 weights, gradients and Adam's two moments, for the policy and value nets
SHARE_OF_MEMORY = 0.5


def available_memory_bytes() -> Optional[int]:
    """MemAvailable from /proc/meminfo (None where there is none)."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def network_too_large(layers: List[int], kernel_area: int = 1) -> Optional[str]:
    """Why hidden layers (or conv channels, with kernels of `kernel_area`) of these sizes cannot fit, or None:
    the weights between consecutive layers alone need more than half of the memory available now."""
    parameters = sum(a * b * kernel_area for a, b in zip(layers, layers[1:])) + sum(layers)
    needed = parameters * BYTES_PER_PARAMETER
    available = available_memory_bytes()
    if available is None or needed <= available * SHARE_OF_MEMORY:
        return None
    return (
        f"layers {','.join(map(str, layers))} need about {needed / 2**30:,.1f} GiB for their weights and "
        f"optimizer, more than half of the {available / 2**30:.1f} GiB available (use smaller layers)"
    )


RUNNER_BYTES = 400 * 2**20  # an env runner: a Ray worker process with torch, and its game


def too_many_workers(count: int) -> Optional[str]:
    """Why `count` env runners cannot run here, or None."""
    available = available_memory_bytes()
    if available is None or count * RUNNER_BYTES <= available:
        return None
    return (
        f"at most {available // RUNNER_BYTES} env runners here ({count} need about "
        f"{count * RUNNER_BYTES / 2**30:.0f} GiB, {available / 2**30:.1f} GiB available)"
    )


def worker_count(text: str) -> int:
    """argparse type of --num_workers: 0 or more env runners that fit in memory."""
    count = int(text)
    problem = "is out of range [0, ∞]" if count < 0 else too_many_workers(count)
    if problem:
        raise argparse.ArgumentTypeError(f"{count} {problem}")
    return count


GPU_DEVICE_FILES = ("/dev/nvidia0", "/dev/kfd", "/dev/dxg")  # NVIDIA, AMD ROCm, WSL: what CUDA builds reach


def gpu_device_files() -> list:
    """The GPU device files this machine has: none means torch finds no CUDA device (checked without
    importing torch)."""
    return [path for path in GPU_DEVICE_FILES if os.path.exists(path)]
