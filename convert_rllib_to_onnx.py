"""Convert the policies of an RLlib checkpoint to ONNX files the Godot RL Agents plugin runs (see --help).

The Training Controller runs this file by path; its code is godot_rl_cli/cli/export_rllib.py (also the
console command `godot-export-rllib`).
"""

import sys

from godot_rl_cli.cli.export_rllib import main

if __name__ == "__main__":
    sys.exit(main())
