"""Benchmarks of the shipped scripts as users run them, written to bench/results.md (README, "Benchmarks").

    .venv/bin/python bench/run_bench.py --quick     # 12 minutes on a busy 2-core machine
    .venv/bin/python bench/run_bench.py             # full: longer runs, the CPU hog's sections, time
                                                    # to reward for RLlib too (24 minutes, busy)
    .venv/bin/python bench/run_bench.py --only=1,5  # some sections (numbers as in results.md)

Every measured run is a subprocess started with the user's environment: our scripts, godot-rl 0.8.2's `gdrl`
console command, or a minimal standard-library client of the wire protocol that steps the same games with
random actions (the physical limit). The benchmark sets no thread variable and never imports torch.
It adds two variables that do not change speed: CONTROLLER_METRICS=1 for our scripts (the controller's way
of running them, the costlier path) and RAY_ADDRESS=local for both RLlib runs (so that `ray.init()` in gdrl
does not attach to another Ray cluster on the machine). `gdrl` picks its own ports (11008 for SB3, 11018 for
RLlib): no other run may hold them.

Throughput and rewards are measured in the game, the same way for every trainer: the benchmark launches
BallChase through a small launcher (bench/traced_game.py) that stamps every step and every finished episode
and writes them out once the game reaches a step count (or a reward); the benchmark then stops the trainer.
Steady-state rate: agent steps over the last 80 % of the stamps. Collection rate: the same, counting only
steps that follow the previous one closely (a pause over 5x the median step interval and over 5 ms is an
update). Runs are interleaved (ours, theirs, ours, ...) and the median of the repeats is reported, with
ratios, since absolute figures drift on a shared machine.
"""

import argparse
import datetime
import json
import os
import platform
import random
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

REPO_ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
GDRL = str(Path(PYTHON).parent / "gdrl")
TRACED_GAME = REPO_ROOT / "bench" / "traced_game.py"
SPEEDUP = 8
ACTION_REPEAT = 8
REWARD_THRESHOLD = 40.0  # mean return of the last 100 BallChase episodes (random play: about 2, learnt: 60)
RLLIB_SETTINGS = {  # comparable PPO settings: 3,200 agent steps per update, minibatch 128, 5 epochs
    "rollout_fragment_length": 800,  # agent steps in both RLlib runs (our count_steps_by, gdrl's vector env)
    "train_batch_size": 3200,
    "minibatch_size": 128,
    "num_epochs": 5,
    "lr": 0.0003,
    "gamma": 0.99,
    "lambda": 0.95,
    "entropy_coeff": 0.001,
    "model": {"fcnet_hiddens": [64, 64]},
}
SB3_LIKE_RLLIB = ["--n_steps=800", "--batch_size=128", "--n_epochs=5", "--ent_coef=0.001"]
GDRL_PPO = ["--n_steps=32", "--batch_size=64", "--n_epochs=10", "--ent_coef=0.0001", "--learning_rate=0.0003"]


# --- runs -------------------------------------------------------------------------------------------


@dataclass
class Trace:
    """What the games of one run recorded: step stamps (all games merged) and finished episodes."""

    n_agents: int
    stamps: List[float] = field(default_factory=list)
    episodes: List[tuple] = field(default_factory=list)
    started: float = 0.0
    wall_s: float = 0.0

    def steady_rate(self) -> float:
        """Agent steps per second over the last 80 % of the steps (learning included)."""
        window = self.stamps[len(self.stamps) // 5 :]
        return (len(window) - 1) * self.n_agents / (window[-1] - window[0])

    def collection_rate(self) -> float:
        """Agent steps per second while collecting: pauses (updates) left out."""
        window = self.stamps[len(self.stamps) // 5 :]
        gaps = [later - earlier for earlier, later in zip(window, window[1:], strict=False)]
        limit = max(5 * statistics.median(gaps), 0.005)
        kept = [gap for gap in gaps if gap <= limit]
        return len(kept) * self.n_agents / sum(kept)

    def time_to_reward(self, threshold: float) -> Optional[float]:
        """Seconds from launch until the mean of the last 100 episodes first reached `threshold`."""
        recent: List[float] = []
        for stamp, episode_return in sorted(self.episodes):
            recent = (recent + [episode_return])[-100:]
            if len(recent) == 100 and sum(recent) / 100 >= threshold:
                return stamp - self.started
        return None


def free_port_block(count: int) -> int:
    """A base port with `count` free ports after it (other runs on the machine pick their own)."""
    while True:
        base = random.randint(20000, 40000)
        try:
            for offset in range(count):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", base + offset))
            return base
        except OSError:
            continue


def make_launcher(directory: Path, n_agents: int, stop_seconds: float, stop_reward: Optional[float]) -> Path:
    """An executable game that godot-rl and our scripts start like an exported game: BallChase, traced."""
    traces = directory / "traces"
    traces.mkdir(exist_ok=True)
    launcher = directory / f"BallChase{n_agents}.x86_64"
    settings = {
        "n_agents": n_agents,
        "trace_dir": str(traces),
        "stop_seconds": stop_seconds,
        "stop_reward": stop_reward,
    }
    launcher.write_text(
        f"#!{PYTHON}\nimport runpy, sys\nsys.argv[1:1] = [{json.dumps(json.dumps(settings))}]\n"
        f"runpy.run_path({str(TRACED_GAME)!r}, run_name='__main__')\n"
    )
    launcher.chmod(0o755)
    return launcher


def read_traces(directory: Path, n_agents: int) -> Trace:
    trace = Trace(n_agents)
    for path in (directory / "traces").glob("*.json"):
        data = json.loads(path.read_text())
        trace.stamps += data["stamps"]
        trace.episodes += [tuple(episode) for episode in data["episodes"]]
    trace.stamps.sort()
    return trace


def stop_process(process: subprocess.Popen, gentle: bool) -> None:
    """SB3 runs: killed with their games. RLlib runs: Ctrl+C first, so that Ray shuts down cleanly."""
    if process.poll() is None and gentle:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
    for kill in (signal.SIGTERM, signal.SIGKILL):  # SIGTERM first: the games write their traces
        try:
            os.killpg(process.pid, kill)
        except ProcessLookupError:
            break
        time.sleep(0.5)
    process.wait()


def run_traced(
    command_for: Callable[[Path, Path], List[str]],
    *,
    n_agents: int,
    games: int,
    stop_seconds: float,
    stop_reward: Optional[float] = None,
    gentle: bool = False,
    extra_env: Optional[Dict[str, str]] = None,
    timeout_s: float = 300.0,
) -> Trace:
    """Start `command_for(directory, launcher)` and stop it once every game wrote its trace."""
    with tempfile.TemporaryDirectory(prefix="bench-") as name:
        directory = Path(name)
        launcher = make_launcher(directory, n_agents, stop_seconds, stop_reward)
        command = command_for(directory, launcher)
        started = time.perf_counter()
        with open(directory / "stderr.log", "w") as log:
            process = subprocess.Popen(
                command,
                cwd=directory,
                stdout=subprocess.DEVNULL,
                stderr=log,
                env=dict(os.environ, **(extra_env or {})),
                start_new_session=True,
            )
            deadline = started + timeout_s
            while time.perf_counter() < deadline and process.poll() is None:
                if len(list((directory / "traces").glob("*.json"))) >= games:
                    break
                time.sleep(0.1)
            wall = time.perf_counter() - started
            stop_process(process, gentle)
        trace = read_traces(directory, n_agents)
        if not trace.stamps and stop_reward is None:
            tail = (directory / "stderr.log").read_text()[-2000:]
            raise RuntimeError(f"no game steps recorded for {command}:\n{tail}")
        trace.started, trace.wall_s = started, wall
        return trace


def ours_sb3(n_parallel: int = 1, extra: Optional[List[str]] = None) -> Callable:
    def command(directory: Path, launcher: Path) -> List[str]:
        return [
            PYTHON,
            str(REPO_ROOT / "stable_baselines3_training_script.py"),
            f"--env_path={launcher}",
            f"--speedup={SPEEDUP}",
            f"--n_parallel={n_parallel}",
            f"--port={free_port_block(n_parallel)}",
            "--timesteps=100000000",
            f"--experiment_dir={directory / 'logs'}",
            *(extra or []),
        ]

    return command


def gdrl_sb3(directory: Path, launcher: Path) -> List[str]:
    return [
        GDRL,
        "--trainer=sb3",
        f"--env_path={launcher}",
        f"--speedup={SPEEDUP}",
        f"--experiment_dir={directory}",
    ]


def rllib_yaml(directory: Path, launcher: Path, settings: Dict, num_env_runners: int = 0) -> Path:
    """One YAML in the controller's shape, read by both our script and gdrl (which ignores the top keys)."""
    config = {
        "algorithm": "PPO",
        "checkpoint_frequency": 0,
        "stop": {"training_iteration": 100000},
        "config": {
            "env": "godot",
            "env_config": {
                "env_path": str(launcher),
                "speedup": SPEEDUP,
                "action_repeat": ACTION_REPEAT,
                "port": free_port_block(8),
            },
            "framework": "torch",
            "enable_rl_module_and_learner": False,
            "enable_env_runner_and_connector_v2": False,
            "num_env_runners": num_env_runners,
            "num_gpus": 0,
            **settings,
        },
    }
    path = directory / "config.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def ours_rllib(settings: Dict) -> Callable:
    def command(directory: Path, launcher: Path) -> List[str]:
        config = rllib_yaml(directory, launcher, settings)
        script = str(REPO_ROOT / "rllib_training_script.py")
        return [PYTHON, script, f"--config_file={config}", f"--experiment_dir={directory / 'logs'}"]

    return command


def gdrl_rllib(settings: Dict) -> Callable:
    def command(directory: Path, launcher: Path) -> List[str]:
        config = rllib_yaml(directory, launcher, settings)
        return [
            GDRL,
            "--trainer=rllib",
            f"--env_path={launcher}",
            f"--config_file={config}",
            f"--speedup={SPEEDUP}",
            f"--experiment_dir={directory / 'logs'}",
        ]

    return command


FULL_ONLY = {2, 4}  # the CPU hog's sections
OURS_ENV = {"CONTROLLER_METRICS": "1"}
RAY_ENV = {"RAY_ADDRESS": "local"}


def limit_client(n_agents: int, games: int, seconds: float) -> Trace:
    """The physical limit: the games stepped with random actions by a standard-library client, no learning."""

    def command(directory: Path, launcher: Path) -> List[str]:
        return [PYTHON, __file__, "--limit-client", str(launcher), str(games), str(seconds + 1)]

    return run_traced(command, n_agents=n_agents, games=games, stop_seconds=seconds)


def send(connection: socket.socket, message: Dict) -> None:
    """One message of the wire protocol (limit client)."""
    body = json.dumps(message).encode()
    connection.sendall(struct.pack("<I", len(body)) + body)


def receive(connection: socket.socket) -> Dict:
    """One message of the wire protocol (limit client); the game closing ends the client."""

    def exactly(size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = connection.recv(size - len(data))
            if not chunk:
                raise SystemExit(0)
            data += chunk
        return data

    return json.loads(exactly(struct.unpack("<I", exactly(4))[0]))


def run_limit_client(launcher: str, games: int, seconds: float) -> None:
    """Child-process body of `limit_client`: handshake, env_info, reset, then random actions."""
    port = free_port_block(games)
    servers, connections, processes = [], [], []
    for index in range(games):
        server = socket.create_server(("127.0.0.1", port + index))
        servers.append(server)
        processes.append(
            subprocess.Popen(
                [
                    launcher,
                    f"--port={port + index}",
                    f"--env_seed={index}",
                    f"--speedup={SPEEDUP}",
                    f"--action_repeat={ACTION_REPEAT}",
                ],
                stderr=subprocess.DEVNULL,
            )
        )
    for server in servers:
        connection, _ = server.accept()
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connections.append(connection)

    agents = []
    for connection in connections:
        send(connection, {"type": "handshake", "major_version": "0", "minor_version": "7"})
        send(connection, {"type": "env_info"})
        agents.append(receive(connection)["n_agents"])
        send(connection, {"type": "reset"})
        receive(connection)
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        for connection, count in zip(connections, agents, strict=True):
            actions = [{"move": [random.uniform(-1, 1), random.uniform(-1, 1)]} for _ in range(count)]
            send(connection, {"type": "action", "action": actions})
        for connection in connections:
            receive(connection)
    for connection in connections:
        send(connection, {"type": "close"})
    for process in processes:
        process.wait(timeout=10)


# --- sections -----------------------------------------------------------------------------------------


def median(values: List[float]) -> float:
    return statistics.median(values)


def verdict(ratio: float, target: float) -> str:
    if ratio >= target:
        return "PASS"
    return "within 3 % (noise)" if ratio >= target * 0.97 else "FAIL"


def interleaved(runs: Dict[str, Callable[[], Trace]], repeats: int) -> Dict[str, List[Trace]]:
    """Each run `repeats` times, in turns, so that drift on a shared machine hits all alike."""
    results: Dict[str, List[Trace]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            results[name].append(run())
    return results


def section_sb3(agent_counts: List[int], repeats: int, seconds: float) -> List[str]:
    rows = [
        "| agents per game | limit (agent steps/s) | gdrl sb3 | ours | ours / gdrl | pass (>= 1.0x) | ours "
        "collection, % of limit | pass (>= 80 % at 16+) | ours whole run, % of limit | gdrl collection, "
        "% of limit |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for n_agents in agent_counts:
        results = interleaved(
            {
                "limit": lambda n=n_agents, s=seconds: limit_client(n, 1, s),
                "ours": lambda n=n_agents, s=seconds: run_traced(
                    ours_sb3(1, GDRL_PPO), n_agents=n, games=1, stop_seconds=s, extra_env=OURS_ENV
                ),
                "gdrl": lambda n=n_agents, s=seconds: run_traced(
                    gdrl_sb3, n_agents=n, games=1, stop_seconds=s
                ),
            },
            repeats,
        )
        limit = median([trace.steady_rate() for trace in results["limit"]])
        ours = median([trace.steady_rate() for trace in results["ours"]])
        theirs = median([trace.steady_rate() for trace in results["gdrl"]])
        ours_collection = median([trace.collection_rate() for trace in results["ours"]]) / limit
        their_collection = median([trace.collection_rate() for trace in results["gdrl"]]) / limit
        ratio = ours / theirs
        collection_pass = "PASS" if ours_collection >= 0.8 else "FAIL"
        rows.append(
            f"| {n_agents} | {limit:.0f} | {theirs:.0f} | {ours:.0f} | {ratio:.2f}x | {verdict(ratio, 1.0)} "
            f"| {ours_collection * 100:.0f} % | {collection_pass if n_agents >= 16 else '-'} "
            f"| {ours / limit * 100:.0f} % | {their_collection * 100:.0f} % |"
        )
        print(rows[-1], flush=True)
    return rows


def section_parallel(counts: List[int], n_agents: int, repeats: int, seconds: float) -> List[str]:
    rows = [
        "| n_parallel | limit (agent steps/s) | ours | ours, % of limit | ours collection, % of limit "
        "| speed-up vs n_parallel 1 |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    base = None
    for games in counts:
        results = interleaved(
            {
                "limit": lambda g=games, s=seconds: limit_client(n_agents, g, s),
                "ours": lambda g=games, s=seconds: run_traced(
                    ours_sb3(g, GDRL_PPO), n_agents=n_agents, games=g, stop_seconds=s, extra_env=OURS_ENV
                ),
            },
            repeats,
        )
        limit = median([trace.steady_rate() for trace in results["limit"]])
        ours = median([trace.steady_rate() for trace in results["ours"]])
        collection = median([trace.collection_rate() for trace in results["ours"]])
        base = base or ours
        rows.append(
            f"| {games} | {limit:.0f} | {ours:.0f} | {ours / limit * 100:.0f} % "
            f"| {collection / limit * 100:.0f} % | {ours / base:.2f}x |"
        )
        print(rows[-1], flush=True)
    return rows


def rllib_run(command: Callable, seconds: float, extra_env: Dict[str, str]) -> Trace:
    """One traced RLlib run on BallChase with 4 agents in one game."""
    return run_traced(command, n_agents=4, games=1, stop_seconds=seconds, gentle=True, extra_env=extra_env)


def section_rllib(repeats: int, seconds: float) -> List[str]:
    """BallChase, 4 agents, one game: our RLlib script, gdrl's (same YAML), our SB3 script, the limit."""
    # One iteration is 3,200 agent steps (800 game steps) in every run: both RLlib runs count agent steps, and
    # SB3 collects n_steps 800 from each of the 4 agents. Rates are per agent step, measured in the game.
    results = interleaved(
        {
            "limit": lambda: limit_client(4, 1, seconds),
            "ours": lambda: rllib_run(ours_rllib(RLLIB_SETTINGS), seconds, dict(OURS_ENV, **RAY_ENV)),
            "gdrl": lambda: rllib_run(gdrl_rllib(RLLIB_SETTINGS), seconds, RAY_ENV),
            "sb3": lambda: run_traced(
                ours_sb3(1, SB3_LIKE_RLLIB), n_agents=4, games=1, stop_seconds=seconds, extra_env=OURS_ENV
            ),
        },
        repeats,
    )
    limit = median([trace.steady_rate() for trace in results["limit"]])
    rates = {name: median([trace.steady_rate() for trace in traces]) for name, traces in results.items()}
    collection = {
        name: median([trace.collection_rate() for trace in traces]) for name, traces in results.items()
    }
    ours_vs_gdrl = rates["ours"] / rates["gdrl"]
    ours_vs_sb3 = rates["ours"] / rates["sb3"]
    rows = [
        "| run | agent steps/s (whole run) | % of limit | collection, % of limit | ratio | pass |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| limit (random actions) | {limit:.0f} | 100 % | 100 % | | |",
        f"| gdrl --trainer=rllib | {rates['gdrl']:.0f} | {rates['gdrl'] / limit * 100:.0f} % "
        f"| {collection['gdrl'] / limit * 100:.0f} % | | |",
        f"| ours, rllib_training_script.py | {rates['ours']:.0f} | {rates['ours'] / limit * 100:.0f} % "
        f"| {collection['ours'] / limit * 100:.0f} % | {ours_vs_gdrl:.2f}x gdrl "
        f"| {verdict(ours_vs_gdrl, 1.0)} (>= 1.0x) |",
        f"| ours, stable_baselines3_training_script.py (n_steps 800) | {rates['sb3']:.0f} "
        f"| {rates['sb3'] / limit * 100:.0f} % | {collection['sb3'] / limit * 100:.0f} % | ours RLlib "
        f"{ours_vs_sb3:.2f}x SB3 | {verdict(ours_vs_sb3, 0.7)} (>= 0.7x) |",
    ]
    print("\n".join(rows), flush=True)
    return rows


def section_time_to_reward(seeds: int, with_rllib: bool, timeout_s: float) -> List[str]:
    """Wall time from launch until the last 100 episodes' mean return reaches REWARD_THRESHOLD (4 agents)."""
    runs: Dict[str, Callable[[], Trace]] = {}
    seed_counter = iter(range(1000))

    def traced(command: Callable, **options) -> Callable[[], Trace]:
        return lambda: run_traced(
            command,
            n_agents=4,
            games=1,
            stop_seconds=0,
            stop_reward=REWARD_THRESHOLD,
            timeout_s=timeout_s,
            **options,
        )

    def ours_seeded(directory: Path, launcher: Path) -> List[str]:
        return ours_sb3(1, [f"--seed={next(seed_counter)}"])(directory, launcher)

    runs["ours SB3 (shipped defaults)"] = traced(ours_seeded, extra_env=OURS_ENV)
    runs["gdrl --trainer=sb3"] = traced(gdrl_sb3)
    if with_rllib:
        shipped = {key: RLLIB_SETTINGS[key] for key in ("model",)}
        runs["ours RLlib (rllib_config.yaml's settings)"] = traced(
            ours_rllib(_shipped_rllib_settings() | shipped), gentle=True, extra_env=dict(OURS_ENV, **RAY_ENV)
        )
        runs["gdrl --trainer=rllib (same YAML)"] = traced(
            gdrl_rllib(_shipped_rllib_settings() | shipped), gentle=True, extra_env=RAY_ENV
        )
    results = interleaved(runs, seeds)
    rows = [
        f"| trainer | median time to mean return {REWARD_THRESHOLD:g} (s) | runs (s) | ratio vs gdrl "
        "| pass (>= 1.0x) |",
        "| --- | --- | --- | --- | --- |",
    ]
    times = {}
    for name, traces in results.items():
        reached = [trace.time_to_reward(REWARD_THRESHOLD) for trace in traces]
        times[name] = median([value if value is not None else float("inf") for value in reached])
        shown = ", ".join(f"{value:.1f}" if value is not None else f"> {timeout_s:.0f}" for value in reached)
        rows.append(f"| {name} | {_seconds(times[name], timeout_s)} | {shown} | | |")
    names = list(times)
    for ours, theirs in zip(names[::2], names[1::2], strict=True):
        index = 2 + names.index(ours)
        if times[ours] == float("inf"):
            ratio_text, passed = "-", "FAIL (ours did not reach it)"
        else:  # > 1: ours reaches the reward sooner; a lower bound when gdrl did not reach it in time
            ratio = min(times[theirs], timeout_s) / times[ours]
            bound = "> " if times[theirs] == float("inf") else ""
            ratio_text, passed = f"{bound}{ratio:.2f}x faster", verdict(ratio, 1.0)
        rows[index] = rows[index][: -len("| | |")] + f"| {ratio_text} | {passed} |"
    print("\n".join(rows), flush=True)
    return rows


def _seconds(value: float, timeout_s: float) -> str:
    return f"> {timeout_s:.0f}" if value == float("inf") else f"{value:.1f}"


def _shipped_rllib_settings() -> Dict:
    """The PPO settings of the shipped rllib_config.yaml, read from the file (Ray 2.48 names)."""
    names = {"sgd_minibatch_size": "minibatch_size", "num_sgd_iter": "num_epochs"}
    settings = {}
    for line in (REPO_ROOT / "rllib_config.yaml").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("rollout_fragment_length", "train_batch_size", "sgd_minibatch_size", "num_sgd_iter"):
            settings[names.get(key, key)] = int(value.split("#")[0])
        elif key in ("lr", "gamma", "lambda", "entropy_coeff"):
            settings[key] = float(value.split("#")[0])
    return settings


def with_cpu_hog(function: Callable[[], List[str]]) -> List[str]:
    """Run `function` while one busy loop per core competes for the CPU."""
    hogs = [subprocess.Popen([PYTHON, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)]
    try:
        return function()
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


def section_rllib_startup(iterations: int) -> List[str]:
    """The shipped rllib_config.yaml (Pong, two policies): time to first iteration, seconds per iteration,
    peak memory."""
    from threading import Thread

    with tempfile.TemporaryDirectory() as directory:
        config = Path(directory) / "config.yaml"
        config.write_text(
            (REPO_ROOT / "rllib_config.yaml")
            .read_text()
            .replace("training_iteration: 50", f"training_iteration: {iterations}")
            .replace("examples/sim/Pong.x86_64", str(REPO_ROOT / "examples" / "sim" / "Pong.x86_64"))
        )
        command = [
            PYTHON,
            str(REPO_ROOT / "rllib_training_script.py"),
            f"--config_file={config}",
            f"--experiment_dir={directory}",
        ]
        started = time.perf_counter()
        process = subprocess.Popen(
            command,
            cwd=directory,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=dict(os.environ, **OURS_ENV, **RAY_ENV),
            start_new_session=True,
        )
        peak = [0]

        def sample_memory() -> None:
            while process.poll() is None:
                peak[0] = max(peak[0], _session_rss_bytes(process.pid))
                time.sleep(0.2)

        sampler = Thread(target=sample_memory, daemon=True)
        sampler.start()
        first, per_iteration = None, []
        for line in process.stdout:
            if line.startswith("@METRIC "):
                sample = json.loads(line[len("@METRIC ") :])
                if sample.get("kind") == "iteration":
                    first = first or time.perf_counter() - started
                    per_iteration.append(sample["time_this_iter_s"])
        process.wait()
        sampler.join()
    return [
        "| figure | value | pass |",
        "| --- | --- | --- |",
        f"| time to first iteration (Ray start included) | {first:.1f} s "
        f"| {'PASS' if first < 10 else 'FAIL'} (< 10 s) |",
        f"| seconds per iteration (median of {len(per_iteration)}; 800 agent steps, 2 policies) | "
        f"{median(per_iteration):.2f} s | |",
        f"| peak memory of all processes (script, Ray, games) | {peak[0] / 2**30:.2f} GiB | |",
    ]


def _session_rss_bytes(session: int) -> int:
    total = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            if int(stat[3]) == session:
                total += int(stat[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    return total


def section_check_py_env() -> List[str]:
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, XDG_CACHE_HOME=cache)
        timings = []
        for _ in range(3):
            started = time.perf_counter()
            subprocess.run(
                [PYTHON, str(REPO_ROOT / "check_py_env.py")], env=env, capture_output=True, check=False
            )
            timings.append(time.perf_counter() - started)
    return [
        "| call | wall time (s) |",
        "| --- | --- |",
        f"| cold (empty cache) | {timings[0]:.2f} |",
        f"| warm | {min(timings[1:]):.3f} |",
    ]


def section_onnx() -> List[str]:
    """ONNX export and latency, measured in a child process (bench/onnx_probe.py) with default threads."""
    result = subprocess.run(
        [PYTHON, str(REPO_ROOT / "bench" / "onnx_probe.py")], capture_output=True, text=True, check=True
    )
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    return [
        "| figure | value |",
        "| --- | --- |",
        f"| export + verification time | {figures['export_s'] * 1000:.0f} ms |",
        f"| onnxruntime batch-1 latency | {figures['onnx_s'] * 1e6:.1f} µs |",
        f"| torch forward (same graph) batch-1 latency | {figures['torch_s'] * 1e6:.1f} µs |",
        f"| onnxruntime speed-up | {figures['torch_s'] / figures['onnx_s']:.1f}x |",
        f"| max parity error (32 samples) | {figures['max_error']:.2e} |",
    ]


def section_metric_delivery(samples: int) -> List[str]:
    child = (
        f"import sys, time; sys.path.insert(0, {str(REPO_ROOT)!r})\n"
        "from godot_rl_cli.metrics import emit_metric\n"
        f"for index in range({samples:d}):\n"
        "    emit_metric({'kind': 'latency', 'sent_ns': time.clock_gettime_ns(time.CLOCK_MONOTONIC)})\n"
        "    time.sleep(0.01)\n"
    )
    process = subprocess.Popen(
        [PYTHON, "-c", child], stdout=subprocess.PIPE, env=dict(os.environ, **OURS_ENV)
    )
    delays = []
    for line in process.stdout:
        received = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        delays.append((received - json.loads(line[len(b"@METRIC ") :])["sent_ns"]) / 1e6)
    process.wait()
    delays.sort()
    return [
        "| figure | value |",
        "| --- | --- |",
        f"| lines (child started without -u, stdout a pipe) | {len(delays)} |",
        f"| median emit-to-read delay | {median(delays):.3f} ms |",
        f"| 99th percentile | {delays[int(len(delays) * 0.99) - 1]:.3f} ms |",
        f"| max | {delays[-1]:.3f} ms |",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs, no CPU hog sections")
    parser.add_argument("--output", default=str(REPO_ROOT / "bench" / "results.md"), help="where to write")
    parser.add_argument("--only", default="", help="comma-separated section numbers to run (default: all)")
    parser.add_argument("--limit-client", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.limit_client:
        run_limit_client(args.limit_client[0], int(args.limit_client[1]), float(args.limit_client[2]))
        return
    quick = args.quick
    repeats = 3
    seconds = 2.0 if quick else 4.0
    agents = [1, 16, 64]
    sections: Dict[str, Callable[[], List[str]]] = {
        "1. SB3: our script vs `gdrl --trainer=sb3` vs the limit (one game, same PPO settings: n_steps 32, "
        "batch 64, 10 epochs)": lambda: section_sb3(agents, repeats, seconds),
        "2. The same with a CPU hog (one busy loop per core)": lambda: with_cpu_hog(
            lambda: section_sb3([16], repeats, seconds)
        ),
        "3. Our SB3 script over n_parallel games (16 agents per game; one run each; "
        "gdrl --trainer=sb3 has no n_parallel)": lambda: section_parallel([1, 2, 4], 16, 1, seconds),
        "4. The same with a CPU hog": lambda: with_cpu_hog(
            lambda: section_parallel([1, 2, 4], 16, 1, seconds)
        ),
        "5. RLlib: our script vs `gdrl --trainer=rllib` (same YAML) vs our SB3 script (BallChase, 4 agents, "
        "one game; PPO: an update every 3,200 agent steps (train_batch_size 3200, counted per agent by both "
        "RLlib scripts; SB3 n_steps 800 x 4 agents), minibatch 128, 5 epochs, 64x64)": lambda: section_rllib(
            repeats, 6 if quick else 12
        ),
        "6. Time to reward (BallChase, 4 agents, one game, each trainer's defaults)": lambda: (
            section_time_to_reward(3, with_rllib=not quick, timeout_s=30 if quick else 60)
        ),
        "7. RLlib, shipped rllib_config.yaml": lambda: section_rllib_startup(5 if quick else 20),
        "8. check_py_env.py": section_check_py_env,
        "9. ONNX export of the default PPO policy (MultiInputPolicy 64x64, obs 4, 2 continuous "
        "actions)": section_onnx,
        "10. Metric delivery through a pipe": lambda: section_metric_delivery(100 if quick else 500),
    }
    wanted = {int(number) for number in args.only.split(",") if number}
    started = time.perf_counter()
    load = os.getloadavg()[0]
    lines = []
    for title, section in sections.items():
        number = int(title.split(".")[0])
        if (wanted and number not in wanted) or (quick and not wanted and number in FULL_ONLY):
            continue
        print(f"## {title}", flush=True)
        lines += ["", f"## {title}", ""] + section()
    options = (" --quick" if quick else "") + (f" --only={args.only}" if wanted else "")
    command = f".venv/bin/python bench/run_bench.py{options}"
    header = [
        "# Benchmark results",
        "",
        f"Command: `{command}` ({time.perf_counter() - started:.0f} s)  ",
        f"Machine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"load average before the run {load:.1f}  ",
        f"Date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC  ",
        "How: every run is the shipped script or `gdrl` as a subprocess with the user's environment (see the "
        "docstring of bench/run_bench.py); rates are agent steps per second measured in the game, median of "
        "the repeats.",
    ]
    Path(args.output).write_text("\n".join(header + lines) + "\n")
    print(f"Results written to {args.output}")


if __name__ == "__main__":
    main()
