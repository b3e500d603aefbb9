"""Fixtures shared by every test module. Module-specific helpers live in their own test module."""

import os
import socket
import sys
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SIM_DIR = REPO_ROOT / "examples" / "sim"
PYTHON = sys.executable
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _ports_free(start: int, count: int) -> bool:
    for port in range(start, start + count):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def find_free_port_block(count: int = 1) -> int:
    """Return the first port of `count` consecutive free loopback ports (random start, so runs don't
    collide)."""
    import random

    rng = random.Random()
    for _ in range(200):
        start = rng.randrange(20000, 60000 - count)
        if _ports_free(start, count):
            return start
    raise RuntimeError(f"no block of {count} free ports found")


@pytest.fixture(scope="session", autouse=True)
def temporary_files_in_pytest_tmp(tmp_path_factory) -> None:
    """SB3 models trained in-process without TensorBoard create SB3-<date> log folders in the temp dir: keep
    them in pytest's."""
    tempfile.tempdir = str(tmp_path_factory.mktemp("tempdir"))


@pytest.fixture
def free_port() -> int:
    """A base port with 8 free consecutive ports after it."""
    return find_free_port_block(8)


@pytest.fixture
def script_env() -> dict:
    """Environment for running a script as the controller does, with metrics on."""
    env = dict(os.environ)
    env["CONTROLLER_METRICS"] = "1"
    env.pop("PYTHONUNBUFFERED", None)
    return env


def pytest_ignore_collect(collection_path: Path, config: pytest.Config):
    """`pytest -m fast` reads only the test modules that mark tests fast: importing the end-to-end modules
    (torch, SB3, Ray) takes half a minute, for tests that would be deselected anyway."""
    if config.option.markexpr != "fast" or not collection_path.name.startswith("test_"):
        return None
    if collection_path.suffix == ".py" and "mark.fast" not in collection_path.read_text():
        return True
    return None


@pytest.fixture(scope="session")
def shipped_pong_run(tmp_path_factory):
    """pong_runs.train_shipped, once per session: tests only read it."""
    from pong_runs import train_shipped

    return train_shipped(tmp_path_factory.mktemp("shipped_pong"))


@pytest.fixture(scope="session")
def resumed_pong_run(shipped_pong_run, tmp_path_factory):
    """pong_runs.resume_shipped, once per session: tests only read it."""
    from pong_runs import resume_shipped

    return resume_shipped(shipped_pong_run, tmp_path_factory.mktemp("resumed_pong"))
