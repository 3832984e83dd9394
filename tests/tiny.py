"""A tiny randomly initialised BERT with the packaged MiniLM tokenizer: the real loading, training and
quantisation code paths in a second, where the weights themselves do not matter; and a tiny domain to train
it on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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


INTENTS = {
    "greet": ["hello", "hi there", "good morning", "hey", "hello there", "morning"],
    "track_order": ["where is my order", "track order [four five](order_id)", "my parcel has not come",
                    "status of order [one two](order_id)", "where is my parcel", "track my package"],
}  # fmt: skip
HOURS = ["when are you open", "what are your hours", "are you open on sunday", "opening times"]
FAQ = {"answers": [{"id": "hours", "answer": "We are open nine to five.", "questions": HOURS}]}


def tiny_domain(folder: Path, encoder: Path | None = None, faq: dict[str, Any] | None = None) -> Path:
    """A two-intent domain (with `faq`, by default one FAQ answer of four questions); `encoder`: train it
    on a tiny random BERT (seconds)."""
    folder.mkdir(parents=True)
    training: dict[str, Any] = {"sentiment": False, "epochs": 1}
    training |= {"encoder": str(encoder)} if encoder is not None else {}
    (folder / "nlu.yaml").write_text(json.dumps({"training": training, "intents": INTENTS}))
    (folder / "faq.yaml").write_text(json.dumps(FAQ if faq is None else faq))
    return folder
