"""The convolutional encoder deep agents put in front of their heads when observations are images.

NatureCNN is the network of Mnih et al. 2015 ("Human-level control through deep reinforcement
learning", Methods: "Model architecture"), in Stable-Baselines3's layout and with its attribute
names (stable_baselines3.common.torch_layers.NatureCNN), so that `agent=ppo` and `agent=sb3_ppo`
see images through the same network: conv 32 8x8 stride 4, conv 64 4x4 stride 2, conv 64 3x3
stride 1, a linear layer to 512 features, ReLU after each. Pixels are scaled to [0, 1], and
channel-last (H, W, C) images are transposed to channel-first as SB3's VecTransposeImage does.
"""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from rlgen.errors import UserError

CONVS = ((32, 8, 4), (64, 4, 2), (64, 3, 1))
"""(out channels, kernel, stride) of the three convolutions"""
FEATURES = 512


def is_image_space(space: gym.Space) -> bool:
    """SB3's rule (preprocessing.is_image_space, channels not checked): a 3-D uint8 Box of bounds 0..255."""
    return (isinstance(space, gym.spaces.Box) and len(space.shape) == 3 and space.dtype == np.uint8
            and bool(np.all(space.low == 0)) and bool(np.all(space.high == 255)))


def is_channels_first(shape: tuple[int, ...]) -> bool:
    """SB3's heuristic (preprocessing.is_image_space_channels_first): the channel axis is the smallest."""
    return int(np.argmin(shape)) == 0


def conv_output_size(size: int) -> int:
    """Height (or width) of the last convolution's output for an input of `size` pixels (no padding)."""
    for _, kernel, stride in CONVS:
        size = (size - kernel) // stride + 1
    return size


class NatureCNN(nn.Module):
    """Images (flat rows of H*W*C pixels, or (..., *image_shape)) -> (..., 512) features."""

    def __init__(self, image_shape: tuple[int, ...], ortho_init: bool = False):
        super().__init__()
        self.image_shape = tuple(int(n) for n in image_shape)
        self.channels_last = not is_channels_first(self.image_shape)
        c, h, w = (self.image_shape[2], *self.image_shape[:2]) if self.channels_last else self.image_shape
        if conv_output_size(h) < 1 or conv_output_size(w) < 1:
            raise UserError(f"image observations of {h}x{w} pixels are too small for NatureCNN's convolutions "
                            f"(8x8 stride 4, 4x4 stride 2, 3x3): images need at least 36x36")
        layers: list[nn.Module] = []
        for out, kernel, stride in CONVS:
            layers += [nn.Conv2d(c, out, kernel_size=kernel, stride=stride), nn.ReLU()]
            c = out
        self.cnn = nn.Sequential(*layers, nn.Flatten())
        self.linear = nn.Sequential(nn.Linear(c * conv_output_size(h) * conv_output_size(w), FEATURES), nn.ReLU())
        self.features_dim = FEATURES
        if ortho_init:  # SB3's ActorCriticPolicy gives the features extractor orthogonal weights, gain sqrt(2)
            for layer in (*self.cnn, *self.linear):
                if isinstance(layer, nn.Conv2d | nn.Linear):
                    nn.init.orthogonal_(layer.weight, np.sqrt(2))
                    nn.init.zeros_(layer.bias)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        whole_images = tuple(obs.shape[-3:]) == self.image_shape
        lead = obs.shape[:-3] if whole_images else obs.shape[:-1]
        x = obs.reshape(-1, *self.image_shape).float() / 255.0  # SB3's preprocess_obs: pixels to [0, 1]
        if self.channels_last:
            x = x.permute(0, 3, 1, 2)  # (B, H, W, C) -> (B, C, H, W)
        return self.linear(self.cnn(x)).reshape(*lead, self.features_dim)


def image_encoder(space: gym.Space, ortho_init: bool = False) -> NatureCNN | None:
    """NatureCNN for an image observation space (SB3 picks CnnPolicy's encoder by the same rule);
    None for any other space, whose flat observations go to the MLP heads as they are."""
    return NatureCNN(space.shape, ortho_init) if is_image_space(space) else None


def torch_forward(net: nn.Module) -> Callable[[np.ndarray], np.ndarray]:
    """`net` as a function of NumPy batches, without gradients: how a network with convolutions acts
    (numpy_forward covers MLPs only; on images the convolutions, not torch's per-call overhead, cost)."""

    @torch.no_grad()
    def forward(x: np.ndarray) -> np.ndarray:
        return net(torch.as_tensor(np.asarray(x))).numpy()

    return forward
