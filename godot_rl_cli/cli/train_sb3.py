"""Train one policy for a Godot RL Agents game with Stable-Baselines3 (see --help and README.md).

Exit codes: 0 done or stopped by SIGINT/SIGTERM (model saved); 1 error (model saved when training
had started); 2 bad command line; 130 stopped by a second SIGINT (no save).
"""

import sys
from typing import List, Optional

from godot_rl_cli.game.errors import exit_on_setup_failure
from godot_rl_cli.game.settings import GameSettings
from godot_rl_cli.sb3.options import parse_args
from godot_rl_cli.threads import configure_torch_threads


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    threads = configure_torch_threads(args.torch_threads)
    from godot_rl_cli import metrics
    from godot_rl_cli.demos.phases import evaluate_after_training, run_demo_phases
    from godot_rl_cli.sb3 import run  # SB3 and torch: imported once the flags are good

    stopper = run.stop_on_signals()
    games = run.Games()
    with exit_on_setup_failure("Stopped before training started; nothing to save.", games.close):
        run.check_settings(args)
        games.start(args, GameSettings.from_args(args))
    run.announce(games, args.n_parallel, threads)
    manifests = run.manifests_for(args, argv, games)
    identity = metrics.run_identity(args.experiment_name)  # one run: the demo phases' lines and RL's

    outcome = run.Outcome()
    with run.failures_reported(outcome):
        model = run.model_for(args, games)
        if args.inference:
            run.infer(args, model, games, stopper)
        else:
            run_demo_phases(args, model, games, stopper, manifests, identity)  # --demo_files: BC, GAIL
            outcome.trained = model
            callbacks, outcome.evaluation = run.training_callbacks(args, games, stopper, manifests, identity)
            run.learn(args, model, games, callbacks)
            evaluate_after_training(args, model, games, stopper, identity)  # --eval_episode_count

    try:
        run.save(args, outcome, manifests)
    finally:
        games.close()
    if outcome.evaluation is not None:
        print(outcome.evaluation.summary(), flush=True)
    return outcome.exit_code


if __name__ == "__main__":
    sys.exit(main())
