"""Report, as JSON on stdout, whether the suite's Python packages import here.

The Training Controller runs this file by path; its code is godot_rl_cli/cli/check_env.py (also the
console command `godot-check-env`).
"""

import sys

from godot_rl_cli.cli.check_env import main

if __name__ == "__main__":
    sys.exit(main())
