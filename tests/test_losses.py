"""Policy and preference losses against hand computations (rlgen/losses.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rlgen.losses import (
    bradley_terry_loss,
    clip_fraction,
    clipped_surrogate_loss,
    masked_mean,
    normalize_advantages,
    value_loss,
)

RATIO = torch.tensor([0.5, 0.85, 1.0, 1.1, 1.3, 0.7, 1.5, 1.19], dtype=torch.float64)
ADV = torch.tensor([1.0, -2.0, 0.5, -1.0, 2.0, 1.5, -0.5, 3.0], dtype=torch.float64)
MASK = torch.tensor([1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0], dtype=torch.float64)


def _surrogate_by_cases(ratio: np.ndarray, adv: np.ndarray, clip: float) -> np.ndarray:
    """Schulman et al. 2017 eq. 7 case by case: a positive advantage gains nothing from raising the
    ratio past 1 + clip, a negative one nothing from lowering it past 1 - clip."""
    return np.where(adv >= 0, adv * np.minimum(ratio, 1 + clip), adv * np.maximum(ratio, 1 - clip))


def test_clipped_surrogate_loss_by_cases_with_and_without_a_mask():
    per_sample = _surrogate_by_cases(RATIO.numpy(), ADV.numpy(), 0.2)
    assert clipped_surrogate_loss(ADV, RATIO, 0.2).item() == pytest.approx(-per_sample.mean())
    kept = MASK.numpy() > 0
    assert clipped_surrogate_loss(ADV, RATIO, 0.2, MASK).item() == pytest.approx(-per_sample[kept].mean())


def test_clip_fraction_counts_ratios_outside_the_band():
    assert clip_fraction(RATIO, 0.2).item() == pytest.approx(4 / 8)  # 0.5, 1.3, 0.7, 1.5
    assert clip_fraction(RATIO, 0.2, MASK).item() == pytest.approx(3 / 6)  # 0.7 is masked
    assert clip_fraction(RATIO, 10.0).item() == 0.0


def test_masked_mean():
    x = torch.tensor([1.0, 2.0, 10.0])
    assert masked_mean(x).item() == pytest.approx(13 / 3)
    assert masked_mean(x, torch.tensor([1.0, 1.0, 0.0])).item() == pytest.approx(1.5)
    assert masked_mean(x, torch.zeros(3)).item() == 0.0  # nothing to average: 0, not nan


def test_value_loss_unclipped_sb3_clipped_and_pessimistic():
    values, returns, old = torch.tensor([1.0, 3.0, -1.0]), torch.tensor([2.0, 0.0, -1.0]), torch.tensor([0.0, 2.5, 0.0])
    assert value_loss(values, returns).item() == pytest.approx((1 + 9 + 0) / 3)
    # clip 0.5 around old: predictions 0.5, 3.0, -0.5
    assert value_loss(values, returns, old, 0.5).item() == pytest.approx((1.5**2 + 9 + 0.25) / 3)
    # pessimistic: the larger of (1, 2.25), (9, 9), (0, 0.25)
    assert value_loss(values, returns, old, 0.5, pessimistic=True).item() == pytest.approx((2.25 + 9 + 0.25) / 3)
    mask = torch.tensor([1.0, 0.0, 1.0])
    assert value_loss(values, returns, mask=mask).item() == pytest.approx(0.5)
    assert value_loss(values, returns, old, 0.5, mask).item() == pytest.approx((1.5**2 + 0.25) / 2)
    assert value_loss(values, returns, old, 0.5, mask, pessimistic=True).item() == pytest.approx((2.25 + 0.25) / 2)
    # a wide clip is no clip
    assert value_loss(values, returns, old, 100.0).item() == pytest.approx(value_loss(values, returns).item())


def test_normalize_advantages_sb3_form_and_masked_whitening():
    adv = torch.tensor([1.0, 2.0, 3.0, 6.0], dtype=torch.float64)
    got = normalize_advantages(adv)
    np.testing.assert_allclose(got.numpy(), (adv.numpy() - 3.0) / (np.std(adv.numpy(), ddof=1) + 1e-8))
    mask = torch.tensor([1.0, 1.0, 1.0, 0.0], dtype=torch.float64)
    white = normalize_advantages(adv, mask)
    np.testing.assert_allclose(white.numpy(), [-math.sqrt(1.5), 0.0, math.sqrt(1.5), 0.0], rtol=1e-7)  # biased var 2/3


def test_bradley_terry_loss_closed_forms():
    r_c, r_r = torch.tensor([2.0, 0.0, -1.0]), torch.tensor([0.0, 0.0, 1.0])
    expected = np.mean([math.log1p(math.exp(-d)) for d in (2.0, 0.0, -2.0)])
    assert bradley_terry_loss(r_c, r_r).item() == pytest.approx(expected, rel=1e-6)
    # swapping the labels changes the loss by the mean margin: softplus(-d) - softplus(d) = -d
    margin = (r_c - r_r).mean().item()
    assert (bradley_terry_loss(r_c, r_r) - bradley_terry_loss(r_r, r_c)).item() == pytest.approx(-margin)
    big = bradley_terry_loss(torch.tensor([-500.0]), torch.tensor([500.0]))  # no overflow
    assert big.item() == pytest.approx(1000.0)
