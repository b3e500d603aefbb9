"""Report, as JSON on stdout, whether the suite's Python packages import here.

Exit codes (what the Training Controller reads): 0 SB3 and RLlib usable, 2 SB3 only, 3 RLlib only,
4 neither; 1 SB3 and RLlib import but godot-rl, torch or onnx does not.
"""

import argparse
import json
import sys
from typing import List, Optional

from godot_rl_cli.env_check import check_environment, exit_code


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument(
        "--no-cache",
        dest="use_cache",
        action="store_false",
        help="import everything again instead of using the cached answer",
    )
    args = parser.parse_args(argv)

    result = check_environment(use_cache=args.use_cache)
    print(json.dumps(result, indent=2, sort_keys=True))
    return exit_code(result)


if __name__ == "__main__":
    sys.exit(main())
