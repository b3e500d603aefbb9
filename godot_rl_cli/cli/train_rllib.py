"""Multi-agent training of a Godot RL Agents game with Ray RLlib, from a YAML file (see --help and README.md).

Uses RLlib's old API stack (see README, "Why the old RLlib API stack"). Exit codes: 0 done or stopped
by SIGINT/SIGTERM (final checkpoint saved); 1 error; 2 bad command line; 130 second SIGINT.
"""

import sys
from typing import List, Optional

from godot_rl_cli.game.errors import exit_on_setup_failure
from godot_rl_cli.rllib.options import build_parser
from godot_rl_cli.threads import configure_torch_threads


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    threads = configure_torch_threads(args.torch_threads)
    from godot_rl_cli.signals import StopSignals

    signals = StopSignals(
        "Stopping: saving a final checkpoint and closing the games (signal again to skip the checkpoint)"
    )
    with exit_on_setup_failure("Stopped before training started."):  # all checked before Ray starts
        from godot_rl_cli.rllib.plan import plan_run

        plan = plan_run(args)
        from godot_rl_cli.rllib import run  # imports Ray

        setup = run.configure(args, argv, plan)
    trial = run.create_trial(args.experiment_dir, plan)
    training = run.Training(plan, setup, trial, args.onnx_export_dir)
    print(f"Torch threads for the learner: {threads}", flush=True)
    run.start_ray(args.ray_address, setup.config, signals)

    with training.failures_reported():
        training.build_algo()
        training.resume()
        training.train_until_stopped(signals)
    return training.finish()


if __name__ == "__main__":
    sys.exit(main())
