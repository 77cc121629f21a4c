"""Blackjack-v1 has no `P`: its model is derived here from the rules (infinite deck, dealer hits below
17, soft 17 stands, as Gymnasium implements them), solved by value iteration, checked against the
basic strategy of Sutton & Barto Figure 5.2, and then used as the exact answer MC control approaches."""

from __future__ import annotations

from functools import cache

import gymnasium as gym
import numpy as np
import pytest
from tabular_run import train

from rlgen.distributions import greedy_probs
from rlgen.mdp import TabularModel, evaluate_policy, value_iteration

SIZES = (32, 11, 2)  # Blackjack-v1 observation: (player sum, dealer card, usable ace)
CARDS = {c: (4 / 13 if c == 10 else 1 / 13) for c in range(1, 11)}  # 10, J, Q, K all count 10
STICK, HIT = 0, 1


def index(total: int, dealer: int, ace: int) -> int:
    return int(np.ravel_multi_index((total, dealer, ace), SIZES))


def total_of(raw: int, ace: bool) -> int:
    """Hand value: an ace counts 11 when that does not bust."""
    return raw + 10 if ace and raw + 10 <= 21 else raw


@cache
def dealer_finals(raw: int, ace: bool) -> dict[int, float]:
    """Distribution of the dealer's final total (22 = bust) from a hand of value `raw` (aces as 1)."""
    total = total_of(raw, ace)
    if total >= 17:
        return {min(total, 22): 1.0}
    out: dict[int, float] = {}
    for card, p in CARDS.items():
        for final, q in dealer_finals(raw + card, ace or card == 1).items():
            out[final] = out.get(final, 0.0) + p * q
    return out


def blackjack_model() -> TabularModel:
    """S x A x K arrays over Blackjack-v1's 704 observation indices (unreachable ones absorb).
    Sutton & Barto's natural rule (sab=True: a two-card 21 wins unless the dealer also has one) is
    left out: it only changes the value of sticking on a natural 21, which is optimal either way."""
    S, K = int(np.prod(SIZES)), 10
    nxt = np.repeat(np.arange(S)[:, None, None], 2 * K, axis=1).reshape(S, 2, K)
    probs, rewards, term = np.zeros((S, 2, K)), np.zeros((S, 2, K)), np.ones((S, 2, K), dtype=bool)
    probs[:, :, 0] = 1.0
    for d in range(1, 11):
        finals = dealer_finals(d, d == 1)
        for total in range(4, 22):
            for ace in (0, 1) if total >= 12 else (0,):
                s = index(total, d, ace)
                win = sum(p for f, p in finals.items() if f == 22 or f < total)
                lose = sum(p for f, p in finals.items() if 22 > f > total)
                probs[s, STICK, :3], rewards[s, STICK, :3] = [win, lose, 1 - win - lose], [1.0, -1.0, 0.0]
                raw = total - 10 if ace else total
                for k, (card, p) in enumerate(CARDS.items()):
                    raw2, has_ace = raw + card, bool(ace) or card == 1
                    usable = has_ace and raw2 + 10 <= 21
                    probs[s, HIT, k] = p
                    if raw2 > 21:
                        nxt[s, HIT, k], rewards[s, HIT, k] = index(raw2, d, 0), -1.0
                    else:
                        nxt[s, HIT, k], term[s, HIT, k] = index(total_of(raw2, usable), d, int(usable)), False
    initial = np.zeros(S)
    for c1, p1 in CARDS.items():
        for c2, p2 in CARDS.items():
            raw, ace = c1 + c2, c1 == 1 or c2 == 1
            usable = ace and raw + 10 <= 21
            for d, pd in CARDS.items():
                initial[index(total_of(raw, usable), d, int(usable))] += p1 * p2 * pd
    return TabularModel(nxt, probs, rewards, term, initial)


def decision_states() -> np.ndarray:
    """The 200 states of Figure 5.2: player 12..21, dealer A..10, with and without a usable ace."""
    return np.array([index(t, d, a) for a in (0, 1) for t in range(12, 22) for d in range(1, 11)])


@pytest.fixture(scope="module")
def solved():
    model = blackjack_model()
    v, _ = value_iteration(model, gamma=1.0, tol=1e-12)
    return model, v, model.q_from_v(v, 1.0)


def test_model_rows_are_distributions(solved):
    model, _, _ = solved
    np.testing.assert_allclose(model.probs.sum(axis=2), 1.0)
    assert model.initial.sum() == pytest.approx(1.0)


def test_dp_reproduces_the_basic_strategy_of_figure_5_2(solved):
    _, _, q = solved
    hit = q[:, HIT] > q[:, STICK] + 1e-12
    # no usable ace: stick from 17; 13-16 stick against a dealer 2-6; 12 sticks against 4-6
    for total in range(12, 22):
        for d in range(1, 11):
            expected = total <= 16 and not (total >= 13 and 2 <= d <= 6 or total == 12 and 4 <= d <= 6)
            assert hit[index(total, d, 0)] == expected, (total, d)
    # usable ace: hit up to 17, stick from 19; 18 sticks against 2-8 and hits against 9, 10, ace
    for d in range(1, 11):
        assert all(hit[index(t, d, 1)] for t in range(12, 18))
        assert not any(hit[index(t, d, 1)] for t in range(19, 22))
        assert hit[index(18, d, 1)] == (d in (1, 9, 10))


def test_model_matches_the_simulator(solved):
    """The model's value of 'stick on 20 or more, else hit' against 15k simulated Blackjack-v1 games."""
    model, _, _ = solved
    totals = np.unravel_index(np.arange(model.n_states), SIZES)[0]
    policy = np.zeros((model.n_states, 2))
    policy[np.arange(model.n_states), np.where(totals >= 20, STICK, HIT)] = 1.0
    exact = float(model.initial @ evaluate_policy(model, policy, 1.0))
    env = gym.make("Blackjack-v1", sab=False)  # natural=False, sab=False: no natural bonus at all
    rng, returns = np.random.default_rng(0), []
    env.reset(seed=0)
    for _ in range(15_000):
        (total, _, _), _ = env.reset(seed=int(rng.integers(2**31)))
        done, ret = False, 0.0
        while not done:
            (total2, _, _), r, term, trunc, _ = env.step(STICK if total >= 20 else HIT)
            total, done, ret = total2, term or trunc, ret + float(r)
        returns.append(ret)
    assert abs(np.mean(returns) - exact) < 4 * np.std(returns) / np.sqrt(len(returns))


@pytest.mark.slow
def test_mc_control_approaches_the_dp_policy(solved):
    model, v_star, q_star = solved
    best = float(model.initial @ v_star)
    states = decision_states()
    gaps, agreements = [], []
    for steps in (20_000, 150_000):
        ag, _ = train("mc_control", "Blackjack-v1", steps, epsilon=0.1)
        pi = greedy_probs(ag.Q + 1e-9 * np.arange(2))  # ties: hit, as the untouched Q = 0 would
        value = float(model.initial @ evaluate_policy(model, pi, 1.0))
        gaps.append(best - value)
        agreements.append(float(np.mean(q_star[states, ag.Q[states].argmax(axis=1)] >= v_star[states] - 1e-9)))
    print(f"optimal value {best:.4f}; MC policy value gap {gaps}; agreement on 200 states {agreements}")
    assert gaps[1] < gaps[0] and gaps[1] < 0.02
    assert agreements[1] > agreements[0] and agreements[1] > 0.8
