"""Simulate a training run's output, to test a consumer's streaming (the controller's `d` key).

The Training Controller runs this file by path; its code is godot_rl_cli/cli/demo_metrics.py (also the
console command `godot-demo-metrics`).
"""

import sys

from godot_rl_cli.cli.demo_metrics import main

if __name__ == "__main__":
    sys.exit(main())
