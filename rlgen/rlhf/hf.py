"""Hugging Face `transformers` causal LMs as the policy / reward-model backbone.

`HFCausalLM` gives any `AutoModelForCausalLM` the interface the RLHF code uses (`hidden`,
`logits`, `n_embd`). The word-level vocabulary of the generated corpus replaces the model's own
tokenizer: the embedding matrix is resized to it and learnt in supervised pretraining. Nothing is
downloaded: a backbone is either a randomly initialised GPT-2 of a given size or a model directory
already on disk (`local_files_only`). Install with `pip install rlgen[hf]`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from rlgen.errors import UserError


class HFCausalLM(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    @property
    def n_embd(self) -> int:
        return int(self.model.config.hidden_size)

    def hidden(self, idx: torch.Tensor) -> torch.Tensor:
        return self.model.base_model(input_ids=idx).last_hidden_state  # (B, T, C), final norm applied

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        return self.model.get_output_embeddings()(h)  # (B, T, V)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.logits(self.hidden(idx))


def _transformers():
    try:
        import transformers
    except ImportError:
        raise UserError("backbone needs Hugging Face transformers: pip install 'rlgen[hf]'") from None
    return transformers


def random_gpt2(vocab_size: int, block_size: int, n_layer: int, n_head: int, n_embd: int) -> HFCausalLM:
    """A randomly initialised `transformers` GPT-2 of the given size (no download)."""
    tf = _transformers()
    cfg = tf.GPT2Config(vocab_size=vocab_size, n_positions=block_size, n_embd=n_embd, n_layer=n_layer,
                        n_head=n_head, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    return HFCausalLM(tf.GPT2LMHeadModel(cfg))


def local_causal_lm(path: str, vocab_size: int) -> HFCausalLM:
    """A causal LM from a local directory (save_pretrained layout), embeddings resized to our vocab."""
    if not Path(path).is_dir():
        raise UserError(f"backbone '{path}' is neither 'gpt', 'hf_gpt2' nor a local model directory")
    tf = _transformers()
    model = tf.AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
    model.resize_token_embeddings(vocab_size)
    return HFCausalLM(model)
