"""TTS benchmark: time to first audio for one-sentence replies, first chunk of a 3-sentence reply, cache hits.

    .venv/bin/python scripts/bench_tts.py --out docs --progress

Every measurement is `CachedTTS.synthesize_at(text, 8000)`, the call the speak stage makes (synthesis plus
resampling to the 8 kHz phone channel). Replies are spoken sentence by sentence, so "first audio" is the
time until the first sentence's audio exists. Rewrites the `bench_tts` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import _bench_common as bc
from tqdm import tqdm

from voicebot.config import TTSConfig
from voicebot.tts import CachedTTS, make_tts, split_sentences

BACKENDS = ("piper", "espeak-ng", "flite")
RATE = 8000
TARGETS = {"first_ms": 150.0, "cached_ms": 5.0}
SENTENCES = [
    "Sure, I can help with that.",
    "Thanks for calling.",
    "Could you spell your last name for me?",
    "Your order number four five seven two one nine shipped yesterday.",
    "The refund of forty nine dollars and ninety nine cents was issued on Monday.",
    "I'm sorry to hear the package arrived damaged.",
    "Let me check that for you.",
    "Your parcel is out for delivery and should arrive before six this evening.",
    "Can you confirm the last four digits of the card on file?",
    "I have cancelled your subscription, and you will not be charged again.",
    "One moment please.",
    "The tracking number is eight three one six zero four two seven.",
    "Your account has been unlocked, and a reset link is on its way to your email.",
    "Would you like me to send a replacement or issue a refund?",
    "Okay.",
    "Returns are free within thirty days of delivery, as long as the item is unused.",
    "I see two orders on your account; which one are you calling about?",
    "The payment was declined by your bank, so the order is on hold.",
    "Great, the delivery address is now updated to your office.",
    "Is there anything else I can help you with today?",
    "I can transfer you to a specialist, but the wait is about five minutes.",
    "Your gift card balance is twenty five dollars.",
    "That discount code expired on the first of the month.",
    "I have noted your complaint and a supervisor will call you back within one business day.",
    "Please hold while I look up your account.",
    "The restocking fee is ten percent of the item price.",
    "Express shipping to Canada takes two to four business days.",
    "Got it, thank you.",
    "Your membership renews automatically every year on the date you joined, unless you turn it off.",
    "I'm afraid I couldn't find an order with that number; could you read it to me again?",
]
REPLIES = [
    "I found your order. It shipped on Tuesday and should arrive tomorrow. Is there anything else?",
    "Thanks for waiting. Your refund of thirty four dollars fifty is approved. It takes three to five days.",
    "I'm sorry about that. I have sent a replacement at no cost. You will get a confirmation email shortly.",
    "Sure. Your account is unlocked now. Please set a new password the next time you sign in.",
    "Okay, let me look. I see a charge of nineteen ninety nine from the trial. I can reverse it for you.",
    "Your delivery is rescheduled for Friday morning. The courier will call ahead. Anything else today?",
    "Got it. The email on your account is updated. You will receive a verification code by text.",
    "I understand. I have escalated this to a supervisor. They will call you within one business day.",
    "Your gift card has twenty five dollars left. It does not expire. Would you like to use it now?",
    "That item can be exchanged. Print the label from your account. Drop it at any post office.",
]


def timed(tts: CachedTTS, text: str) -> tuple[float, float]:
    """(milliseconds, seconds of audio) for one `synthesize_at` call."""
    start = time.perf_counter()
    pcm = tts.synthesize_at(text, RATE)
    return (time.perf_counter() - start) * 1000.0, pcm.size / RATE


def bench(
    backend: str, rounds: int, cached_calls: int, progress: bool
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    start = time.perf_counter()
    tts = make_tts(TTSConfig(backend=backend))  # type: ignore[arg-type]
    load_ms = (time.perf_counter() - start) * 1000.0
    cold_ms, _ = timed(tts, "Hello, how can I help you today?")  # first synthesis after load
    for text in tqdm(SENTENCES * rounds, desc=f"{backend} sentences", disable=not progress):
        tts.clear()  # every round is a cache miss again
        ms, audio_s = timed(tts, text)
        rows.append({"backend": backend, "kind": "one sentence", "text": text, "ms": ms, "audio_s": audio_s})
    for reply in tqdm(REPLIES * rounds, desc=f"{backend} replies", disable=not progress):
        tts.clear()
        start = time.perf_counter()
        chunks = split_sentences(reply)
        first = tts.synthesize_at(chunks[0], RATE)
        ms = (time.perf_counter() - start) * 1000.0
        rest = [timed(tts, c) for c in chunks[1:]]
        rows.append({
            "backend": backend, "kind": "3-sentence first chunk", "text": chunks[0], "ms": ms,
            "audio_s": first.size / RATE, "chunks": len(chunks),
            "whole_reply_ms": ms + sum(r[0] for r in rest),
        })  # fmt: skip
    tts.warm(SENTENCES, RATE)
    rng = random.Random(1)
    for text in rng.choices(SENTENCES, k=cached_calls):
        ms, audio_s = timed(tts, text)
        rows.append({"backend": backend, "kind": "cached", "text": text, "ms": ms, "audio_s": audio_s})
    return rows, {"load_ms": load_ms, "cold_first_ms": cold_ms, "hits": tts.hits, "misses": tts.misses}


def summarise(rows: list[dict[str, Any]]) -> dict[str, float]:
    ms = [r["ms"] for r in rows]
    audio = sum(r["audio_s"] for r in rows)
    return {
        "n": len(rows),
        "p50": bc.pct(ms, 50),
        "p95": bc.pct(ms, 95),
        "p99": bc.pct(ms, 99),
        "max": max(ms),
        "rtf": sum(ms) / 1000 / audio if audio else float("nan"),
        "words_p50": bc.pct([len(r["text"].split()) for r in rows], 50),
        "whole_p50": bc.pct([r["whole_reply_ms"] for r in rows if "whole_reply_ms" in r], 50),
    }


def report(
    cmd: str, machine: str, summary: dict[str, dict[str, float]], meta: dict[str, Any], rounds: int
) -> str:
    fmt, met = bc.fmt, bc.met
    piper1, piper3 = summary["piper|one sentence"], summary["piper|3-sentence first chunk"]
    targets = [
        [f"{b}: first audio, one-sentence reply, p50 ≤ 150 ms", f"{fmt(s['p50'])} ms (p95 {fmt(s['p95'])})",
         met(s["p50"] <= TARGETS["first_ms"])] for b in meta for s in [summary[f"{b}|one sentence"]]
    ] + [
        [f"{b}: first chunk of a 3-sentence reply, p50 ≤ 150 ms", f"{fmt(s['p50'])} ms (p95 {fmt(s['p95'])})",
         met(s["p50"] <= TARGETS["first_ms"])] for b in meta for s in [summary[f"{b}|3-sentence first chunk"]]
    ] + [
        [f"{b}: cached prompt ≤ 5 ms (judged at p99)", f"p50 {s['p50']:.4f} ms, p99 {s['p99']:.4f} ms",
         met(s["p99"] <= TARGETS["cached_ms"])] for b in meta for s in [summary[f"{b}|cached"]]
    ]  # fmt: skip
    table = [[*k.split("|"), int(s["n"]), fmt(s["words_p50"], 0), f"{s['p50']:.3f}", f"{s['p95']:.3f}",
              f"{s['p99']:.3f}", f"{s['max']:.3f}", fmt(s["rtf"], 3)]
             for k, s in summary.items()]  # fmt: skip
    words = sorted(len(t.split()) for t in SENTENCES)
    loads = [[b, fmt(m["load_ms"]), fmt(m["cold_first_ms"]), m["hits"], m["misses"]] for b, m in meta.items()]
    out = [
        "## TTS benchmark",
        f"Command: `{cmd}`",
        machine,
        "Every number is the wall time of `CachedTTS.synthesize_at(text, 8000)` (synthesis + resampling "
        "to the 8 kHz phone channel), called sequentially in one process. *one sentence*: "
        f"{len(SENTENCES)} different one-sentence replies ({words[0]}–{words[-1]} words) × {rounds} rounds, "
        f"cache misses. *3-sentence first chunk*: {len(REPLIES)} three-sentence replies × {rounds} through "
        "`split_sentences`; time until the first chunk's audio exists (the speak stage plays it while the "
        "next one is made). *cached*: prompts already in the LRU. RTF = synthesis time / audio time.",
        "### Targets",
        bc.md_table(["target", "measured", "status"], targets),
        f"Default backend (Piper): one-sentence first audio p50 {fmt(piper1['p50'])} ms, first chunk of a "
        f"3-sentence reply p50 {fmt(piper3['p50'])} ms. Piper synthesises a whole sentence before any of it "
        "can play, so first-audio time grows with the first sentence's length; synthesising the whole "
        f"3-sentence reply before playing would take p50 {fmt(piper3['whole_p50'])} ms.",
        "### Latency (ms)",
        bc.md_table(["backend", "measure", "n", "words p50", "p50", "p95", "p99", "max", "RTF"], table),
        "### Load and first call",
        bc.md_table(["backend", "load ms", "first synthesis after load ms", "cache hits", "misses"], loads),
        "Raw rows: [tts_latency.csv](results/tts_latency.csv), [summary](results/tts_summary.json).",
        "![TTS first-audio latency CDF](img/tts_first_audio_cdf.png)",
    ]
    return "\n\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("docs"))
    ap.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    ap.add_argument("--rounds", type=int, default=3, help="times each sentence and reply is synthesised")
    ap.add_argument("--cached-calls", type=int, default=2000, help="cache-hit calls timed per backend")
    ap.add_argument("--progress", action="store_true")
    args = ap.parse_args()
    info = bc.machine_info()
    rows: list[dict[str, Any]] = []
    meta: dict[str, Any] = {}
    for backend in args.backends:
        more, meta[backend] = bench(backend, args.rounds, args.cached_calls, args.progress)
        rows += more
    summary = {
        f"{b}|{k}": summarise([r for r in rows if (r["backend"], r["kind"]) == (b, k)])
        for b in args.backends
        for k in ("one sentence", "3-sentence first chunk", "cached")
    }
    results = args.out / "results"
    bc.write_csv(results / "tts_latency.csv", [r for r in rows if r["kind"] != "cached"])
    machine = bc.machine_line(info)  # also adds the CPU other processes took during the run to `info`
    raw = {"machine": info, "summary": summary, "backends": meta}
    (results / "tts_summary.json").write_text(json.dumps(raw, indent=1))
    series = {
        f"{b} {k}": [r["ms"] for r in rows if (r["backend"], r["kind"]) == (b, k)]
        for b in args.backends
        for k in ("one sentence", "3-sentence first chunk")
    }
    bc.cdf_plot(
        args.out / "img" / "tts_first_audio_cdf.png", series, "time to first audio (ms, log)",
        "TTS time to first audio at 8 kHz", (TARGETS["first_ms"], "target p50 ≤ 150 ms"), logx=True,
    )  # fmt: skip
    cmd = " ".join([".venv/bin/python scripts/bench_tts.py", *sys.argv[1:]])
    body = report(cmd, machine, summary, meta, args.rounds)
    bc.write_section(args.out / "benchmarks.md", "bench_tts", body)
    print(body)


if __name__ == "__main__":
    main()
