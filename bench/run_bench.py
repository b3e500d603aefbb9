"""Benchmarks of the suite on this machine, written to bench/results.md (see README, "Benchmarks").

    .venv/bin/python bench/run_bench.py --quick     # under 5 minutes
    .venv/bin/python bench/run_bench.py             # full: more agents' configurations and longer runs

Comparisons run side by side in the same process and report ratios, since absolute times drift on a
shared machine. Nothing here is asserted: the figures are for reading.
"""

import argparse
import contextlib
import datetime
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from godot_rl.wrappers.stable_baselines_wrapper import StableBaselinesGodotEnv  # noqa: E402
from stable_baselines3 import PPO  # noqa: E402
from stable_baselines3.common.callbacks import BaseCallback, CallbackList  # noqa: E402
from stable_baselines3.common.vec_env import VecMonitor  # noqa: E402

from godot_rl_cli.sb3.callbacks import ControllerMetricsCallback  # noqa: E402
from godot_rl_cli.sb3.vec_env import GodotVecEnv  # noqa: E402

BALLCHASE = str(REPO_ROOT / "examples" / "sim" / "BallChase.x86_64")
REPEATS = 2
PPO_SETTINGS = {"n_steps": 32, "ent_coef": 1e-4, "learning_rate": 3e-4, "verbose": 0}
_next_port = [31000]


def next_ports(count: int) -> int:
    port = _next_port[0]
    _next_port[0] += count + 1
    return port


class PhaseTimer(BaseCallback):
    """Splits wall time into collection (rollouts) and update (everything else, mostly `train()`)."""

    def __init__(self) -> None:
        super().__init__()
        self.collection = 0.0
        self._rollout_started = 0.0

    def _on_rollout_start(self) -> None:
        self._rollout_started = time.perf_counter()

    def _on_rollout_end(self) -> None:
        self.collection += time.perf_counter() - self._rollout_started

    def _on_step(self) -> bool:
        return True


class TimedMetricsCallback(ControllerMetricsCallback):
    """Our metrics callback, with the time spent inside it counted."""

    def __init__(self, policy_name: str) -> None:
        super().__init__(policy_name)
        self.spent = 0.0

    def _on_step(self) -> bool:
        started = time.perf_counter()
        result = super()._on_step()
        self.spent += time.perf_counter() - started
        return result

    def _on_rollout_start(self) -> None:
        started = time.perf_counter()
        super()._on_rollout_start()
        self.spent += time.perf_counter() - started

    def _on_training_end(self) -> None:
        started = time.perf_counter()
        super()._on_training_end()
        self.spent += time.perf_counter() - started


def train_timed(make_env: Callable, steps: int, ours: bool) -> Dict[str, float]:
    """PPO with Godot RL Agents' example settings; returns steps/s overall and per phase, and metric cost."""
    env = VecMonitor(make_env())
    try:
        batch = max(2, min(64, 32 * env.num_envs))
        model = PPO("MultiInputPolicy", env, batch_size=batch, **PPO_SETTINGS)
        timer = PhaseTimer()
        callbacks = [timer]
        metrics_callback = None
        if ours:
            metrics_callback = TimedMetricsCallback("shared_policy")
            callbacks.append(metrics_callback)
        os.environ["CONTROLLER_METRICS"] = "1" if ours else "0"
        started = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            model.learn(steps, callback=CallbackList(callbacks))
        total = time.perf_counter() - started
        rewards = [episode["r"] for episode in model.ep_info_buffer]
        return {
            "steps": model.num_timesteps,
            "steps_per_s": model.num_timesteps / total,
            "collection_steps_per_s": model.num_timesteps / timer.collection,
            "update_s": total - timer.collection,
            "total_s": total,
            "metrics_share": (metrics_callback.spent / total) if metrics_callback else 0.0,
            "reward_mean_last_100": float(np.mean(rewards)) if rewards else float("nan"),
        }
    finally:
        env.close()


def ours_env(n_agents: int, step_cost_ms: float, n_parallel: int = 1) -> Callable:
    def make() -> GodotVecEnv:
        return GodotVecEnv(
            BALLCHASE,
            n_parallel=n_parallel,
            port=next_ports(n_parallel),
            game_args={"n_agents": n_agents, "step_cost_ms": step_cost_ms},
        )

    return make


def godot_rl_env(n_agents: int, step_cost_ms: float, n_parallel: int = 1) -> Callable:
    def make() -> StableBaselinesGodotEnv:
        with contextlib.redirect_stdout(io.StringIO()):
            return StableBaselinesGodotEnv(
                env_path=BALLCHASE,
                n_parallel=n_parallel,
                port=next_ports(n_parallel),
                n_agents=n_agents,
                step_cost_ms=step_cost_ms,
            )

    return make


def bench_throughput(configurations: List[tuple], base_steps: int) -> List[str]:
    rows = [
        "| agents per game | step cost (ms/tick) | godot-rl steps/s | ours steps/s | ratio | godot-rl "
        "collection steps/s | ours collection steps/s | collection ratio | metrics share of wall time |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for n_agents, step_cost in configurations:
        steps = base_steps * max(4, n_agents // 4)
        theirs_runs, mine_runs = [], []
        for _ in range(REPEATS):  # alternated, best of each: drift on a shared machine hits both alike
            theirs_runs.append(train_timed(godot_rl_env(n_agents, step_cost), steps, ours=False))
            mine_runs.append(train_timed(ours_env(n_agents, step_cost), steps, ours=True))
        theirs = max(theirs_runs, key=lambda run: run["steps_per_s"])
        mine = max(mine_runs, key=lambda run: run["steps_per_s"])
        rows.append(
            f"| {n_agents} | {step_cost} | {theirs['steps_per_s']:.0f} | {mine['steps_per_s']:.0f} "
            f"| {mine['steps_per_s'] / theirs['steps_per_s']:.2f}x "
            f"| {theirs['collection_steps_per_s']:.0f} | {mine['collection_steps_per_s']:.0f} "
            f"| {mine['collection_steps_per_s'] / theirs['collection_steps_per_s']:.2f}x "
            f"| {mine['metrics_share'] * 100:.2f} % |"
        )
        print(rows[-1], flush=True)
    return rows


def bench_scaling(parallel_counts: List[int], steps: int, step_cost_ms: float) -> List[str]:
    rows = ["| n_parallel | steps/s | speed-up | efficiency vs linear |", "| --- | --- | --- | --- |"]
    base = None
    for count in parallel_counts:
        result = train_timed(ours_env(1, step_cost_ms, count), steps * count, ours=True)
        base = base or result["steps_per_s"]
        rows.append(
            f"| {count} | {result['steps_per_s']:.0f} | {result['steps_per_s'] / base:.2f}x | "
            f"{result['steps_per_s'] / base / count * 100:.0f} % |"
        )
        print(rows[-1], flush=True)
    return rows


def bench_learning(steps: int) -> List[str]:
    theirs = train_timed(godot_rl_env(4, 0), steps, ours=False)
    mine = train_timed(ours_env(4, 0), steps, ours=True)
    return [
        "| trainer | mean episode reward (last 100 episodes) | wall time (s) |",
        "| --- | --- | --- |",
        f"| godot-rl StableBaselinesGodotEnv + PPO | {theirs['reward_mean_last_100']:.1f} | "
        f"{theirs['total_s']:.1f} |",
        f"| this suite (GodotVecEnv + metrics) | {mine['reward_mean_last_100']:.1f} | "
        f"{mine['total_s']:.1f} |",
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


def bench_rllib(iterations: int) -> List[str]:
    """The shipped rllib_config.yaml (Pong, two policies): time to first iteration, seconds per iteration,
    peak memory."""
    from threading import Thread

    with tempfile.TemporaryDirectory() as directory:
        config = Path(directory) / "config.yaml"
        config.write_text(
            (REPO_ROOT / "rllib_config.yaml")
            .read_text()
            .replace("training_iteration: 50", f"training_iteration: {iterations}")
        )
        command = [
            sys.executable,
            str(REPO_ROOT / "rllib_training_script.py"),
            f"--config_file={config}",
            f"--experiment_dir={directory}",
        ]
        started = time.perf_counter()
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=dict(os.environ, CONTROLLER_METRICS="1"),
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
                first = first or time.perf_counter() - started
                per_iteration.append(sample["time_this_iter_s"])
        process.wait()
        sampler.join()
    return [
        "| figure | value |",
        "| --- | --- |",
        f"| time to first iteration (Ray start included) | {first:.1f} s |",
        f"| seconds per iteration (median of {len(per_iteration)}; 800 env steps, 2 policies) | "
        f"{np.median(per_iteration):.2f} s |",
        f"| peak memory of all processes (script, Ray, games) | {peak[0] / 2**30:.2f} GiB |",
    ]


def bench_check_py_env() -> List[str]:
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, XDG_CACHE_HOME=cache)
        timings = []
        for _ in range(3):
            started = time.perf_counter()
            subprocess.run(
                [sys.executable, str(REPO_ROOT / "check_py_env.py")],
                env=env,
                capture_output=True,
                check=False,
            )
            timings.append(time.perf_counter() - started)
    return [
        "| call | wall time (s) |",
        "| --- | --- |",
        f"| cold (empty cache) | {timings[0]:.2f} |",
        f"| warm | {min(timings[1:]):.3f} |",
    ]


def bench_onnx() -> List[str]:
    from godot_rl_cli.onnx.sb3 import export_sb3_model

    env = VecMonitor(ours_env(1, 0)())
    try:
        model = PPO("MultiInputPolicy", env, **PPO_SETTINGS)
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / "policy.onnx"
            started = time.perf_counter()
            summary = export_sb3_model(model, path)
            export_seconds = time.perf_counter() - started
            import onnxruntime

            session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            feeds = {"obs": np.zeros((1, 4), np.float32), "state_ins": np.zeros(1, np.float32)}
            onnx_seconds = _median_time(lambda: session.run(None, feeds))
            observation = {"obs": torch.zeros((1, 4))}
            with torch.no_grad():
                torch_seconds = _median_time(
                    lambda: model.policy.action_net(
                        model.policy.mlp_extractor.forward_actor(
                            model.policy.extract_features(observation, model.policy.pi_features_extractor)
                        )
                    )
                )
    finally:
        env.close()
    return [
        "| figure | value |",
        "| --- | --- |",
        f"| export + verification time | {export_seconds * 1000:.0f} ms |",
        f"| onnxruntime batch-1 latency | {onnx_seconds * 1e6:.1f} µs |",
        f"| torch forward (same graph) batch-1 latency | {torch_seconds * 1e6:.1f} µs |",
        f"| onnxruntime speed-up | {torch_seconds / onnx_seconds:.1f}x |",
        f"| max parity error (32 samples) | {summary.max_error:.2e} |",
    ]


def _median_time(function: Callable, repeats: int = 2000) -> float:
    for _ in range(50):
        function()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        samples.append(time.perf_counter() - started)
    return float(np.median(samples))


def bench_metric_delivery(samples: int) -> List[str]:
    child = (
        f"import sys, time; sys.path.insert(0, {str(REPO_ROOT)!r})\n"
        "from godot_rl_cli.metrics import emit_metric\n"
        f"for index in range({samples:d}):\n"
        "    emit_metric({'kind': 'latency', 'sent_ns': time.clock_gettime_ns(time.CLOCK_MONOTONIC)})\n"
        "    time.sleep(0.01)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", child], stdout=subprocess.PIPE, env=dict(os.environ, CONTROLLER_METRICS="1")
    )
    delays = []
    for line in process.stdout:
        received = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        delays.append((received - json.loads(line[len(b"@METRIC ") :])["sent_ns"]) / 1e6)
    process.wait()
    return [
        "| figure | value |",
        "| --- | --- |",
        f"| lines (child started without -u, stdout a pipe) | {len(delays)} |",
        f"| median emit-to-read delay | {np.median(delays):.3f} ms |",
        f"| 99th percentile | {np.percentile(delays, 99):.3f} ms |",
        f"| max | {max(delays):.3f} ms |",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs (under 5 minutes)")
    parser.add_argument(
        "--output", default=str(REPO_ROOT / "bench" / "results.md"), help="where to write the results"
    )
    args = parser.parse_args()
    quick = args.quick
    torch.set_num_threads(1)
    sb3_logs = tempfile.TemporaryDirectory(prefix="bench-sb3-logs-")
    os.environ["SB3_LOGDIR"] = (
        sb3_logs.name
    )  # SB3 otherwise makes a /tmp/SB3-<date> folder for every model without TensorBoard
    configurations = [(1, 0), (16, 0), (64, 0), (1, 0.5), (16, 0.5), (64, 0.5)]
    started = time.perf_counter()
    sections = {
        "1. SB3 throughput: this suite vs godot-rl's StableBaselinesGodotEnv + PPO (same PPO "
        "settings)": bench_throughput(configurations, 512 if quick else 2048),
        "2. Scaling over game processes (step cost 0.4 ms per physics tick, 8 ticks per step: the game is "
        "the bottleneck)": bench_scaling([1, 2, 4] if quick else [1, 2, 4, 8], 1024 if quick else 4096, 0.4),
        "3. RLlib, shipped rllib_config.yaml": bench_rllib(5 if quick else 20),
        "4. check_py_env.py": bench_check_py_env(),
        "5. ONNX export of the default PPO policy (MultiInputPolicy 64x64, obs 4, 2 continuous "
        "actions)": bench_onnx(),
        "6. Metric delivery through a pipe": bench_metric_delivery(100 if quick else 500),
        "7. Learning on BallChase (4 agents, 20,000 steps, PPO defaults)": bench_learning(20000),
    }
    mode = "quick" if quick else "full"
    lines = [
        "# Benchmark results",
        "",
        f"Command: `.venv/bin/python bench/run_bench.py{' --quick' if quick else ''}` ({mode} mode, "
        f"{time.perf_counter() - started:.0f} s)  ",
        f"Machine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}, torch "
        f"{torch.__version__} (1 thread)  ",
        f"Date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
    ]
    for title, rows in sections.items():
        lines += ["", f"## {title}", ""] + rows
    Path(args.output).write_text("\n".join(lines) + "\n")
    sb3_logs.cleanup()
    print(f"Results written to {args.output}")


if __name__ == "__main__":
    main()
