"""A tiny randomly initialised BERT with the packaged MiniLM tokenizer: the real loading, training and
quantisation code paths in a second, where the weights themselves do not matter."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoTokenizer, BertConfig, BertModel

from voicebot.nlu.model import default_encoder


def tiny_encoder(out: Path, layers: int = 2, seed: int = 0) -> Path:
    """Save the tiny encoder (a Hugging Face directory `JointNLU.create` reads) into `out`."""
    tokenizer = AutoTokenizer.from_pretrained(str(default_encoder()))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=64,
    )
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return out
