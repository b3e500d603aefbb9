"""Convert a Stable-Baselines3 model (.zip) to an ONNX file the Godot RL Agents plugin runs (see --help).

The Training Controller runs this file by path; its code is godot_rl_cli/cli/export_sb3.py (also the
console command `godot-export-sb3`).
"""

import sys

from godot_rl_cli.cli.export_sb3 import main

if __name__ == "__main__":
    sys.exit(main())
