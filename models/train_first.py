"""The first model: a domain's NLU in about two minutes, so a fresh install takes calls before the full
fine-tune (`train_joint`, ~20 minutes on 2 cores) has finished.

Nearly all of the full recipe's time is the encoder's forward and backward passes, every batch of every epoch,
and a third to two thirds of each step is the sentiment and answer-matching batches (long comments, whole
answers). Here the encoder's lower layers stay frozen, so their output for an utterance never changes: it is
computed once and kept (no gradient, no dropout), and each step runs only the top `trainable_layers` layers
and the heads, on the domain's utterances alone. The ASR-style rewrites are drawn once per utterance up front
instead of at every draw, so the cache serves every epoch, and tokenisation happens once too. The sentiment,
frustration and matching heads then train on the finished, frozen encoder's cached output (a second, cheap
stage). Figures: docs/benchmarks.md, "First model".

Everything else is the full recipe's (`JointTrainer`: the same losses, schedule, checkpoint averaging,
calibration and saved format), so `NLU` loads a first model like any other.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers.masking_utils import create_bidirectional_mask

from models.augment import augment
from models.data import Example, SentimentExample
from models.train_joint import FAQ, JointTrainConfig, JointTrainer, _Cycle, example_words
from voicebot.nlu.tokens import Batch, encode, word_lists
from voicebot.progress import progress


@dataclass
class FirstModelConfig:
    """What the first model changes in the full recipe; the rest is `JointTrainConfig`'s."""

    trainable_layers: int = 2  # the encoder's top layers trained; those below are frozen and cached
    epochs: int = 3  # at most; fewer if the domain asks for fewer (training.epochs)
    lr: float = 2e-4  # top encoder layer (lower trainable ones get lr * layer_decay**depth)
    sentiment_pool: int = 1500  # GoEmotions comments the sentiment head trains on
    sentiment_valid: int = 500  # comments the frustration threshold is fitted on
    faq_questions: int = 16  # (question, answer) pairs per answer the matcher trains on
    aux_steps: int = 150  # second stage: steps of the sentiment and answer heads on the frozen encoder


def _per_answer(pairs: list[tuple[str, str]], most: int, rng: random.Random) -> list[tuple[str, str]]:
    """At most `most` (question, answer) pairs per answer, a seeded sample."""
    by_answer: dict[str, list[tuple[str, str]]] = {}
    for pair in pairs:
        by_answer.setdefault(pair[1], []).append(pair)
    kept = [p for group in by_answer.values() for p in rng.sample(group, min(most, len(group)))]
    rng.shuffle(kept)
    return kept


@dataclass
class _Cached:
    ids: torch.Tensor  # (tokens,) token ids, special tokens included
    hidden: torch.Tensor  # (tokens, hidden) output of the frozen layers
    word_ids: list[int | None]


class FrozenLayerCache:
    """The frozen lower layers' output per utterance (by its words), computed on first use."""

    def __init__(self, encoder: Any, tokenizer: Any, frozen: int, max_length: int) -> None:
        self.encoder, self.tokenizer, self.frozen, self.max_length = encoder, tokenizer, frozen, max_length
        self.items: dict[tuple[str, ...], _Cached] = {}

    @torch.no_grad()
    def _fill(self, missing: list[list[str]]) -> None:
        enc = encode(self.tokenizer, missing, self.max_length)
        training = self.encoder.training
        self.encoder.eval()  # the frozen layers as inference runs them: no dropout
        try:
            hidden = self.encoder.embeddings(input_ids=enc.input_ids)
            mask = create_bidirectional_mask(
                config=self.encoder.config, inputs_embeds=hidden, attention_mask=enc.attention_mask
            )
            for layer in self.encoder.encoder.layer[: self.frozen]:
                hidden = layer(hidden, mask)
        finally:
            self.encoder.train(training)
        for row, words in enumerate(missing):
            n = int(enc.attention_mask[row].sum())
            self.items[tuple(words)] = _Cached(
                enc.input_ids[row, :n], hidden[row, :n].clone(), enc.word_ids[row][:n]
            )

    def batch(self, batch_words: list[list[str]]) -> tuple[torch.Tensor, Batch]:
        """Padded cached states of a batch, and the batch's tokens as `encode` gives them."""
        keys = [tuple(w or [""]) for w in batch_words]
        missing = list({k: None for k in keys if k not in self.items})
        if missing:
            self._fill([list(k) for k in missing])
        items = [self.items[k] for k in keys]
        width = max(len(item.ids) for item in items)
        hidden = torch.zeros(len(items), width, items[0].hidden.shape[-1])
        ids = torch.zeros(len(items), width, dtype=torch.long)
        mask = torch.zeros(len(items), width, dtype=torch.long)
        for row, item in enumerate(items):
            n = len(item.ids)
            hidden[row, :n], ids[row, :n], mask[row, :n] = item.hidden, item.ids, 1
        word_ids = [item.word_ids + [None] * (width - len(item.ids)) for item in items]
        return hidden, Batch(ids, mask, word_ids)


BUCKET = 8  # batches whose examples are sorted by length together


def _length(example: Example) -> int:
    return len(example_words(example))


class FirstModelTrainer(JointTrainer):
    """`JointTrainer` with the encoder's lower layers frozen and their output cached (module docstring).

    Two stages. First the top layers, intent and tagger train on the domain's utterances alone. Then the
    whole encoder is frozen, its final states cached once, and the sentiment, frustration and answer-matching
    heads train on them for `aux_steps` steps: those tasks' batches (long comments, whole answers) would
    otherwise cost more per step than the domain's own, for figures the first model is not judged on.
    """

    def __init__(
        self,
        train: list[Example],
        valid: list[Example],
        intents: list[str],
        entity_types: list[str],
        cfg: JointTrainConfig,
        first: FirstModelConfig,
        sentiment: tuple[list[SentimentExample], list[SentimentExample]] | None = None,
        faq: FAQ | None = None,
        progress: bool = True,
    ) -> None:
        rng = random.Random(cfg.seed)
        if cfg.augment:  # each utterance rewritten (or not) once, so its cached states are reused
            train = [augment(e, rng) if rng.random() < cfg.augment else e for e in train]
        if sentiment is not None:
            pool = rng.sample(sentiment[0], min(first.sentiment_pool, len(sentiment[0])))
            sentiment = (pool, sentiment[1][: first.sentiment_valid])
        if faq is not None:
            faq = replace(faq, questions=_per_answer(faq.questions, first.faq_questions, rng))
        cfg = replace(cfg, augment=0.0, epochs=min(cfg.epochs, first.epochs), lr=first.lr)
        super().__init__(train, valid, intents, entity_types, cfg, sentiment, faq, progress)
        self.first = first
        self.aux = (self.sentiment, self.faq)  # trained in the second stage (calibrate)
        self.sentiment, self.faq = None, None
        self._freeze_below(max(0, len(self._layers()) - first.trainable_layers))

    def _epoch_order(self) -> list[Example]:
        """Batches of similar length (less padding in the cached states: about half the work of random
        batches here), in random order: a shuffle, cut into runs of `BUCKET` batches each sorted by length."""
        order, size = super()._epoch_order(), self.cfg.batch_size
        run = size * BUCKET
        ordered = [e for i in range(0, len(order), run) for e in sorted(order[i : i + run], key=_length)]
        batches = [ordered[i : i + size] for i in range(0, len(ordered), size)]
        tail = batches.pop() if batches and len(batches[-1]) < size else []  # a short batch stays last: the
        self.rng.shuffle(batches)  # loop cuts the order every batch_size examples
        return [e for batch in [*batches, tail] for e in batch]

    def _layers(self) -> list[nn.Module]:
        encoder: Any = self.model.encoder  # a Hugging Face BERT-style model
        return list(encoder.encoder.layer)

    def _freeze_below(self, frozen: int) -> None:
        """Layers from `frozen` on train; those below (and the embeddings) are frozen and cached."""
        n = len(self._layers())
        for name, param in self.model.encoder.named_parameters():
            param.requires_grad_(any(name.startswith(f"encoder.layer.{i}.") for i in range(frozen, n)))
        self.top = self._layers()[frozen:]
        self.cache = FrozenLayerCache(self.model.encoder, self.tokenizer, frozen, self.cfg.max_length)

    def fit(self, out_dir: Path) -> dict[str, Any]:
        self._prefill([example_words(e) for e in self.train])
        return super().fit(out_dir)

    def calibrate(self) -> None:
        self.sentiment, self.faq = self.aux
        if self.sentiment is not None or self.faq is not None:
            self._fit_aux_heads()
        super().calibrate()

    def _fit_aux_heads(self) -> None:
        self._freeze_below(len(self._layers()))
        texts = word_lists([e.text for e in self.sentiment[0]]) if self.sentiment else []
        if self.faq is not None:
            texts += word_lists([q for q, _ in self.faq.questions] + list(self.faq.answers.values()))
        self._prefill(texts)
        heads = [self.model.sentiment, self.model.frustration, self.model.matcher]
        optim = torch.optim.AdamW([p for h in heads for p in h.parameters()], lr=self.cfg.head_lr)
        size = self.cfg.batch_size
        senti = _Cycle(self.sentiment[0], size, self.rng) if self.sentiment else None
        faq = _Cycle(self.faq.questions, size, self.rng) if self.faq else None
        self.model.train()
        bar = progress(
            range(self.first.aux_steps), desc="sentiment + answer heads", unit="steps", enabled=self.progress
        )
        for _ in bar:
            loss = torch.zeros(())
            if senti is not None:
                loss = loss + self._sentiment_loss(senti.next())
            if faq is not None:
                loss = loss + self._match_loss(faq.next())
            optim.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optim.step()
            bar.set_postfix(loss=f"{loss.item():.3f}")
        self.model.eval()

    def _prefill(self, texts: list[list[str]], chunk: int = 64) -> None:
        """Tokenise and run the frozen layers over every utterance training will draw, shortest first (the
        least padding), with a progress bar; training then only reads the cache."""
        unique = sorted({tuple(w or [""]) for w in texts}, key=len)
        bar = progress(
            desc="tokenising + frozen layers", total=len(unique), unit="utterances", enabled=self.progress
        )
        with bar:
            for start in range(0, len(unique), chunk):
                part = [list(w) for w in unique[start : start + chunk]]
                self.cache.batch(part)
                bar.update(len(part))

    def _forward(self, batch_words: list[list[str]]) -> tuple[dict[str, torch.Tensor], Batch]:
        hidden, enc = self.cache.batch(batch_words)
        config = self.model.encoder.config  # type: ignore[union-attr]
        mask = create_bidirectional_mask(
            config=config, inputs_embeds=hidden, attention_mask=enc.attention_mask
        )
        for layer in self.top:
            hidden = layer(hidden, mask)
        return self.model.read(hidden, enc.attention_mask), enc
