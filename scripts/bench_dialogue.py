"""Dialogue benchmark: the shop domain end to end, written to the "Dialogue" section of docs/benchmarks.md.

    python scripts/bench_dialogue.py            # the full shop model (trained first if missing, ~18 min)
    python scripts/bench_dialogue.py --quick    # the quick model (a sample of the data, fewer epochs)

1. Task success on the conversation suite (tests/conversations/shop): text conversations as written; audio =
   the recorded audio conversations plus every text conversation with each caller line spoken by the TTS
   voice over an 8 kHz μ-law line and recognised by Whisper. Spoken variants are judged on the task's
   outcome only (act, action, action result, transfer, hang-up): a transcript writing "22 Park Lane" for
   "twenty two Park Lane" is not a failed task.
2. Intent accuracy on the Bitext held-out split (the seeded test split the domain never trains on).
3. Order numbers from speech: synthetic callers answer "what's your order number?" over the phone line;
   exact match of the order_id slot after Whisper, the NLU and the slot reading the dialogue does.
4. Dialogue step time (state update + policy + NLG; no NLU, no back end) from every turn record.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _bench_common import (
    bar_chart,
    fmt,
    machine_info,
    machine_line,
    md_table,
    met,
    pct,
    write_section,
)
from _spoken_parts import spoken_number

from voicebot.audio import resample, to_float, write_wav
from voicebot.config import VoicebotConfig
from voicebot.convtest.results import ConversationResult
from voicebot.convtest.runner import run_conversation
from voicebot.convtest.spec import Conversation, Expect, Step, collect_files, load_conversation
from voicebot.dialogue.brain import DialogueFactory
from voicebot.dialogue.slots import from_entities, read_whole, valid
from voicebot.line import PRESETS, simulate
from voicebot.nlu.parser import NLU
from voicebot.pipeline import Services
from voicebot.tts import split_sentences

ROOT = Path(__file__).resolve().parent.parent
SHOP = ROOT / "domains" / "shop"
SUITE = ROOT / "tests" / "conversations" / "shop"
OUTCOME_KEYS = ("act", "action", "action_result", "transfer", "hangup", "silent")


def phone_line(services: Services, text: str) -> np.ndarray:
    """TTS at 8 kHz through μ-law, as a caller on a phone sounds to the bot."""
    pcm = np.concatenate([services.tts.synthesize_at(s, 8_000) for s in split_sentences(text)])
    return simulate(pcm, 8_000, PRESETS["mulaw"])


def spoken_variant(spec: Conversation, services: Services, folder: Path) -> Conversation | None:
    """The conversation with every caller text line turned into phone audio; expectations on outcome only."""
    if not any(step.caller for step in spec.steps):
        return None
    steps = []
    for n, step in enumerate(spec.steps):
        expect = Expect(
            **{k: v for k, v in step.expect.model_dump(exclude_unset=True).items() if k in OUTCOME_KEYS}
        )
        if step.caller and step.barge_in_after_ms is None:
            path = folder / f"{spec.name[:40].replace(' ', '_').replace('/', '_')}_{n}.wav"
            write_wav(path, phone_line(services, step.caller), 8_000)
            steps.append(Step(audio=str(path), expect=expect))
        else:
            steps.append(step.model_copy(update={"expect": expect}))
    return spec.model_copy(update={"steps": steps, "name": f"{spec.name} (spoken)"})


async def run_all(
    services: Services, factory: DialogueFactory, specs: list[Conversation]
) -> list[ConversationResult]:
    return [await run_conversation(services, factory, spec, 8_000, PRESETS["mulaw"]) for spec in specs]


def step_times(results: list[ConversationResult]) -> list[float]:
    out = []
    for result in results:
        for step in result.steps:
            for record in step.records:
                value = (record.get("timings_ms") or {}).get("dialogue_step")
                if value is not None:
                    out.append(float(value))
    return out


def bitext_accuracy(nlu: NLU) -> tuple[float, int]:
    from models.data import load_dataset

    test = load_dataset("bitext").test
    parses = []
    for start in range(0, len(test), 64):
        parses += nlu.parse_batch([e.text for e in test[start : start + 64]])
    right = sum(p.intent == e.intent for p, e in zip(parses, test, strict=True))
    return right / len(test), len(test)


def order_numbers(
    services: Services, factory: DialogueFactory, n: int, seed: int = 13
) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    templates = ["{}", "it's {}", "my order number is {}", "yeah it's {}", "the number is {}", "um {}"]
    slot = factory.domain.slots["order_id"]
    rows = []
    for _ in range(n):
        digits = "".join(rng.choice("0123456789") for _ in range(6))
        text = rng.choice(templates).format(spoken_number(digits, rng, pauses=False))
        audio = resample(phone_line(services, text), 8_000, 16_000)
        transcript = services.asr.transcribe(to_float(audio)).text
        parse = factory.nlu.parse(transcript)
        found = from_entities(factory.domain, parse, prefer=["order_id"]).values.get("order_id")
        if found is None:
            whole = read_whole(slot, transcript)
            found = whole if whole is not None and valid(slot, whole) else None
        rows.append(
            {"said": text, "digits": digits, "transcript": transcript, "read": found, "ok": found == digits}
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="the quick shop model (sampled data)")
    parser.add_argument("--orders", type=int, default=60, help="spoken order numbers to try")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--results", type=Path, default=ROOT / "docs" / "results")
    args = parser.parse_args()

    from models.train_domain import train_domain

    config = VoicebotConfig()
    info = machine_info()
    model, _ = train_domain(SHOP, config.cache_dir, quick=args.quick, progress=True)
    services = Services.load(config)
    nlu = NLU(model, threads=config.nlu.threads, int8=config.nlu.int8)
    factory = DialogueFactory(
        SHOP, nlu, config.cache_dir, scratch=Path(tempfile.mkdtemp(prefix="bench-dlg-"))
    )

    specs = [load_conversation(p) for p in collect_files([SUITE])]
    has_audio = [any(s.audio for s in spec.steps) for spec in specs]
    started = time.perf_counter()
    written = asyncio.run(run_all(services, factory, specs))
    with tempfile.TemporaryDirectory() as tmp:
        spoken_specs = [
            v
            for v in (
                spoken_variant(s, services, Path(tmp)) for s in specs if not any(st.audio for st in s.steps)
            )
            if v
        ]
        spoken = asyncio.run(run_all(services, factory, spoken_specs))
    suite_s = time.perf_counter() - started

    text_results = [r for r, a in zip(written, has_audio, strict=True) if not a]
    audio_results = [r for r, a in zip(written, has_audio, strict=True) if a] + spoken
    text_ok = sum(r.passed for r in text_results) / len(text_results)
    audio_ok = sum(r.passed for r in audio_results) / len(audio_results)
    times = step_times(written + spoken)
    accuracy, n_test = bitext_accuracy(nlu)
    orders = order_numbers(services, factory, args.orders)
    order_ok = sum(r["ok"] for r in orders) / len(orders)

    kind = "quick" if args.quick else "full"
    args.results.mkdir(parents=True, exist_ok=True)
    failed = [
        {"name": r.name, "failures": [f for s in r.steps for f in s.failures] + r.errors}
        for r in written + spoken
        if not r.passed
    ]
    (args.results / f"dialogue_{kind}.json").write_text(
        json.dumps(
            {
                "model": str(model),
                "text_success": text_ok,
                "audio_success": audio_ok,
                "bitext_intent_accuracy": accuracy,
                "order_exact": order_ok,
                "dialogue_step_ms": times,
                "orders": orders,
                "failed": failed,
                "machine": info,
            },
            indent=1,
        )
    )
    bar_chart(
        args.results.parent / "img" / f"dialogue_{kind}.png",
        ["text", "audio (8 kHz μ-law)"],
        {"task success %": [100 * text_ok, 100 * audio_ok]},
        "%",
        f"Shop conversations ({kind} model)",
    )

    rows = [
        [
            "task success, text turns",
            f"{len(text_results)} conversations",
            f"{100 * text_ok:.1f} %",
            "≥ 95 %",
            met(text_ok >= 0.95),
        ],
        [
            "task success, audio turns (8 kHz μ-law)",
            f"{len(audio_results)} conversations",
            f"{100 * audio_ok:.1f} %",
            "≥ 85 %",
            met(audio_ok >= 0.85),
        ],
        [
            "intent accuracy, Bitext held-out split",
            f"{n_test} utterances",
            f"{100 * accuracy:.2f} %",
            "≥ 97 %",
            met(accuracy >= 0.97),
        ],
        [
            "order number exact from speech (8 kHz μ-law)",
            f"{len(orders)} callers",
            f"{100 * order_ok:.1f} %",
            "≥ 98 %",
            met(order_ok >= 0.98),
        ],
        [
            "dialogue step p50 / p95 / p99 (ms)",
            f"{len(times)} turns",
            f"{fmt(pct(times, 50), 3)} / {fmt(pct(times, 95), 3)} / {fmt(pct(times, 99), 3)}",
            "p95 ≤ 5 ms",
            met(pct(times, 95) <= 5.0),
        ],
    ]
    misses = (
        "\n".join(
            f"- {r['said']!r} → Whisper {r['transcript']!r} → {r['read']}" for r in orders if not r["ok"]
        )
        or "- none"
    )
    fails = "\n".join(f"- {f['name']}: {'; '.join(f['failures'])[:300]}" for f in failed) or "- none"
    body = f"""## Dialogue (shop domain, {kind} NLU model)

Command: `python scripts/bench_dialogue.py{" --quick" if args.quick else ""}` ({suite_s:.0f} s of suites).
{machine_line(info)}

{md_table(["measure", "on", "measured", "target", ""], rows)}

![task success](img/dialogue_{kind}.png)

Spoken variants keep only outcome expectations (act, action, action result, transfer, hang-up). Raw results:
`docs/results/dialogue_{kind}.json`.

Failed conversations:
{fails}

Order numbers not read exactly:
{misses}
"""
    write_section(args.doc, f"dialogue-{kind}", body)
    print(body)
    services.close()


if __name__ == "__main__":
    main()
