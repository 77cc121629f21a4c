"""Best-of-n sampling against the reward model: the baseline RL has to beat at equal KL.

Draw n samples from the SFT policy and keep the one the reward model scores highest. Its KL to the
SFT policy is log n - (n - 1) / n (Stiennon et al. 2020, appendix G.3; Gao et al. 2022, sec. 2.2),
exact when no two samples tie.
"""

from __future__ import annotations

import numpy as np

from rlgen.distributions import np_categorical_entropy


def best_of_n_kl(n: int | np.ndarray) -> np.ndarray:
    n = np.asarray(n, dtype=float)
    return np.log(n) - (n - 1.0) / n


def best_of_n_exact_kl(m: int, n: int) -> float:
    """KL of best-of-n to a uniform distribution over m items with distinct scores, computed from
    its distribution P(item of rank i wins) = (i/m)^n - ((i-1)/m)^n; tends to log n - (n-1)/n."""
    i = np.arange(1, m + 1)
    p = (i / m) ** n - ((i - 1) / m) ** n
    return float(np.log(m) - np_categorical_entropy(p))  # KL(p || uniform) = log m - H(p)


def best_of_n_curve(proxy: np.ndarray, gold: np.ndarray, ns: list[int]) -> list[dict[str, float]]:
    """Mean proxy and gold score of best-of-n for each n.

    proxy, gold: (P, N) scores of N samples for each of P prompts. For each n the N samples are cut
    into N // n disjoint groups, so every sample is used once and the estimate is unbiased.
    """
    P, N = proxy.shape
    out = []
    for n in ns:
        groups = N // n
        if groups == 0:
            continue
        pr = proxy[:, : groups * n].reshape(P, groups, n)
        go = gold[:, : groups * n].reshape(P, groups, n)
        best = pr.argmax(axis=2)[..., None]
        out.append({
            "n": n,
            "kl": float(best_of_n_kl(n)),
            "proxy": float(np.take_along_axis(pr, best, 2).mean()),
            "gold": float(np.take_along_axis(go, best, 2).mean()),
        })
    return out
