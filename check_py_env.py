"""Report, as JSON on stdout, whether the suite's Python packages import here. Exit 0 if all do, 1 if not."""

import argparse
import json
import sys
from typing import List, Optional

from godot_rl_cli.env_check import all_available, check_environment


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, allow_abbrev=False)
    parser.add_argument(
        "--no-cache",
        dest="use_cache",
        action="store_false",
        help="import everything again instead of using the cached answer",
    )
    args = parser.parse_args(argv)

    result = check_environment(use_cache=args.use_cache)
    print(json.dumps(result, indent=2, sort_keys=True))
    return 0 if all_available(result) else 1


if __name__ == "__main__":
    sys.exit(main())
