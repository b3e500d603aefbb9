"""Multi-agent training of a Godot RL Agents game with Ray RLlib, from a YAML file (see --help and README.md).

The Training Controller runs this file by path; its code is godot_rl_cli/cli/train_rllib.py (also the
console command `godot-train-rllib`).
"""

import sys

from godot_rl_cli.cli.train_rllib import main

if __name__ == "__main__":
    sys.exit(main())
