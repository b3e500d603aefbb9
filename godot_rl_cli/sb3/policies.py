"""The controller's policy-type flags (`--policy-type mlp|cnn|lstm|grn` ...) as SB3 `policy_kwargs`.

- mlp: SB3's MultiInputPolicy with `--policy-hidden-layers` as its net_arch.
- cnn: a small convolution stack per `2d` image key (`--cnn-channels`, 3x3 kernels, so images
  smaller than NatureCNN's 36x36 minimum work too), concatenated with the vector keys.
- grn: all keys flattened, then a stack of gated residual blocks of width `--grn-hidden-size`.
- lstm: refused (see LSTM_REFUSAL).
"""

from typing import Any, Dict, List

import torch
from gymnasium import spaces
from stable_baselines3.common.preprocessing import get_flattened_obs_dim, is_image_space
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

from godot_rl_cli.errors import UserError
from godot_rl_cli.game.protocol import is_image_key
from godot_rl_cli.networks import GRN_BLOCKS, GatedResidualBlock, small_image_cnn

LSTM_REFUSAL = (
    "--policy-type lstm is not supported by the SB3 trainer: Stable-Baselines3 has no recurrent policy "
    "(RecurrentPPO lives in sb3-contrib) and the Godot plugin's ONNX runner feeds a single state_ins value "
    "per call, which cannot carry an LSTM's hidden and cell state"
)


class SmallImageCNN(BaseFeaturesExtractor):
    """Conv stack per image key (channels-first, as SB3 transposes them) plus flattened vector keys."""

    def __init__(self, observation_space: spaces.Dict, cnn_channels: List[int]):
        super().__init__(observation_space, features_dim=1)
        branches: Dict[str, torch.nn.Module] = {}
        total = 0
        for key, space in observation_space.spaces.items():
            if is_image_space(space, check_channels=False, normalized_image=False):
                branch = small_image_cnn(space.shape[0], cnn_channels)
                with torch.no_grad():
                    total += branch(torch.zeros(1, *space.shape)).shape[1]
            else:
                branch = torch.nn.Flatten()
                total += get_flattened_obs_dim(space)
            branches[key] = branch
        self.branches = torch.nn.ModuleDict(branches)
        self._features_dim = total

    def forward(self, observations: Dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([branch(observations[key]) for key, branch in self.branches.items()], dim=1)


class GRNExtractor(BaseFeaturesExtractor):
    """All observation keys flattened and concatenated, projected to `hidden_size`, then GRN blocks."""

    def __init__(self, observation_space: spaces.Dict, hidden_size: int, blocks: int = GRN_BLOCKS):
        super().__init__(observation_space, features_dim=hidden_size)
        self.keys = list(observation_space.spaces)
        input_size = sum(get_flattened_obs_dim(space) for space in observation_space.spaces.values())
        self.project = torch.nn.Linear(input_size, hidden_size)
        self.blocks = torch.nn.Sequential(*[GatedResidualBlock(hidden_size) for _ in range(blocks)])

    def forward(self, observations: Dict[str, torch.Tensor]) -> torch.Tensor:
        flat = torch.cat([observations[key].flatten(start_dim=1).float() for key in self.keys], dim=1)
        return self.blocks(self.project(flat))


def check_policy_type(policy_type: str) -> None:
    """Refuse what cannot work before any game starts."""
    if policy_type == "lstm":
        raise UserError(LSTM_REFUSAL, "use --policy-type mlp, grn or cnn")


def policy_kwargs_for(
    policy_type: str,
    hidden_layers: List[int],
    observation_space: spaces.Dict,
    cnn_channels: List[int],
    grn_hidden_size: int,
) -> Dict[str, Any]:
    """`policy_kwargs` for MultiInputPolicy; raises UserError for lstm or a cnn without images."""
    check_policy_type(policy_type)
    kwargs: Dict[str, Any] = {"net_arch": list(hidden_layers)}
    if policy_type == "cnn":
        if not any(is_image_key(key) for key in observation_space.spaces):
            raise UserError(
                "--policy-type cnn needs an image observation (a key containing '2d')",
                "add a camera sensor to the game's AIController or use --policy-type mlp",
            )
        kwargs.update(
            features_extractor_class=SmallImageCNN,
            features_extractor_kwargs={"cnn_channels": list(cnn_channels)},
        )
    elif policy_type == "grn":
        kwargs.update(
            features_extractor_class=GRNExtractor, features_extractor_kwargs={"hidden_size": grn_hidden_size}
        )
    return kwargs
