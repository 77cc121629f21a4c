"""TextPreference: write a product review one word at a time; a scorer judges it at the end.

## Description
Each episode starts from a prompt `<bos> review of the PRODUCT :` (the product drawn at random).
Every action appends one word of the vocabulary of rlgen/rlhf/corpus.py. The text is scored when
it ends, by a pluggable scorer: the hidden "human" (rlgen/rlhf/gold.py) by default, or any callable
of the token array, e.g. a reward model. It is the RLHF setting as a plain Gymnasium env, so any
discrete-action agent can train on it; agent=rlhf trains a language model on the same format.

## Action Space
`Discrete(V)`: the id of the next word (V = vocabulary size, about 200).

## Observation Space
`MultiDiscrete([V] * max_len)`: the prompt and the words so far, padded with <pad> (id 0).

## Rewards
0 on every step but the last; at the end, scorer(tokens) (gold: roughly -2 .. 2 for grammatical
reviews, lower for ungrammatical or repetitive ones).

## Episode End
Terminated when the action is <eos>; truncated when the text fills `max_len` tokens.

## Arguments
`max_len` (default 32): observation length, prompt included. `scorer`: "gold" or a callable
(tokens (max_len,) int array) -> float. The env pickles when its scorer does (the gold scorer
does; a lambda does not).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from rlgen.rlhf.corpus import PROMPT_LEN, Vocab, sample_prompt
from rlgen.rlhf.gold import gold_score

Scorer = Callable[[np.ndarray], float]


class GoldScorer:
    """The hidden human's score of a finished text (rlgen/rlhf/gold.py). An object, not a closure,
    so that the env pickles: AsyncVectorEnv's workers, multiprocessing and copy.deepcopy need it."""

    def __init__(self, vocab: Vocab):
        self.vocab = vocab

    def __call__(self, tokens: np.ndarray) -> float:
        return float(gold_score(self.vocab, tokens[None], PROMPT_LEN)[0])


SCORERS: dict[str, Callable[[Vocab], Scorer]] = {"gold": GoldScorer}


class TextPreference(gym.Env):
    metadata = {"render_modes": ["ansi"]}

    def __init__(self, max_len: int = 32, scorer: str | Scorer = "gold", render_mode: str | None = None):
        self.vocab = Vocab()
        if max_len <= PROMPT_LEN + 1:
            raise ValueError(f"max_len must exceed the prompt length {PROMPT_LEN} + 1, got {max_len}")
        if isinstance(scorer, str):
            if scorer not in SCORERS:
                raise ValueError(f"unknown scorer '{scorer}'; available: {', '.join(SCORERS)}")
            scorer = SCORERS[scorer](self.vocab)
        self.scorer = scorer
        self.max_len = max_len
        self.render_mode = render_mode
        n = len(self.vocab)
        self.action_space = gym.spaces.Discrete(n)
        self.observation_space = gym.spaces.MultiDiscrete(np.full(max_len, n, dtype=np.int64))
        self.tokens = np.zeros(max_len, dtype=np.int64)
        self.length = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.tokens = np.full(self.max_len, self.vocab.pad, dtype=np.int64)
        prompt = sample_prompt(self.vocab, self.np_random)
        self.tokens[: len(prompt)] = prompt
        self.length = len(prompt)
        return self.tokens.copy(), {}

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"invalid action {action!r}: expected a word id in 0..{self.action_space.n - 1}")
        self.tokens[self.length] = int(action)
        self.length += 1
        terminated = int(action) == self.vocab.eos
        truncated = not terminated and self.length == self.max_len
        reward = float(self.scorer(self.tokens)) if terminated or truncated else 0.0
        return self.tokens.copy(), reward, terminated, truncated, {}

    def render(self) -> str | None:
        if self.render_mode == "ansi":
            return self.vocab.decode(self.tokens[: self.length]) + "\n"
        return None


if "rlgen/TextPreference-v0" not in gym.registry:
    gym.register(id="rlgen/TextPreference-v0", entry_point="rlgen.envs.text_preference:TextPreference")
