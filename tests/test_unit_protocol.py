"""The wire protocol's pure parts: framing, decoding one message, the space messages (game/protocol.py).

Messages travel over a real socket pair in this process: no game, no subprocess.
"""

import json
import socket
from typing import Iterator, Tuple

import pytest
from gymnasium import spaces

from godot_rl_cli.game.errors import GameDiedError, GameError, GameProtocolError
from godot_rl_cli.game.protocol import (
    MAX_MESSAGE_BYTES,
    Connection,
    action_space,
    frame,
    is_image_key,
    observation_space,
)

pytestmark = pytest.mark.fast


def error(kind: type, text: str) -> GameError:
    return kind(f"test game: {text}")


@pytest.fixture
def pair() -> Iterator[Tuple[Connection, socket.socket]]:
    """(the trainer's Connection, the game's end of the socket)."""
    ours, game = socket.socketpair()
    connection = Connection(ours, step_timeout=2.0, game_exited=lambda: False, error=error)
    yield connection, game
    ours.close()
    game.close()


def test_frame_is_a_little_endian_byte_count_then_utf8():
    assert frame("") == b"\x00\x00\x00\x00"
    assert frame('{"a":1}') == b"\x07\x00\x00\x00" + b'{"a":1}'
    assert frame("é") == b"\x02\x00\x00\x00" + "é".encode()  # bytes, not characters


def test_sent_text_arrives_framed(pair):
    connection, game = pair
    connection.send(json.dumps({"type": "action", "action": [{"move": 1}]}))
    data = game.recv(1024)
    size = int.from_bytes(data[:4], "little")
    assert size == len(data) - 4
    assert json.loads(data[4:]) == {"type": "action", "action": [{"move": 1}]}


def test_message_split_across_many_sends_and_two_in_one_send(pair):
    connection, game = pair
    first, second = frame(json.dumps({"type": "reset", "obs": [1.5]})), frame('{"type": "step"}')
    for index in range(len(first)):
        game.send(first[index : index + 1])
    assert connection.receive_message("reset") == {"type": "reset", "obs": [1.5]}
    game.send(frame('{"type": "a"}') + second)
    assert connection.receive_message()["type"] == "a"
    assert connection.receive_message("step") == {"type": "step"}


def test_non_ascii_text_round_trips(pair):
    connection, game = pair
    game.send(frame(json.dumps({"type": "env_info", "name": "Ballspiel ü 日本"}, ensure_ascii=False)))
    assert connection.receive_message()["name"] == "Ballspiel ü 日本"


@pytest.mark.parametrize(
    "sent, message",
    [
        (frame("not json"), "sent invalid JSON"),
        (frame("[1, 2]"), "not a JSON object"),
        (frame('{"type": "step", "obs": [NaN]}'), "non-finite number (NaN or infinity) in 'obs'"),
        (frame('{"type": "step", "reward": [Infinity]}'), "non-finite number (NaN or infinity) in 'reward'"),
        (b"\x02\x00\x00\x00\xff\xfe", "not UTF-8"),
        ((MAX_MESSAGE_BYTES + 1).to_bytes(4, "little"), f"limit {MAX_MESSAGE_BYTES}"),
        (frame('{"type": "reset"}'), "'reset' message where 'step' was expected"),
    ],
)
def test_a_broken_message_is_a_protocol_error_naming_the_fault(pair, sent, message):
    connection, game = pair
    game.send(sent)
    with pytest.raises(GameProtocolError, match="^test game: ") as raised:
        connection.receive_message("step")
    assert message in str(raised.value)


def test_non_finite_numbers_are_tolerated_in_info_only(pair):
    connection, game = pair
    game.send(frame('{"type": "step", "obs": [0.5], "reward": [1], "info": [{"x": NaN}]}'))
    message = connection.receive_message("step")
    assert message["obs"] == [0.5] and message["info"][0]["x"] != message["info"][0]["x"]


def test_a_closed_connection_is_a_died_error(pair):
    connection, game = pair
    game.send(b"\x05\x00")
    game.close()
    with pytest.raises(GameDiedError, match="closed the connection"):
        connection.receive_message()


def test_sending_while_an_unasked_reply_waits_is_a_protocol_error(pair):
    connection, game = pair
    game.send(frame('{"type": "step"}') + frame('{"type": "step"}'))
    connection.receive_message("step")
    with pytest.raises(GameProtocolError, match="nobody asked for"):
        connection.send('{"type": "action"}')


def test_action_space_message_becomes_one_head_per_name_in_order():
    heads = action_space(
        {"move": {"size": 3, "action_type": "discrete"}, "turn": {"size": 2, "action_type": "continuous"}}
    )
    assert list(heads.keys()) == ["move", "turn"]
    assert heads["move"] == spaces.Discrete(3)
    assert heads["turn"] == spaces.Box(-1.0, 1.0, shape=(2,))
    with pytest.raises(ValueError, match="'jump'"):
        action_space({"jump": {"size": 1, "action_type": "binary"}})


def test_observation_space_message_with_image_and_discrete_keys():
    observations = observation_space(
        {
            "obs": {"size": [4], "space": "box"},
            "camera_2d": {"size": [8, 6, 3], "space": "box"},
            "phase": {"size": 5, "space": "discrete"},
        }
    )
    assert observations["obs"] == spaces.Box(-1.0, 1.0, shape=(4,), dtype="float32")
    assert observations["camera_2d"] == spaces.Box(0, 255, shape=(8, 6, 3), dtype="uint8")
    assert observations["phase"] == spaces.Discrete(5)
    with pytest.raises(ValueError, match="'sound'"):
        observation_space({"sound": {"size": [2], "space": "audio"}})


@pytest.mark.parametrize("key, image", [("camera_2d", True), ("2d", True), ("obs", False), ("pos_3d", False)])
def test_image_keys_are_those_with_2d_in_the_name(key, image):
    assert is_image_key(key) is image
