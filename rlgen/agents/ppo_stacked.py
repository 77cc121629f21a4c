"""PPO's update for a group of seeds at once (python -m rlgen.train seeds=S), on their stacked networks
(rlgen/nets/stack.py); PPO.update_group calls it for a group of plain PPOs (rlgen/agents/ppo.py) on flat
observations, whose evaluate_actions, minibatch_loss and report it uses."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from rlgen.nets.stack import Stack

STATS = ("pg", "vf", "ent", "loss", "kl", "clipfrac")
"""the statistics of a minibatch step (PPO.minibatch_loss), averaged over an update"""


def train_stacked(agents: list[Any], batches: list[dict[str, np.ndarray]], lr: float, clip: float
                  ) -> list[dict[str, float]]:
    """`PPO.train` for a group of seeds at once, on their stacked networks (rlgen/nets/stack.py): member
    k draws its minibatches from its own generator, as its own update would, and a minibatch step is one
    stacked step over the members' (S, B) rows, padded where the members' rollouts have different
    numbers of real transitions. A member whose epoch has fewer minibatches, or that target_kl stopped,
    waits: its Adam state is left as it is. Returns each member's statistics."""
    first, c = agents[0], agents[0].config
    for a in agents:
        a.optimizer.lr = lr
    stack = Stack([a.optimizer for a in agents])
    s, counts = len(agents), [len(b["obs"]) for b in batches]
    data = {key: torch.from_numpy(_padded([b[key] for b in batches], max(counts))) for key in batches[0]}
    rows = torch.arange(s)[:, None]
    stopped = torch.zeros(s, dtype=torch.bool)
    sums = {key: torch.zeros(s) for key in STATS}
    taken = torch.zeros(s)
    last_kl = torch.zeros(s)
    for _ in range(c.n_epochs):
        chunks = []
        for k, a in enumerate(agents):
            n = counts[k]
            if stopped[k]:
                chunks.append([])
            elif n <= c.batch_size:  # as PPO.train: the whole rollout, no shuffle
                chunks.append([np.arange(n)])
            else:
                perm = a.rng.permutation(n)
                chunks.append([perm[i : i + c.batch_size] for i in range(0, n, c.batch_size)])
        for i in range(max(len(ch) for ch in chunks)):
            width = max(len(ch[i]) for ch in chunks if i < len(ch))
            idx = np.zeros((s, width), dtype=np.int64)
            mask = np.zeros((s, width), dtype=np.float32)
            for k, ch in enumerate(chunks):
                if i < len(ch) and not stopped[k]:
                    idx[k, : len(ch[i])], mask[k, : len(ch[i])] = ch[i], 1.0
            active = torch.from_numpy(mask.any(axis=1))
            mb = {key: v[rows, torch.from_numpy(idx)] for key, v in data.items()}
            logp, entropy, value = first.evaluate_actions(mb["obs"], mb["actions"], stack)
            terms = first.minibatch_loss(mb, logp, entropy, value, clip, torch.from_numpy(mask))
            last_kl = torch.where(active, terms["kl"], last_kl)
            if c.target_kl is not None:  # as SB3: a member over it skips this step and ends its update
                over = active & (terms["kl"] > 1.5 * c.target_kl)
                stopped |= over
                active &= ~over
            stack.zero_grad()
            stack.backward((terms["loss"] * active).sum())
            stack.clip_grad_norm(c.max_grad_norm)
            stack.step(active)
            for key in STATS:
                sums[key] += terms[key].detach() * active
            taken += active
    stack.store()
    out = []
    for k, a in enumerate(agents):
        a.n_updates += int(taken[k])
        a._snapshot = None
        means = {key: float(sums[key][k] / taken[k]) for key in STATS} if taken[k] else None
        out.append(a.report(means, float(last_kl[k]), lr, clip, batches[k]))
    return out


def _padded(arrays: list[np.ndarray], width: int) -> np.ndarray:
    """(S, width, ...) from arrays of at most `width` rows, zeros after each one's own."""
    out = np.zeros((len(arrays), width, *arrays[0].shape[1:]), dtype=arrays[0].dtype)
    for k, a in enumerate(arrays):
        out[k, : len(a)] = a
    return out
