"""How many crashed or hung games a run may relaunch (ML-Agents style: the run goes on)."""

from godot_rl_cli.errors import print_warning
from godot_rl_cli.game.errors import GameDiedError, GameError, GameHungError

# What relaunching the game can cure; a protocol error would only happen again.
RESTARTABLE_ERRORS = (GameDiedError, GameHungError)


class RestartBudget:
    """How many crashed or hung games may still be relaunched; each relaunch is announced on stderr."""

    def __init__(self, limit: int, setting: str):
        self.limit = limit
        self.setting = setting
        self.used = 0

    def spend(self, error: GameError) -> None:
        """Count one relaunch for `error`, or raise it when the budget is used up."""
        if self.used >= self.limit:
            raise error
        self.used += 1
        print_warning(f"{error}; restarting it ({self.used} of {self.setting} {self.limit})")
