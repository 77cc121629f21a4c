"""Torch modules: MLP heads, the tiny GPT and its reward head."""
