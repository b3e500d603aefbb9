"""Drive a Godot RL Agents game with random actions, to debug the game before training.

The Training Controller's Simulator tab runs this script; it works the same from a shell. Each
lifecycle event is one `@SIM_EVENT {json}` line and each step (at most 20 a second) one
`@SIM_ACTION {json}` line on stdout; see --help and README.md.
"""

import sys
from typing import List, Optional

from godot_rl_cli.play.options import add_playback_arguments, new_parser, settings_of


def build_parser():
    parser = new_parser(
        "simulator.py",
        "Drive a Godot RL Agents game with uniformly random actions (each agent's own action space), "
        "to check "
        "its observations, rewards, episode ends and stability before training. Launches the exported game "
        "given by --env-path, or waits for the Godot editor (press Play). A game that crashes or hangs is "
        "reported and restarted after --restart-delay.",
    )
    add_playback_arguments(parser)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)

    from godot_rl_cli.play.loop import run_playback
    from godot_rl_cli.play.sources import RandomActions

    settings = {**settings_of(args), "agent_type": "random"}
    return run_playback(args, "SIM", "Simulator", lambda: RandomActions(args.seed), settings)


if __name__ == "__main__":
    sys.exit(main())
