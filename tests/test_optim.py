"""FlatAdam must be Adam: the same trajectory as torch.optim.Adam, clipping included."""

import copy

import pytest
import torch
from torch import nn

from rlgen.nets.mlp import mlp
from rlgen.nets.optim import FlatAdam


@pytest.mark.parametrize("max_norm", [None, 0.5])
def test_flat_adam_matches_torch_adam(max_norm):
    torch.manual_seed(0)
    net = mlp(3, [16, 16], 2, "tanh", ortho_init=True)
    ref = copy.deepcopy(net)
    ours = FlatAdam(net.parameters(), lr=1e-2, eps=1e-5)
    theirs = torch.optim.Adam(ref.parameters(), lr=1e-2, eps=1e-5)
    x, y = torch.randn(32, 3), torch.randn(32, 2)
    for _ in range(25):
        for model, opt in ((net, ours), (ref, theirs)):
            opt.zero_grad()
            loss = ((model(x) - y) ** 2).mean()
            loss.backward()
            if max_norm is not None:
                if opt is ours:
                    ours.clip_grad_norm(max_norm)
                else:
                    nn.utils.clip_grad_norm_(ref.parameters(), max_norm)
            opt.step()
    for p, q in zip(net.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_parameters_and_gradients_are_views_of_the_flat_buffers():
    net = mlp(2, [4], 1)
    opt = FlatAdam(net.parameters(), lr=0.1)
    net(torch.ones(5, 2)).sum().backward()
    assert opt.grad.abs().sum() > 0  # backward() accumulated into the flat gradient
    before = opt.data.clone()
    opt.step()
    assert not torch.equal(before, opt.data)
    assert torch.equal(torch.cat([p.detach().reshape(-1) for p in net.parameters()]), opt.data)
    opt.zero_grad()
    assert all(p.grad.abs().sum() == 0 for p in net.parameters())


def test_state_round_trip():
    net = mlp(2, [4], 1)
    opt = FlatAdam(net.parameters(), lr=0.1)
    net(torch.ones(5, 2)).sum().backward()
    opt.step()
    state = opt.state_dict()
    other = FlatAdam(mlp(2, [4], 1).parameters(), lr=0.5)
    other.load_state_dict(state)
    assert other.steps == 1 and other.lr == 0.1
    torch.testing.assert_close(other.exp_avg, opt.exp_avg)
