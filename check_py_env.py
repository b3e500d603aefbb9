"""Report, as JSON on stdout, whether the suite's Python packages import here. Exit 0 if all do, 1 if not."""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from godot_rl_cli.env_check import all_available, check_environment  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--no-cache", dest="use_cache", action="store_false", help="import everything again instead of using the cached answer")
args = parser.parse_args()

result = check_environment(use_cache=args.use_cache)
print(json.dumps(result, indent=2, sort_keys=True))
sys.exit(0 if all_available(result) else 1)
