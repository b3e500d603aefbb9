"""Space checks and conversions (game/spaces.py): flat action spaces, actions back to `{head: value}`,
observations flattened in the game's key order."""

import numpy as np
import pytest
from gymnasium import spaces

from godot_rl_cli.errors import UserError
from godot_rl_cli.game.spaces import ActionEncoder, flat_action_space, flatten_observation

pytestmark = pytest.mark.fast


def heads(**named: spaces.Space) -> spaces.Dict:
    return spaces.Dict(named)  # sorts the names, as for the game's action space message: heads go by name


def test_one_discrete_head_is_discrete_and_several_are_multidiscrete():
    assert flat_action_space(heads(move=spaces.Discrete(3))) == spaces.Discrete(3)
    several = heads(move=spaces.Discrete(3), jump=spaces.Discrete(2))
    assert flat_action_space(several) == spaces.MultiDiscrete([2, 3])  # jump, then move


def test_continuous_heads_concatenate_into_one_unit_box():
    flat = flat_action_space(heads(move=spaces.Box(-1, 1, (2,)), turn=spaces.Box(-1, 1, (1,))))
    assert flat == spaces.Box(-1.0, 1.0, shape=(3,), dtype=np.float32)


def test_mixed_heads_are_refused_with_a_fix():
    with pytest.raises(UserError, match="mixes discrete and continuous") as raised:
        flat_action_space(heads(move=spaces.Discrete(3), turn=spaces.Box(-1, 1, (1,))))
    assert raised.value.how == "use only discrete or only continuous action heads"


def test_single_discrete_head_encodes_plain_ints():
    encoded = ActionEncoder(heads(move=spaces.Discrete(3))).encode(np.array([2, 0]))
    assert encoded == [{"move": 2}, {"move": 0}]
    assert all(type(action["move"]) is int for action in encoded)


def test_single_continuous_head_encodes_lists():
    encoded = ActionEncoder(heads(move=spaces.Box(-1, 1, (2,)))).encode(np.array([[0.5, -1.0]]))
    assert encoded == [{"move": [0.5, -1.0]}]


def test_several_heads_split_each_row_in_the_heads_order():
    encoder = ActionEncoder(heads(move=spaces.Discrete(3), jump=spaces.Discrete(2)))
    assert encoder.encode(np.array([[1, 2], [0, 0]])) == [{"jump": 1, "move": 2}, {"jump": 0, "move": 0}]
    continuous = ActionEncoder(heads(move=spaces.Box(-1, 1, (2,)), turn=spaces.Box(-1, 1, (1,))))
    assert continuous.encode(np.array([[0.1, 0.2, 0.3]], dtype=np.float64)) == [
        {"move": [0.1, 0.2], "turn": [0.3]}
    ]


def test_flat_action_space_and_encoder_agree_on_widths():
    game_heads = heads(a=spaces.Box(-1, 1, (3,)), b=spaces.Box(-1, 1, (2,)))
    sample = flat_action_space(game_heads).sample()
    (action,) = ActionEncoder(game_heads).encode(sample[None])
    assert len(action["a"]) == 3 and len(action["b"]) == 2
    assert action["a"] + action["b"] == pytest.approx(sample.tolist())


def test_observation_is_flattened_in_the_given_key_order_as_float32():
    observation = {"b": [[1, 2], [3, 4]], "a": [5.5], "c": np.uint8(7)}
    flat = flatten_observation(observation, ["b", "a", "c"])
    assert flat.dtype == np.float32
    assert flat.tolist() == [1, 2, 3, 4, 5.5, 7]
    assert flatten_observation(observation, ["a", "c", "b"]).tolist() == [5.5, 7, 1, 2, 3, 4]
