"""Multi-agent training of a Godot RL Agents game with Ray RLlib, from a YAML file (see --help and README.md).

The Training Controller runs this file by path; its code is godot_rl_cli/cli/train_rllib.py (also the
console command `godot-train-rllib`).
"""

from godot_rl_cli.signals import exit_cleanly_on_stop_signals

# before the other imports: a signal while they load is a clean exit
exit_cleanly_on_stop_signals(
    "nobody reads stdout any more (broken pipe): training goes on and checkpoints are saved as usual; "
    "its lines are dropped"
)

import sys

from godot_rl_cli.cli.train_rllib import main

if __name__ == "__main__":
    sys.exit(main())
