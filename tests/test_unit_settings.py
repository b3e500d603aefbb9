"""GameSettings (game/settings.py): from flags and from an RLlib env_config, each game's port and seed."""

import argparse

import pytest

from godot_rl_cli.errors import UserError
from godot_rl_cli.game.settings import GameSettings, add_game_arguments

pytestmark = pytest.mark.fast


def parsed(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_game_arguments(parser)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(list(argv))


def test_game_i_gets_port_and_seed_plus_i_and_only_game_0_a_window():
    settings = GameSettings(env_path="game.x86_64", port=12000, seed=7, show_window=True)
    games = [settings.for_game(index) for index in range(3)]
    assert [game.port for game in games] == [12000, 12001, 12002]
    assert [game.seed for game in games] == [7, 8, 9]
    assert [game.show_window for game in games] == [True, False, False]
    assert {game.env_path for game in games} == {"game.x86_64"}


def test_flags_in_both_spellings_and_game_args_become_settings():
    args = parsed(
        "--env-path=g.x86_64",
        "--port",
        "12000",
        "--step_timeout=5",
        "--game_arg",
        "level=2",
        "--game-arg=--x=1",
    )
    settings = GameSettings.from_args(args, seed=3)
    assert (settings.env_path, settings.port, settings.step_timeout, settings.seed) == (
        "g.x86_64",
        12000,
        5.0,
        3,
    )
    assert settings.game_args == {"level": "2", "x": "1"}


@pytest.mark.parametrize(
    "flag", ["--port=80", "--speedup=0", "--speedup=101", "--step_timeout=0", "--game_arg=novalue"]
)
def test_a_flag_out_of_range_is_a_usage_error(flag, capsys):
    with pytest.raises(SystemExit) as raised:
        parsed(flag)
    assert raised.value.code == 2
    assert flag.split("=")[0] in capsys.readouterr().err


def test_env_config_keys_are_the_field_names_and_null_keeps_the_default():
    settings = GameSettings.from_env_config(
        {"env_path": "g.x86_64", "port": 13000, "speedup": 8, "framerate": None, "game_args": {"level": 2}}
    )
    assert (settings.env_path, settings.port, settings.speedup) == ("g.x86_64", 13000, 8)
    assert settings.framerate == GameSettings().framerate
    assert settings.game_args == {"level": 2}


def test_env_config_keys_that_are_not_settings_go_to_the_game_as_arguments():
    settings = GameSettings.from_env_config({"level": 3, "game_args": {"mode": "duel"}})
    assert settings.game_args == {"level": 3, "mode": "duel"}
    assert settings.port == GameSettings().port


@pytest.mark.parametrize(
    "env_config, message",
    [
        ({"port": 80}, "env_config port 80 is not valid"),
        ({"speedup": "fast"}, "env_config speedup must be a number, not 'fast'"),
        ({"port": True}, "env_config port must be a number, not True"),
        ({"step_timeout": -1.0}, "env_config step_timeout -1.0 is not valid"),
        ({"show_window": "yes"}, "env_config show_window must be true or false, not 'yes'"),
        ({"env_path": 5}, "env_config env_path must be a path, not 5"),
        ({"game_args": ["--x=1"]}, "env_config game_args must be a mapping of --key=value arguments"),
    ],
)
def test_a_bad_env_config_value_is_a_user_error_naming_the_key(env_config, message):
    with pytest.raises(UserError) as raised:
        GameSettings.from_env_config(env_config)
    assert raised.value.what.startswith(message)
    assert "rllib_config.yaml" in raised.value.how
