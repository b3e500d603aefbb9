"""The controller's `cnn` and `grn` policy types as RLlib models: `custom_model: tui_cnn` and `tui_grn`.

The Training Controller writes `model: {custom_model: tui_cnn, channels: [...], fcnet_hiddens: [...]}` or
`model: {custom_model: tui_grn, hidden_size: N}`; rllib/config.py moves those keys into `custom_model_config`
and setup.py adds the observation's layout (`configure_model`). Both models take the flat observation
rllib/env.py builds (the game's keys flattened and concatenated in its order), so checkpoints, the ONNX
export and playback treat them as any other policy; the networks are those of the SB3 trainer's policy
types (godot_rl_cli/networks.py):
- tui_cnn: each image key (a key containing `2d`: height x width x channels) through a small 3x3 convolution
  stack, concatenated with the vector keys, then a `fcnet_hiddens` MLP each for the action distribution's
  inputs and for the value;
- tui_grn: the whole observation projected to `hidden_size`, then gated residual blocks, then linear heads.
"""

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from ray.rllib.models import ModelCatalog
from ray.rllib.models.torch.torch_modelv2 import TorchModelV2
from ray.rllib.models.utils import get_activation_fn

from godot_rl_cli.errors import UserError
from godot_rl_cli.game.protocol import is_image_key
from godot_rl_cli.networks import GRN_BLOCKS, GatedResidualBlock, small_image_cnn
from godot_rl_cli.policy_types import DEFAULT_CNN_CHANNELS, DEFAULT_GRN_HIDDEN_SIZE

Layout = Sequence[Tuple[str, Sequence[int]]]  # (key, shape) in the flat observation's order


def is_image(key: str, shape: Sequence[int]) -> bool:
    """A camera key with its height x width x channels shape."""
    return is_image_key(key) and len(shape) == 3


def _mlp(input_size: int, hidden: Sequence[int], output_size: int, activation: Any) -> torch.nn.Sequential:
    layers: List[torch.nn.Module] = []
    for width in hidden:
        layers += [torch.nn.Linear(input_size, width), activation()]
        input_size = width
    return torch.nn.Sequential(*layers, torch.nn.Linear(input_size, output_size))


class _TwoHeadModel(TorchModelV2, torch.nn.Module):
    """Features of the flat observation (`features`), then an action head and a value head."""

    def __init__(self, obs_space, action_space, num_outputs, model_config, name):
        TorchModelV2.__init__(self, obs_space, action_space, num_outputs, model_config, name)
        torch.nn.Module.__init__(self)
        self._features: Optional[torch.Tensor] = None

    def features(self, obs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, input_dict: Dict[str, torch.Tensor], state: List, seq_lens: Any):
        self._features = self.features(input_dict["obs"].float())
        return self.action_head(self._features), state

    def value_function(self) -> torch.Tensor:
        return self.value_head(self._features).squeeze(1)


class TuiCnn(_TwoHeadModel):
    def __init__(
        self,
        obs_space,
        action_space,
        num_outputs,
        model_config,
        name,
        channels: Sequence[int] = DEFAULT_CNN_CHANNELS,
        obs_layout: Layout = (),
    ):
        super().__init__(obs_space, action_space, num_outputs, model_config, name)
        self.parts: List[Tuple[int, int, Optional[Tuple[int, ...]]]] = []  # (start, end, image shape or None)
        branches, size, start = [], 0, 0
        for key, shape in obs_layout:
            end = start + int(np.prod(shape))
            image = tuple(int(s) for s in shape) if is_image(key, shape) else None
            branch = small_image_cnn(image[2], channels) if image else torch.nn.Identity()
            with torch.no_grad():
                size += (
                    branch(torch.zeros(1, image[2], image[0], image[1])).shape[1] if image else end - start
                )
            self.parts.append((start, end, image))
            branches.append(branch)
            start = end
        self.branches = torch.nn.ModuleList(branches)
        activation = get_activation_fn(model_config.get("fcnet_activation"), framework="torch")
        hidden = model_config.get("fcnet_hiddens") or []
        self.action_head = _mlp(size, hidden, num_outputs, activation)
        self.value_head = _mlp(size, hidden, 1, activation)

    def features(self, obs: torch.Tensor) -> torch.Tensor:
        parts = []
        for (start, end, image), branch in zip(self.parts, self.branches, strict=True):
            part = obs[:, start:end]
            if image:  # height x width x channels, as the game sends it, to channels first
                part = part.reshape(-1, *image).permute(0, 3, 1, 2)
            parts.append(branch(part))
        return torch.cat(parts, dim=1)


class TuiGrn(_TwoHeadModel):
    def __init__(self, *model_args: Any, hidden_size: int = DEFAULT_GRN_HIDDEN_SIZE):
        """`model_args`: RLlib's (obs_space, action_space, num_outputs, model_config, name)."""
        super().__init__(*model_args)
        self.project = torch.nn.Linear(int(np.prod(self.obs_space.shape)), hidden_size)
        self.blocks = torch.nn.Sequential(*[GatedResidualBlock(hidden_size) for _ in range(GRN_BLOCKS)])
        self.action_head = torch.nn.Linear(hidden_size, self.num_outputs)
        self.value_head = torch.nn.Linear(hidden_size, 1)

    def features(self, obs: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.project(obs))


MODELS = {"tui_cnn": TuiCnn, "tui_grn": TuiGrn}


def register_models() -> None:
    """Makes `custom_model: tui_cnn | tui_grn` known to RLlib, in training and wherever a checkpoint is
    loaded."""
    for name, model in MODELS.items():
        ModelCatalog.register_custom_model(name, model)


def configure_model(config: Any, layouts: Dict[str, Layout]) -> None:
    """Gives a `tui_cnn` model the layout of the flat observation (the same for every policy, `layouts` per
    policy); raises UserError when it cannot work."""
    model = config.model or {}
    if model.get("custom_model") != "tui_cnn":
        return
    distinct = {tuple((key, tuple(shape)) for key, shape in layout) for layout in layouts.values()}
    if len(distinct) > 1:
        raise UserError(
            "custom_model tui_cnn needs the same observation keys for every policy, and these policies' "
            "differ",
            "use one observation layout for all agents, or another policy type",
        )
    layout = next(iter(layouts.values()))
    if not any(is_image(key, shape) for key, shape in layout):
        raise UserError(
            "custom_model tui_cnn needs an image observation (a key containing '2d')",
            "add a camera sensor to the game's AIController or use the mlp policy type",
        )
    custom = dict(model.get("custom_model_config") or {})
    custom["obs_layout"] = [[key, list(shape)] for key, shape in layout]
    config.model = {**model, "custom_model_config": custom}
