"""The game layer: launching a Godot game, its wire protocol, its spaces, its settings and its restarts."""

from godot_rl_cli.game.env import RobustGodotEnv
from godot_rl_cli.game.errors import (
    GameConnectError,
    GameDiedError,
    GameError,
    GameHungError,
    GameProtocolError,
    StopRequested,
)
from godot_rl_cli.game.process import clear_stop_request, request_stop, stop_all_games, validate_env_path
from godot_rl_cli.game.restarts import RestartBudget
from godot_rl_cli.game.settings import GameSettings

__all__ = [
    "GameConnectError",
    "GameDiedError",
    "GameError",
    "GameHungError",
    "GameProtocolError",
    "GameSettings",
    "RestartBudget",
    "RobustGodotEnv",
    "StopRequested",
    "clear_stop_request",
    "request_stop",
    "stop_all_games",
    "validate_env_path",
]
