"""BallChase (examples/sim) with every step and finished episode stamped, for bench/run_bench.py.

Started by a launcher that bench/run_bench.py writes, with one JSON argument first: `n_agents`,
`trace_dir`, `stop_seconds` (write the trace this long after the first step; 0: never) and `stop_reward`
(write it once the mean return of the last 100 episodes reaches this; null: never).
The trace is also written when the game exits.
The stamps are `time.perf_counter()`, the monotonic clock the benchmark shares.
"""

import atexit
import json
import os
import signal
import sys
import time
from collections import deque

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "examples", "sim"))
import godot_sim  # noqa: E402

SETTINGS = json.loads(sys.argv.pop(1))
STAMPS: list = []
EPISODES: list = []
RETURNS: dict = {}
RECENT: deque = deque(maxlen=100)
WRITTEN = [False]


def write_trace() -> None:
    if WRITTEN[0] or not STAMPS:
        return
    WRITTEN[0] = True
    path = os.path.join(SETTINGS["trace_dir"], f"{os.getpid()}.json")
    with open(path + ".tmp", "w") as file:
        json.dump({"stamps": STAMPS, "episodes": EPISODES}, file)
    os.replace(path + ".tmp", path)


def traced_step(self, actions):
    reply = original_step(self, actions)
    now = time.perf_counter()
    STAMPS.append(now)
    for index, (reward, done) in enumerate(zip(reply["reward"], reply["done"], strict=True)):
        RETURNS[index] = RETURNS.get(index, 0.0) + reward
        if done:
            EPISODES.append((now, RETURNS.pop(index)))
            RECENT.append(EPISODES[-1][1])
    if SETTINGS["stop_seconds"] and now - STAMPS[0] >= SETTINGS["stop_seconds"]:
        write_trace()
    threshold = SETTINGS["stop_reward"]
    if threshold is not None and len(RECENT) == 100 and sum(RECENT) / 100 >= threshold:
        write_trace()
    return reply


original_step = godot_sim.Runner.step
godot_sim.Runner.step = traced_step
atexit.register(write_trace)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
sys.argv.append(f"--n_agents={SETTINGS['n_agents']}")
godot_sim.main("BallChase")
