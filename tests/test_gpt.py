"""The tiny GPT: shapes, and the causal mask (no position sees the future)."""

from __future__ import annotations

import pytest
import torch

from rlgen.nets.gpt import GPT, GPTConfig, PolicyWithValue, ScalarHead

CFG = GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=4, n_embd=32)


@pytest.fixture
def model() -> GPT:
    torch.manual_seed(0)
    return GPT(CFG).eval()


def test_shapes(model):
    idx = torch.randint(50, (3, 10))
    assert model.hidden(idx).shape == (3, 10, 32)
    assert model(idx).shape == (3, 10, 50)
    assert ScalarHead(model, 32)(idx).shape == (3, 10)
    logits, values = PolicyWithValue(model, 32)(idx)
    assert logits.shape == (3, 10, 50) and values.shape == (3, 10)


def test_a_later_token_cannot_change_earlier_logits(model):
    idx = torch.randint(50, (2, 12))
    changed = idx.clone()
    changed[:, 7] = (idx[:, 7] + 1) % 50
    with torch.no_grad():
        a, b = model(idx), model(changed)
    torch.testing.assert_close(a[:, :7], b[:, :7])
    assert (a[:, 7:] - b[:, 7:]).abs().amax() > 1e-4  # and the changed token does matter later


def test_prefix_logits_equal_logits_of_the_prefix_alone(model):
    idx = torch.randint(50, (2, 12))
    with torch.no_grad():
        torch.testing.assert_close(model(idx)[:, :5], model(idx[:, :5]))


def test_sequence_longer_than_block_size_is_rejected(model):
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, 17, dtype=torch.long))


def test_weights_are_tied_and_gradients_reach_every_parameter(model):
    assert model.lm_head.weight is model.wte.weight
    model(torch.randint(50, (2, 8))).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
