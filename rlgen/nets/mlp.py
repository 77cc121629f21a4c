"""Multilayer perceptrons, and a NumPy copy of one for fast acting on small batches."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn


class _NumpyTanh(torch.autograd.Function):
    """tanh computed by NumPy; its derivative 1 - tanh^2 from the saved output, by torch ops, so that
    gradients of gradients (gradient penalties) are right too."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        y = torch.from_numpy(np.tanh(x.detach().numpy()))
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (y,) = ctx.saved_tensors
        return torch.ops.aten.tanh_backward(grad, y)


class Tanh(nn.Tanh):
    """nn.Tanh, with NumPy's tanh on CPU. This torch's CPU tanh runs at ~0.4 G elements/s on one
    thread, NumPy's at ~4 (measured: 37.7 vs 4.2 us on 256 x 64 floats; benchmarks/speed.py), and
    a PPO update on CartPole spends a quarter of its time in it. The two agree to 1 float32 ulp."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
            return torch.tanh(x)
        return _NumpyTanh.apply(x)


ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": Tanh, "relu": nn.ReLU}


def mlp(
    in_dim: int,
    hidden: Sequence[int],
    out_dim: int,
    activation: str = "tanh",
    ortho_init: bool = False,
    out_gain: float = 1.0,
) -> nn.Sequential:
    """Linear -> act -> ... -> Linear. With `ortho_init`, hidden layers get orthogonal weights with
    gain sqrt(2) and the output layer `out_gain` (SB3/CleanRL's PPO init; Engstrom et al. 2020,
    "Implementation Matters in Deep Policy Gradients", sec. 3)."""
    dims = [in_dim, *hidden]
    layers: list[nn.Module] = []
    for a, b in zip(dims[:-1], dims[1:], strict=True):
        layers += [_init(nn.Linear(a, b), np.sqrt(2), ortho_init), ACTIVATIONS[activation]()]
    layers.append(_init(nn.Linear(dims[-1], out_dim), out_gain, ortho_init))
    return nn.Sequential(*layers)


def _init(layer: nn.Linear, gain: float, ortho: bool) -> nn.Linear:
    if ortho:
        nn.init.orthogonal_(layer.weight, gain)
        nn.init.zeros_(layer.bias)
    return layer


def numpy_forward(net: nn.Sequential) -> Callable[[np.ndarray], np.ndarray]:
    """A snapshot of `net` as a NumPy function, for acting between updates.

    Acting on a batch of 1-16 observations is dominated by torch's per-call overhead (~10 us per
    op); the same matmuls in NumPy take a few microseconds. The snapshot copies the weights, so it
    must be taken again after every update.
    """
    steps: list[Callable[[np.ndarray], np.ndarray]] = []
    for layer in net:
        if isinstance(layer, nn.Linear):
            w = layer.weight.detach().numpy().T.copy()
            b = layer.bias.detach().numpy().copy()
            steps.append(lambda x, w=w, b=b: x @ w + b)
        elif isinstance(layer, nn.Tanh):
            steps.append(np.tanh)
        elif isinstance(layer, nn.ReLU):
            steps.append(lambda x: np.maximum(x, 0.0))
        else:
            raise TypeError(f"numpy_forward does not handle {type(layer).__name__}")

    def forward(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        for step in steps:
            x = step(x)
        return x

    return forward


def flat_dim(space_shape: tuple[int, ...]) -> int:
    return int(np.prod(space_shape)) if space_shape else 1


@torch.no_grad()
def copy_params(src: nn.Module, dst: nn.Module, tau: float = 1.0) -> None:
    """dst <- tau * src + (1 - tau) * dst (tau=1: hard copy; Polyak averaging otherwise)."""
    for p_dst, p_src in zip(dst.parameters(), src.parameters(), strict=True):
        if tau == 1.0:
            p_dst.copy_(p_src)
        else:
            p_dst.lerp_(p_src, tau)
