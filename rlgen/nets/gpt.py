"""A tiny GPT: the language model that is the RLHF policy, the frozen reference and the reward model.

Token + position embeddings, pre-LN residual blocks of causal multi-head self-attention and an MLP,
a final LayerNorm and a linear head giving logits for every position (per-token log-probabilities
are what RLHF needs). The layout follows Radford et al. 2019 (GPT-2, sec. 2.3: LayerNorm moved to
the input of each sub-block, one more after the last block) at a size that trains on a CPU in a
minute. Optional heads on the last hidden state: a scalar per position, used as the reward model's
score (read at the last token) and as PPO's value function.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from rlgen.config import check_positive, check_range
from rlgen.errors import UserError


def check_width(n_head: int, n_embd: int, prefix: str = "") -> None:
    """Multi-head attention splits the width evenly among the heads (Vaswani et al. 2017, sec. 3.2.2)."""
    if n_embd % n_head:
        near = sorted({max(n_head, n_embd // n_head * n_head), (n_embd // n_head + 1) * n_head})
        raise UserError(f"{prefix}n_embd={n_embd} is not divisible by {prefix}n_head={n_head} (each head gets "
                        f"n_embd / n_head dimensions): try {prefix}n_embd={' or '.join(map(str, near))}")


@dataclass
class GPTConfig:
    vocab_size: int = 256
    """number of token ids"""
    block_size: int = 32
    """longest sequence the position embedding covers"""
    n_layer: int = 2
    """transformer blocks"""
    n_head: int = 4
    """attention heads per block"""
    n_embd: int = 64
    """width of the residual stream"""
    dropout: float = 0.0
    """dropout on attention weights and residual branches (0: off, as RL fine-tuning wants)"""

    def __post_init__(self) -> None:
        check_positive(vocab_size=self.vocab_size, block_size=self.block_size, n_layer=self.n_layer,
                       n_head=self.n_head, n_embd=self.n_embd)
        check_width(self.n_head, self.n_embd)
        check_range(0, 1, open_high=True, dropout=self.dropout)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.n_head = cfg.n_head
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)
        mask = torch.tril(torch.ones(cfg.block_size, cfg.block_size, dtype=torch.bool))
        self.register_buffer("mask", mask.view(1, 1, cfg.block_size, cfg.block_size), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)  # each (B, T, C)
        hs = C // self.n_head
        q = q.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(hs)  # (B, nh, T, T)
        # causal: position t attends to positions <= t only (Vaswani et al. 2017, sec. 3.2.3)
        att = att.masked_fill(~self.mask[:, :, :T, :T], float("-inf"))
        att = self.drop(F.softmax(att, dim=-1))
        y = att @ v  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C): heads side by side again
        return self.drop(self.proj(y))


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd)
        self.proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        x = x + self.mlp(self.ln_2(x))
        return x


class GPT(nn.Module):
    """`hidden(idx)` -> (B, T, n_embd); `forward(idx)` -> logits (B, T, vocab_size)."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # weight tying (Press & Wolf 2017)
        self.apply(_init_weights)

    @property
    def n_embd(self) -> int:
        return self.cfg.n_embd

    def hidden(self, idx: torch.Tensor) -> torch.Tensor:
        B, T = idx.shape
        if T > self.cfg.block_size:
            raise ValueError(f"sequence of length {T} is longer than block_size {self.cfg.block_size}")
        pos = torch.arange(T, device=idx.device)  # (T,)
        x = self.drop(self.wte(idx) + self.wpe(pos))  # (B, T, C)
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x)  # (B, T, C)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        return self.lm_head(h)  # (B, T, vocab_size)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.logits(self.hidden(idx))


def _init_weights(module: nn.Module) -> None:
    # GPT-2's init: N(0, 0.02) weights, zero biases (Radford et al. 2019; nanoGPT)
    if isinstance(module, nn.Linear | nn.Embedding):
        nn.init.normal_(module.weight, 0.0, 0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


class ScalarHead(nn.Module):
    """A language-model backbone with a linear scalar head on every position: the reward model
    (score read at the last token; Ouyang et al. 2022, sec. 3.5) or PPO's value function."""

    def __init__(self, backbone: nn.Module, n_embd: int):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(n_embd, 1)
        nn.init.normal_(self.head.weight, 0.0, 1.0 / math.sqrt(n_embd + 1))  # TRL's value-head init scale
        nn.init.zeros_(self.head.bias)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone.hidden(idx)).squeeze(-1)  # (B, T)


class PolicyWithValue(nn.Module):
    """The RL policy: the language model plus a value head sharing its trunk (Ziegler et al. 2019)."""

    def __init__(self, lm: nn.Module, n_embd: int):
        super().__init__()
        self.lm = lm
        self.value_head = nn.Linear(n_embd, 1)
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)

    def forward(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.lm.hidden(idx)  # (B, T, C)
        return self.lm.logits(h), self.value_head(h).squeeze(-1)  # (B, T, V), (B, T)
