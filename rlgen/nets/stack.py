"""The networks of S seeds as one: a group of runs updated together (python -m rlgen.train seeds=S).

Each seed is an ordinary agent whose trainable parameters are views into one flat buffer (FlatAdam).
`Stack` lays the S buffers side by side as the rows of an (S, n) buffer, with the gradients and
Adam's moments beside them, so that

- every parameter of the members becomes one stacked tensor (S, *shape), a view into that buffer,
  and a layer of S networks one batched matrix product (torch.baddbmm) instead of S small ones;
- one Adam step over the buffer is S Adam steps (Adam is elementwise), each member keeping its own
  step count, taking a step only when it is `active` (a member whose epoch or update has ended
  waits), and clipping its gradient by its own norm.

`load` copies the members' parameters and optimiser state in (one row each), `store` copies them
back, so between updates every member is an ordinary agent again: it acts, evaluates, checkpoints
and leaves the group (a diverged seed, say) as a single run does.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import nn

from rlgen.nets.optim import FlatAdam


class Stack:
    def __init__(self, members: Sequence[FlatAdam]):
        first = members[0]
        shapes = [tuple(p.shape) for p in first.params]
        if any([tuple(p.shape) for p in m.params] != shapes for m in members):
            raise ValueError("the members of a stack must have parameters of one shape")
        self.members = list(members)
        s, n = len(members), first.data.numel()
        self.data = torch.zeros(s, n)
        self.grad = torch.zeros(s, n)
        self.exp_avg = torch.zeros(s, n)
        self.exp_avg_sq = torch.zeros(s, n)
        self.steps = torch.zeros(s, 1, dtype=torch.float64)
        self.lr, self.eps, self.beta1, self.beta2 = first.lr, first.eps, first.beta1, first.beta2
        self._of: dict[int, torch.Tensor] = {}
        offset = 0
        for p in first.params:
            k = p.numel()
            stacked = nn.Parameter(torch.empty(0))
            stacked.data = self.data[:, offset : offset + k].view(s, *p.shape)
            stacked.grad = self.grad[:, offset : offset + k].view(s, *p.shape)
            self._of[id(p)] = stacked
            offset += k
        self.load()

    def of(self, param: torch.Tensor) -> torch.Tensor:
        """The stacked (S, *shape) tensor of a parameter of the first member."""
        return self._of[id(param)]

    @torch.no_grad()
    def load(self) -> None:
        """The members' parameters and Adam state into the stack."""
        for i, m in enumerate(self.members):
            self.data[i].copy_(m.data)
            self.exp_avg[i].copy_(m.exp_avg)
            self.exp_avg_sq[i].copy_(m.exp_avg_sq)
            self.steps[i] = m.steps
        self.lr = self.members[0].lr

    @torch.no_grad()
    def store(self) -> None:
        """The stack's parameters and Adam state back into the members."""
        for i, m in enumerate(self.members):
            m.data.copy_(self.data[i])
            m.exp_avg.copy_(self.exp_avg[i])
            m.exp_avg_sq.copy_(self.exp_avg_sq[i])
            m.steps = int(self.steps[i])
            m.lr = self.lr

    def zero_grad(self) -> None:
        self.grad.zero_()

    @staticmethod
    def backward(loss: torch.Tensor) -> None:
        """loss.backward() into the stacked gradients. A member's row of a parameter is contiguous but
        the rows are a buffer's row apart, which torch's gradient accumulation warns about; it adds into
        them in place all the same, and batched products read them as fast (measured)."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="grad and param do not obey the gradient layout contract")
            loss.backward()

    def clip_grad_norm(self, max_norm: float) -> torch.Tensor:
        """Scale each member's gradient so its L2 norm is at most max_norm (FlatAdam.clip_grad_norm per
        row); returns the norms before clipping, (S,)."""
        norms = self.grad.norm(dim=1, keepdim=True)
        self.grad.mul_(torch.clamp(max_norm / (norms + 1e-6), max=1.0))
        return norms[:, 0]

    @torch.no_grad()
    def step(self, active: torch.Tensor | None = None) -> None:
        """One Adam step (FlatAdam.step) for each member, or for those `active` (S,) marks."""
        rows = None if active is None or bool(active.all()) else active.nonzero()[:, 0]
        if rows is not None and len(rows) == 0:
            return
        if rows is None:
            self.steps += 1
            data, grad, m, v, steps = self.data, self.grad, self.exp_avg, self.exp_avg_sq, self.steps
        else:
            self.steps[rows] += 1
            data, grad, m, v, steps = (t[rows] for t in (self.data, self.grad, self.exp_avg, self.exp_avg_sq,
                                                          self.steps))
        m.lerp_(grad, 1 - self.beta1)
        v.mul_(self.beta2).addcmul_(grad, grad, value=1 - self.beta2)
        bias1 = (1 - self.beta1**steps).float()
        bias2 = (1 - self.beta2**steps).float()
        denom = (v / bias2).sqrt_().add_(self.eps)
        data.addcdiv_(m, denom * bias1, value=-self.lr)
        if rows is not None:
            for whole, part in ((self.data, data), (self.exp_avg, m), (self.exp_avg_sq, v)):
                whole.index_copy_(0, rows, part)


def stacked_forward(net: nn.Sequential, stack: Stack, x: torch.Tensor) -> torch.Tensor:
    """The S members' copies of `net` (the first member's; Linear layers and activations) on x (S, B, in)
    -> (S, B, out): member i's network on x[i]."""
    for layer in net:
        if isinstance(layer, nn.Linear):
            weight, bias = stack.of(layer.weight), stack.of(layer.bias)
            x = torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))
        else:
            x = layer(x)
    return x
