"""Tune the SB3 or RLlib trainer's hyperparameters on a Godot game with Ray Tune (see --help, README.md)."""

import sys

from godot_rl_cli.cli.search import main

if __name__ == "__main__":
    sys.exit(main())
