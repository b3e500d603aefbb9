"""Watch a trained Stable-Baselines3 policy play a Godot RL Agents game.

The Training Controller runs this file by path; its code is godot_rl_cli/cli/watch_sb3.py (also the
console command `godot-watch-sb3`).
"""

import sys

from godot_rl_cli.cli.watch_sb3 import main

if __name__ == "__main__":
    sys.exit(main())
