"""Train one policy for a Godot RL Agents game with Stable-Baselines3 (see --help and README.md).

The Training Controller runs this file by path; its code is godot_rl_cli/cli/train_sb3.py (also the
console command `godot-train-sb3`).
"""

import sys

from godot_rl_cli.cli.train_sb3 import main

if __name__ == "__main__":
    sys.exit(main())
