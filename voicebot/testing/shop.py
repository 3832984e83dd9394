"""The shop domain's NLU model for tests: its *first* model (models/train_first.py), trained once per data
and cached under the config's cache dir.

It is what `make run` serves on a fresh machine, so the conversation suite tests the model a new user meets
first. It also costs less than the quick model the suite trained before (84 s on 2 cores, 186 CPU-seconds,
against about 4 minutes on 2 cores for the quick model's fine-tune of a sample; 7.5 minutes inside the
parallel suite), and that training sits at the start of the suite's critical path. Parallel test workers
train it once: `train_domain` holds the model's lock, and the others wait for it and load it.
"""

from __future__ import annotations

from pathlib import Path

SHOP = Path(__file__).resolve().parents[2] / "domains" / "shop"  # the shop domain every harness uses


def shop_model(cache_dir: Path) -> Path:
    from models.train_domain import train_domain
    from models.train_first import FirstModelConfig

    model, _ = train_domain(SHOP, cache_dir, first=FirstModelConfig(), progress=False)
    return model


if __name__ == "__main__":  # tests/conftest.py starts this when the suite begins: the model, trained once
    from voicebot.config import VoicebotConfig

    print(shop_model(VoicebotConfig().cache_dir))
