"""FlatAdam must be Adam: the same trajectory as torch.optim.Adam, clipping included."""

import copy

import pytest
import torch
from torch import nn

from rlgen.nets.mlp import mlp
from rlgen.nets.optim import FlatAdam, FlatRMSprop

PAIRS = {
    "adam": (lambda ps: FlatAdam(ps, lr=1e-2, eps=1e-5), lambda ps: torch.optim.Adam(ps, lr=1e-2, eps=1e-5)),
    "rmsprop": (lambda ps: FlatRMSprop(ps, lr=1e-2, alpha=0.99, eps=1e-5),
                lambda ps: torch.optim.RMSprop(ps, lr=1e-2, alpha=0.99, eps=1e-5)),
}
"""each flat optimiser and the torch optimiser whose steps it must take"""


@pytest.mark.parametrize("kind", sorted(PAIRS))
@pytest.mark.parametrize("max_norm", [None, 0.5])
def test_flat_optimisers_match_torch(kind, max_norm):
    torch.manual_seed(0)
    net = mlp(3, [16, 16], 2, "tanh", ortho_init=True)
    ref = copy.deepcopy(net)
    make_ours, make_theirs = PAIRS[kind]
    ours, theirs = make_ours(net.parameters()), make_theirs(ref.parameters())
    x, y = torch.randn(32, 3), torch.randn(32, 2)
    for _ in range(25):
        for model, opt in ((net, ours), (ref, theirs)):
            opt.zero_grad()
            ((model(x) - y) ** 2).mean().backward()
            if max_norm is not None:
                if opt is ours:
                    ours.clip_grad_norm(max_norm)
                else:
                    nn.utils.clip_grad_norm_(ref.parameters(), max_norm)
            opt.step()
    for p, q in zip(net.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_flat_rmsprop_state_round_trips():
    net = mlp(3, [16, 16], 2)
    ours = FlatRMSprop(net.parameters(), lr=1e-2, alpha=0.99, eps=1e-5)
    for _ in range(3):
        ours.zero_grad()
        net(torch.randn(8, 3)).pow(2).mean().backward()
        ours.step()
    fresh = FlatRMSprop(mlp(3, [16, 16], 2).parameters(), lr=0.5)
    fresh.load_state_dict(ours.state_dict())
    assert torch.equal(fresh.square_avg, ours.square_avg) and fresh.steps == 3 and fresh.lr == 1e-2


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
