"""Drive a Godot RL Agents game with random actions, to debug the game before training.

The Training Controller runs this file by path; its code is godot_rl_cli/cli/simulate.py (also the
console command `godot-simulate`).
"""

import sys

from godot_rl_cli.cli.simulate import main

if __name__ == "__main__":
    sys.exit(main())
