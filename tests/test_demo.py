"""demo.py: schema, flags, failure and SIGINT."""

import os
import signal
import subprocess
import time

from script_helpers import POLICY_FIELDS, metric_lines, run_script, script_command


def demo_env(**extra) -> dict:
    return dict(os.environ, CONTROLLER_METRICS="1", **extra)


def test_full_schema_for_each_policy_and_growing_counters(tmp_path):
    result = run_script(
        "demo.py", "--iterations", "6", "--interval", "0", "--policies", "3", cwd=tmp_path, env=demo_env()
    )
    assert result.returncode == 0, result.stderr
    samples = metric_lines(result.stdout)
    assert [s["training_iteration"] for s in samples] == [1, 2, 3, 4, 5, 6]
    assert all(s["kind"] == "iteration" for s in samples)
    for earlier, later in zip(samples, samples[1:], strict=False):
        assert (
            later["timesteps_total"] > earlier["timesteps_total"]
            and later["episodes_total"] > earlier["episodes_total"]
        )
    for sample in samples:
        assert set(sample["policies"]) == {"policy_1", "policy_2", "policy_3"}
        for policy in sample["policies"].values():
            assert POLICY_FIELDS <= set(policy) and policy["learner"] == policy["learner_stats"]
            assert {"policy_loss", "vf_loss", "entropy"} <= set(policy["learner"]) and policy[
                "custom_metrics"
            ]
    first, last = samples[0]["policies"]["policy_1"], samples[-1]["policies"]["policy_1"]
    assert (
        last["reward_mean"] > first["reward_mean"]
        and last["learner"]["vf_loss"] < first["learner"]["vf_loss"]
    )
    assert "Iteration 1:" in result.stdout and "WARNING: simulated warning" in result.stderr


def test_same_seed_same_numbers(tmp_path):
    runs = [
        metric_lines(
            run_script(
                "demo.py", "--iterations", "3", "--interval", "0", "--seed", "5", cwd=tmp_path, env=demo_env()
            ).stdout
        )
        for _ in range(2)
    ]
    other = metric_lines(
        run_script(
            "demo.py", "--iterations", "3", "--interval", "0", "--seed", "6", cwd=tmp_path, env=demo_env()
        ).stdout
    )

    def strip(samples):
        return [
            {k: v for k, v in s.items() if not k.startswith("time") and k not in ("env_throughput", "date")}
            for s in samples
        ]

    assert strip(runs[0]) == strip(runs[1]) != strip(other)


def test_fail_at_prints_error_and_exits_1(tmp_path):
    result = run_script(
        "demo.py", "--iterations", "10", "--interval", "0", "--fail-at", "3", cwd=tmp_path, env=demo_env()
    )
    assert result.returncode == 1
    assert len(metric_lines(result.stdout)) == 3
    assert result.stderr.strip().splitlines()[-1].startswith("ERROR:")


def test_no_metric_lines_without_controller_metrics(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "CONTROLLER_METRICS"}
    result = run_script("demo.py", "--iterations", "2", "--interval", "0", cwd=tmp_path, env=env)
    assert result.returncode == 0 and "@METRIC" not in result.stdout and "Iteration 2:" in result.stdout


def test_default_run_streams_about_ten_seconds(tmp_path):
    started = time.monotonic()
    result = run_script("demo.py", cwd=tmp_path, env=demo_env())
    elapsed = time.monotonic() - started
    assert result.returncode == 0 and len(metric_lines(result.stdout)) == 20
    assert 9 < elapsed < 20


def test_sigint_stops_promptly_with_exit_0(tmp_path):
    process = subprocess.Popen(
        script_command("demo.py", "--interval", "1"),
        cwd=tmp_path,
        env=demo_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    process.stdout.readline()
    process.send_signal(signal.SIGINT)
    started = time.monotonic()
    _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0 and time.monotonic() - started < 2
    assert "Interrupted" in stderr


def test_bad_flags_are_rejected(tmp_path):
    for flag in (["--iterations", "0"], ["--interval", "-1"], ["--policies", "x"]):
        assert run_script("demo.py", *flag, cwd=tmp_path).returncode == 2
