"""Torch modules: MLP heads, the NatureCNN image encoder, the tiny GPT and its reward head."""
