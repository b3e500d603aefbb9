"""Steps per second of a real Godot engine (examples/godot3/BallChase2D on godot3-server).

    .venv/bin/python bench/godot3_speed.py            # writes bench/godot3_results.md

Drives the game through the trainers' own env (GodotVecEnv) with random actions, for each
--speedup in 1, 8, 32, with and without --framerate (the engine's --fixed-fps). One game, its
default 2 players and action_repeat 8; "agent steps" count every player's step.
"""

import argparse
import datetime
import platform
import sys
from pathlib import Path
from typing import Dict, Optional

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO_ROOT), str(REPO_ROOT / "bench")]

from game_speed import random_action_rates  # noqa: E402

from godot_rl_cli.game.settings import GameSettings  # noqa: E402

GAME = str(REPO_ROOT / "examples" / "godot3" / "BallChase2D.x86_64")
SPEEDUPS = (1, 8, 32)
FRAMERATE = 2000


def measure(speedup: int, framerate: Optional[int], seconds: float, port: int) -> Dict[str, float]:
    """Random-action steps for about `seconds` after a short warm-up; returns rates per second."""
    settings = GameSettings(env_path=GAME, port=port, speedup=speedup, framerate=framerate)
    return random_action_rates(settings, seconds, warmup_steps=3)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=8.0, help="measuring time per configuration")
    parser.add_argument("--port", type=int, default=36000, help="game port (one at a time)")
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "bench" / "godot3_results.md")
    args = parser.parse_args()

    rows = []
    for framerate in (None, FRAMERATE):
        for speedup in SPEEDUPS:
            rates = measure(speedup, framerate, args.seconds, args.port)
            label = f"--framerate {framerate}" if framerate else "none (real time)"
            rows.append(f"| {speedup} | {label} | {rates['steps']:.1f} | {rates['agent_steps']:.1f} |")
            print(rows[-1], flush=True)

    lines = [
        "# Real Godot engine speed (bench/godot3_speed.py)",
        "",
        f"{datetime.date.today().isoformat()}, {platform.platform()}, {args.seconds:.0f} s per row, "
        "godot3-server 3.2.3, BallChase2D with 2 players, action_repeat 8, random actions.",
        "",
        "| --speedup | fixed frame rate | game steps/s | agent steps/s |",
        "|---|---|---|---|",
        *rows,
        "",
    ]
    args.output.write_text("\n".join(lines))
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
