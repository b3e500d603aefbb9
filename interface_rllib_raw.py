"""Watch trained RLlib policies play a Godot RL Agents game.

The Training Controller runs this file by path; its code is godot_rl_cli/cli/watch_rllib.py (also the
console command `godot-watch-rllib`).
"""

import sys

from godot_rl_cli.cli.watch_rllib import main

if __name__ == "__main__":
    sys.exit(main())
