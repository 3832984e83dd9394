"""int8 paths for the NLU encoder on CPU: why `JointNLU.quantized` still uses torch.ao's dynamic quantisation.

torch 2.13 deprecates eager-mode quantisation (it warns at load). This times one parse of a 13-word turn on
one thread, all heads, with an untrained MiniLM (speed does not depend on the weights): fp32, torch.ao
dynamic int8, and an int8 Linear built on the non-deprecated `torch._int_mm` (per-row activation and
per-channel weight scales). Prints milliseconds per parse and the largest difference of the matcher output.

    .venv/bin/python scripts/bench_int8_paths.py
"""

from __future__ import annotations

import copy
import time
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from voicebot.nlu.infer import run
from voicebot.nlu.model import JointNLU, Labels, default_encoder


class IntMMLinear(nn.Module):
    """Dynamic int8 Linear on `torch._int_mm`: what a torch.ao-free dynamic quantisation would compute."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        w = linear.weight.detach()
        scale = w.abs().amax(1, keepdim=True).clamp(min=1e-8) / 127
        self.register_buffer("w", torch.round(w / scale).to(torch.int8).t().contiguous())
        self.register_buffer("scale", scale.t().contiguous())
        self.bias = linear.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1])
        xs = rows.abs().amax(1, keepdim=True).clamp(min=1e-8) / 127
        w, scale = cast(torch.Tensor, self.w), cast(torch.Tensor, self.scale)
        y = torch._int_mm(torch.round(rows / xs).to(torch.int8), w).float() * xs * scale
        y = y if self.bias is None else y + self.bias
        return y.reshape(*x.shape[:-1], -1)


def swap_linears(module: nn.Module) -> nn.Module:
    for name, child in module.named_children():
        setattr(module, name, IntMMLinear(child)) if isinstance(child, nn.Linear) else swap_linears(child)
    return module


def main() -> None:
    torch.set_num_threads(1)
    model, tokenizer = JointNLU.create(default_encoder(), Labels(intents=["a", "b"]))
    model.eval()
    variants: dict[str, Any] = {
        "fp32": model,
        "torch.ao int8": model.quantized(),
        "_int_mm int8": swap_linears(copy.deepcopy(model)),
    }
    turn = [
        ["i", "want", "to", "cancel", "my", "order", "four", "five", "seven", "two", "one", "nine", "please"]
    ]
    reference = run(model, tokenizer, turn).match
    for name, variant in variants.items():
        for _ in range(5):
            run(variant, tokenizer, turn)
        start = time.perf_counter()
        for _ in range(100):
            out = run(variant, tokenizer, turn)
        ms = (time.perf_counter() - start) * 10
        print(f"{name:14s} {ms:7.1f} ms/parse  max |match - fp32| {np.abs(out.match - reference).max():.4f}")


if __name__ == "__main__":
    main()
