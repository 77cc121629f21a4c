"""A generated corpus of short product reviews and its word-level vocabulary.

Every review is a prompt `<bos> review of the PRODUCT :` followed by one to three clauses
`the ASPECT is [not] [INTENSIFIER] ADJECTIVE`, joined by `and` / `but`, then `. <eos>`. The grammar
is small enough to check by a bigram table of word categories (gold.py uses it to spot
ungrammatical text) and the vocabulary is a few hundred words, so a tiny GPT learns it in a minute.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rlgen.config import check_positive, check_probability, check_range, check_seed, named

PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"
SPECIALS = [PAD, BOS, EOS]
PROMPT_WORDS = ["review", "of", ":"]
FUNCTION_WORDS = ["the", "is", "not", "and", "but", "."]

PRODUCTS = (
    "phone laptop tablet camera watch speaker headset router printer monitor keyboard mouse blender "
    "kettle toaster oven fridge vacuum drill lamp heater fan backpack jacket boots tent bicycle "
    "scooter stroller mattress sofa desk chair guitar piano drone charger projector console microwave"
).split()
ASPECTS = (
    "battery screen sound price design build quality size weight color finish handle button cable "
    "manual software app setup noise speed power display lens grip strap fabric zipper wheel motor "
    "lid seal hinge charger case cover fit comfort warranty delivery packaging support material "
    "keys plug stand frame surface sensor timer signal range"
).split()
POSITIVE = (
    "great good excellent superb fantastic solid sturdy reliable sleek elegant bright clear smooth "
    "quiet fast comfortable lovely perfect brilliant impressive handy durable responsive crisp "
    "premium pleasant accurate stable generous gorgeous flawless efficient robust tidy neat snappy "
    "charming polished wonderful"
).split()
NEGATIVE = (
    "bad poor terrible awful flimsy cheap fragile unreliable ugly clunky dim blurry rough noisy slow "
    "uncomfortable mediocre broken weak disappointing useless annoying sluggish faulty shoddy "
    "inaccurate unstable stingy dull buggy loose sticky leaky wobbly scratchy overpriced bulky "
    "greasy laggy horrible"
).split()
NEUTRAL = "average okay standard typical ordinary plain usual normal basic decent fine acceptable".split()
STRONG = ["very", "really", "extremely", "so"]
"""intensifiers that double a clause's sentiment"""
MILD = ["quite", "pretty", "fairly"]
"""intensifiers that leave it as it is"""
CONNECTIVES = ["and", "but"]


def category_of() -> dict[str, str]:
    """Word -> its grammatical category (the alphabet of the bigram grammar)."""
    cats: dict[str, str] = {w: w for w in SPECIALS + PROMPT_WORDS + FUNCTION_WORDS}
    for cat, words in (("PRODUCT", PRODUCTS), ("ASPECT", ASPECTS), ("ADJ", POSITIVE + NEGATIVE + NEUTRAL),
                       ("INT", STRONG + MILD), ("and", CONNECTIVES)):
        cats.update({w: cat for w in words})
    return cats


# Allowed category bigrams of the grammar (the continuation part, after the prompt's ':').
GRAMMAR_BIGRAMS = {
    (":", "the"), ("the", "ASPECT"), ("ASPECT", "is"), ("is", "not"), ("is", "INT"), ("is", "ADJ"),
    ("not", "INT"), ("not", "ADJ"), ("INT", "ADJ"), ("ADJ", "and"), ("ADJ", "."), ("and", "the"),
    (".", EOS),
}


class Vocab:
    """Word <-> id. Id 0 is padding, 1 begin-of-sequence, 2 end-of-sequence."""

    env_constant = True
    """fixed for the life of an env: not part of its state (rlgen/envs/snapshot.py)"""

    def __init__(self) -> None:
        words = SPECIALS + PROMPT_WORDS + FUNCTION_WORDS + PRODUCTS + ASPECTS + POSITIVE + NEGATIVE + NEUTRAL
        words += STRONG + MILD + CONNECTIVES
        self.words = list(dict.fromkeys(words))  # keep order, drop duplicates ("charger" is both)
        self.index = {w: i for i, w in enumerate(self.words)}
        self.pad, self.bos, self.eos = (self.index[w] for w in SPECIALS)

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, text: str) -> list[int]:
        return [self.index[w] for w in text.split()]

    def decode(self, ids) -> str:
        return " ".join(self.words[int(i)] for i in ids if int(i) != self.pad)


@dataclass
class CorpusConfig:
    n_reviews: int = 20_000
    """reviews in the supervised-pretraining corpus"""
    max_clauses: int = 3
    """a review has 1..max_clauses clauses"""
    p_not: float = 0.15
    """probability that a clause is negated"""
    p_intensifier: float = 0.3
    seed: int = 0

    def check(self, prefix: str) -> None:
        """A UserError naming `prefix.field` for a value that cannot make a corpus."""
        check_positive(**named(self, "n_reviews", prefix=prefix))
        # each clause of a review is about another aspect
        check_range(1, len(ASPECTS), why=" (clauses per review)", **named(self, "max_clauses", prefix=prefix))
        check_probability(**named(self, "p_not", "p_intensifier", prefix=prefix))
        check_seed(**named(self, "seed", prefix=prefix))


def sample_prompt(vocab: Vocab, rng: np.random.Generator) -> list[int]:
    return vocab.encode(f"{BOS} review of the {rng.choice(PRODUCTS)} :")


PROMPT_LEN = 6


def sample_clause(cfg: CorpusConfig, rng: np.random.Generator, used: set[str]) -> list[str]:
    aspect = rng.choice([a for a in ASPECTS if a not in used])
    used.add(aspect)
    words = ["the", str(aspect), "is"]
    if rng.random() < cfg.p_not:
        words.append("not")
    if rng.random() < cfg.p_intensifier:
        words.append(str(rng.choice(STRONG + MILD)))
    pool = [POSITIVE, NEGATIVE, NEUTRAL][rng.choice(3, p=[0.4, 0.4, 0.2])]
    return words + [str(rng.choice(pool))]


def sample_review(cfg: CorpusConfig, vocab: Vocab, rng: np.random.Generator) -> list[int]:
    """One review as token ids: prompt + continuation + `. <eos>`."""
    used: set[str] = set()
    words: list[str] = []
    for i in range(int(rng.integers(1, cfg.max_clauses + 1))):
        if i:
            words.append(str(rng.choice(CONNECTIVES)))
        words += sample_clause(cfg, rng, used)
    return sample_prompt(vocab, rng) + vocab.encode(" ".join(words + [".", EOS]))


CLAUSE_WORDS = 6
"""the longest clause: the ASPECT is not INTENSIFIER ADJECTIVE"""


def longest_review(cfg: CorpusConfig) -> int:
    """Tokens of the longest review the grammar makes: the prompt, max_clauses clauses joined by
    connectives, then `. <eos>`."""
    return PROMPT_LEN + cfg.max_clauses * CLAUSE_WORDS + (cfg.max_clauses - 1) + 2


def make_corpus(cfg: CorpusConfig, vocab: Vocab, block_size: int) -> np.ndarray:
    """(n_reviews, block_size) int64 array of reviews padded with <pad>."""
    rng = np.random.default_rng(cfg.seed)
    out = np.full((cfg.n_reviews, block_size), vocab.pad, dtype=np.int64)
    for i in range(cfg.n_reviews):
        ids = sample_review(cfg, vocab, rng)
        assert len(ids) <= block_size, "block_size too small for the grammar"
        out[i, : len(ids)] = ids
    return out
