"""Tune the SB3 or RLlib trainer's hyperparameters on a Godot game with Ray Tune (see --help, README.md).

Its code is godot_rl_cli/cli/search.py (also the console command `godot-search`).
"""

from godot_rl_cli.signals import exit_cleanly_on_stop_signals

exit_cleanly_on_stop_signals(
    trainer=True
)  # before the other imports: a signal while they load is a clean exit

import sys

from godot_rl_cli.cli.search import main

if __name__ == "__main__":
    sys.exit(main())
