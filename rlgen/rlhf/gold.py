"""The hidden "human": a gold score of a review and noisy pairwise preferences drawn from it.

The reward model never calls `gold_score`; it sees only the labelled pairs that `preference_labels`
draws from it with Bradley-Terry noise (Bradley & Terry 1952; the preference model of Christiano
et al. 2017, eq. 1, and Ouyang et al. 2022, eq. 1):  P(a preferred to b) = sigmoid(beta (g_a - g_b)).
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from rlgen.rlhf.corpus import EOS, GRAMMAR_BIGRAMS, NEGATIVE, POSITIVE, STRONG, Vocab, category_of

POLARITY = {**{w: 1.0 for w in POSITIVE}, **{w: -1.0 for w in NEGATIVE}}
UNGRAMMATICAL_PENALTY = 3.0
"""times the fraction of the continuation's bigrams that the grammar does not allow"""
REPEAT_PENALTY = 0.5
"""per repeated aspect or adjective (a reader finds repetition degenerate)"""
NO_END_PENALTY = 1.0
"""the review never ends with `. <eos>`"""
LONG_PENALTY = 0.5
"""per clause beyond three (rambling)"""


def clause_sentiment(words: list[str]) -> float:
    """Polarity of the clause's adjective, doubled by a strong intensifier, flipped by `not`."""
    adjs = [w for w in words if w in POLARITY]
    if not adjs:
        return 0.0
    value = POLARITY[adjs[-1]]
    if any(w in STRONG for w in words):  # mild intensifiers ("quite") leave it as it is
        value *= 2.0
    return -value if "not" in words else value


def gold_words(words: list[str]) -> float:
    """Gold score of a continuation (the words after the prompt's ':'), roughly in [-2, 2]
    for grammatical reviews: mean clause sentiment minus penalties for degenerate text."""
    cats = category_of()
    clauses: list[list[str]] = [[]]
    for w in words:
        if w in ("and", "but", ".", EOS):
            clauses.append([])
        else:
            clauses[-1].append(w)
    clauses = [c for c in clauses if c]
    sentiment = float(np.mean([clause_sentiment(c) for c in clauses])) if clauses else 0.0
    seq = [":"] + words
    pairs = list(zip(seq[:-1], seq[1:], strict=True))
    bad = sum((cats.get(a, a), cats.get(b, b)) not in GRAMMAR_BIGRAMS for a, b in pairs)
    penalty = UNGRAMMATICAL_PENALTY * bad / max(len(pairs), 1)
    counts = Counter(w for w in words if cats.get(w) in ("ASPECT", "ADJ"))
    penalty += REPEAT_PENALTY * sum(n - 1 for n in counts.values())
    if words[-2:] != [".", EOS]:
        penalty += NO_END_PENALTY
    penalty += LONG_PENALTY * max(len(clauses) - 3, 0)
    return sentiment - penalty


def gold_score(vocab: Vocab, tokens: np.ndarray, prompt_len: int) -> np.ndarray:
    """Gold scores of a batch of (B, T) token arrays (prompt + continuation, padded)."""
    tokens = np.atleast_2d(tokens)
    out = np.empty(len(tokens))
    for i, row in enumerate(tokens):
        words = vocab.decode(row[prompt_len:]).split()
        if EOS in words:
            words = words[: words.index(EOS) + 1]
        out[i] = gold_words(words)
    return out


def preference_probability(g_a: np.ndarray, g_b: np.ndarray, rationality: float) -> np.ndarray:
    """Bradley-Terry: P(a preferred to b) = sigmoid(rationality (g_a - g_b)), a Boltzmann-rational
    human (the coefficient is called beta in the preference-learning literature; here beta is kept for
    the KL coefficient of the alignment methods)."""
    return 1.0 / (1.0 + np.exp(-rationality * (np.asarray(g_a) - np.asarray(g_b))))


def preference_labels(g_a: np.ndarray, g_b: np.ndarray, rationality: float, rng: np.random.Generator) -> np.ndarray:
    """1 where the noisy human prefers a, 0 where b."""
    return (rng.random(len(g_a)) < preference_probability(g_a, g_b, rationality)).astype(np.int64)


def noise_ceiling(g_a: np.ndarray, g_b: np.ndarray, rationality: float) -> float:
    """Best expected accuracy any model can reach on these labels: predicting the likelier label of
    each pair is right with probability max(p, 1 - p)."""
    p = preference_probability(g_a, g_b, rationality)
    return float(np.mean(np.maximum(p, 1.0 - p)))
