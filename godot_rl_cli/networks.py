"""Torch building blocks of the controller's `cnn` and `grn` policy types, shared by both trainers (SB3's
features extractors in sb3/policies.py, RLlib's models in rllib/models.py), so a policy type is the same
network whichever trainer runs it."""

from typing import List, Sequence

import torch


def small_image_cnn(in_channels: int, channels: Sequence[int]) -> torch.nn.Sequential:
    """3x3 convolutions of stride 2 with ReLU, one per entry of `channels`, then flattened: images smaller
    than NatureCNN's 36x36 minimum work too. Takes channels-first images."""
    layers: List[torch.nn.Module] = []
    for out_channels in channels:
        layers += [
            torch.nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=2, padding=1),
            torch.nn.ReLU(),
        ]
        in_channels = out_channels
    layers.append(torch.nn.Flatten())
    return torch.nn.Sequential(*layers)


class GatedResidualBlock(torch.nn.Module):
    """x + GLU(W2 ELU(W1 x)), layer-normalised: the gated residual network block of TFT."""

    def __init__(self, width: int):
        super().__init__()
        self.hidden = torch.nn.Linear(width, width)
        self.gate = torch.nn.Linear(width, 2 * width)
        self.norm = torch.nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(
            x + torch.nn.functional.glu(self.gate(torch.nn.functional.elu(self.hidden(x))), dim=-1)
        )


GRN_BLOCKS = 2  # gated residual blocks after the projection, in both trainers
