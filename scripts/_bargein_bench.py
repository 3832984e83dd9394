"""The backchannel half of scripts/bench_turns.py: does the bot talk on through "mm-hmm" and stop for "wait"?

Each clip is one caller sound — a backchannel ("Okay.", "Uh huh.", "Right.", …, a cough) or an interruption
("Wait.", "No.", "Stop, that's wrong.", a question, a correction) — said by one voice, sent down a simulated
phone line, and played in real time into a live call (`CallPipeline` with the real models, paced, 8 kHz)
`LEAD_S` into a long bot reply. The judge (`voicebot.asr.bargein`, the shipped `bargein` settings) decides
as on a real call, with this machine's decode times. Reported per voice group (tuned, held out:
models/voices.py) and per phrase:

- backchannel false stops: clips after which the transport was told to clear the bot's audio;
- interruption misses: interruption clips that did not stop the bot;
- stop latency p50/p95: from the clip's first voiced sample to the transport's clear (the bot's audio stops
  on the caller's side), and the judge's own `latency_ms` from the turn record.

The line carries no echo of the bot (an echo canceller's residue would be one more thing to hear as speech).
"Mm-hmm" is written "Mhm." for the synthesisers, none of which hums it well: Whisper hears Piper's "Mhm." as
"mhm" but its "Hm hm." as "Hm Hm" (0.86 s) and its "Mm-hmm." as nothing, espeak-ng's "Mhm." as "and make
arm" — that phrase measures the synthesiser as much as the judge. A cough is shaped noise, not a recording.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import _bench_common as bc
import numpy as np

from models.voices import VOICES, Voice
from voicebot.brain import EchoBrain
from voicebot.filecall import feed_audio
from voicebot.frames import PCM, BotReply, Frame, Interruption
from voicebot.line.chain import simulate
from voicebot.line.config import preset
from voicebot.pipeline import CallPipeline, Services
from voicebot.testing.fakes import TapSink

BACKCHANNELS = ("Okay.", "Uh huh.", "Right.", "Yeah.", "Mhm.", "Sure.", "I see.", "<cough>")
INTERRUPTIONS = (
    "Wait.",
    "No.",
    "Stop, that's wrong.",
    "Hold on.",
    "Sorry, what was that?",
    "No, I said Tuesday.",
    "Can you repeat that?",
    "Actually, I want a refund.",
)
COUGH = "<cough>"
LEAD_S, TAIL_S = 0.8, 2.5  # bot speech before the clip; time after it for the judge to decide
RATE = 8_000
BOT_REPLY = (
    "Thanks for calling Acme Shop. I can track an order, change a delivery address, arrange a return or a "
    "refund, and tell you about our opening hours, and I can put you through to a person at any time. "
    "What can I do for you today?"
)


def cough(seed: int) -> PCM:
    """~0.3 s of shaped noise: a sharp onset, an exponential decay, low-passed to a chesty sound."""
    rng = np.random.default_rng(seed)
    n = int(0.3 * RATE)
    noise = rng.standard_normal(n)
    smooth = np.convolve(noise, np.ones(4) / 4, mode="same")
    env = np.minimum(np.arange(n) / (0.01 * RATE), 1.0) * np.exp(-np.arange(n) / (0.08 * RATE))
    shaped = smooth * env
    out: PCM = (shaped / float(np.max(np.abs(shaped))) * 0.5 * 32767).astype(np.int16)
    return out


@dataclass
class Outcome:
    voice: str
    held_out: bool
    line: str
    phrase: str
    backchannel: bool
    stopped: bool
    stop_ms: float | None  # clip's first voiced sample → the transport's clear
    decisions: list[dict[str, Any]] = field(default_factory=list)  # the turn record's interruptions


class LongReply(EchoBrain):
    def greeting(self) -> BotReply | None:
        return BotReply(text=BOT_REPLY)


class ClearClock(TapSink):
    """The sink of the bench's calls: when (perf_counter) the transport was told to clear."""

    def __init__(self) -> None:
        super().__init__()
        self.cleared_at: list[float] = []

    async def clear(self) -> None:
        self.cleared_at.append(time.perf_counter())
        await super().clear()


async def play_over_bot(services: Services, clip: PCM) -> tuple[float | None, list[Interruption]]:
    """One call: the bot's long reply, and `clip` (8 kHz, voiced from its first sample) `LEAD_S` into it.
    Returns the stop latency (None: the bot talked on) and the judge's decisions."""
    sink = ClearClock()
    pipe = CallPipeline(services, LongReply(), sink, channel_rate=RATE, paced=True, partials=False)
    seen: list[Frame] = []

    async def drain() -> None:
        while True:
            seen.append(await pipe.events.get())

    draining = asyncio.create_task(drain())
    await pipe.start()
    try:
        while not sink.frames:  # the reply's first audio is out
            await asyncio.sleep(0.01)
        silence = np.zeros(int(LEAD_S * RATE), np.int16)
        await feed_audio(pipe, silence, realtime=True)
        speech_at = time.perf_counter()
        await feed_audio(pipe, np.concatenate([clip, np.zeros(int(TAIL_S * RATE), np.int16)]), realtime=True)
    finally:
        await pipe.close()
        draining.cancel()
    stop = (sink.cleared_at[0] - speech_at) * 1000 if sink.cleared_at else None
    return stop, [f for f in seen if isinstance(f, Interruption)]


def run(
    services: Services,
    voices: list[str],
    lines: list[str],
    seed: int,
    speak: Callable[[Voice, str], PCM],
    limit: int | None = None,
) -> list[Outcome]:
    """Every phrase by every voice down every line (the first `limit` phrases of each kind, if given)."""
    phrases = [*BACKCHANNELS[:limit], *INTERRUPTIONS[:limit]]
    out: list[Outcome] = []
    for vi, name in enumerate(voices):
        voice = VOICES[name]
        for li, line in enumerate(lines):
            for pi, phrase in enumerate(phrases):
                n = seed + 1000 * vi + 100 * li + pi
                pcm = cough(n) if phrase == COUGH else speak(voice, phrase)
                sent = simulate(pcm, RATE, preset(line).model_copy(update={"seed": n}))
                stop, decisions = asyncio.run(play_over_bot(services, sent))
                out.append(
                    Outcome(
                        name,
                        voice.held_out,
                        line,
                        phrase,
                        phrase in BACKCHANNELS,
                        stop is not None,
                        None if stop is None else round(stop, 1),
                        [d.as_json() for d in decisions],
                    )
                )
            print(f"{name} {line}: {len(phrases)} clips over bot speech", file=sys.stderr, flush=True)
    return out


def summarise(rows: list[Outcome]) -> dict[str, Any]:
    bcs = [r for r in rows if r.backchannel]
    ints = [r for r in rows if not r.backchannel]
    stops = [r.stop_ms for r in ints if r.stop_ms is not None]
    judged = [
        next(d["latency_ms"] for d in r.decisions if d["decision"] == "stop")
        for r in ints
        if any(d["decision"] == "stop" for d in r.decisions)
    ]
    return {
        "backchannels": len(bcs),
        "false_stops_pct": round(100 * sum(r.stopped for r in bcs) / len(bcs), 1) if bcs else None,
        "interruptions": len(ints),
        "missed_pct": round(100 * sum(not r.stopped for r in ints) / len(ints), 1) if ints else None,
        "stop_p50_ms": round(bc.pct(stops, 50), 1) if stops else None,
        "stop_p95_ms": round(bc.pct(stops, 95), 1) if stops else None,
        "judge_p50_ms": round(bc.pct(judged, 50), 1) if judged else None,
        "judge_p95_ms": round(bc.pct(judged, 95), 1) if judged else None,
    }


def summary(rows: list[Outcome]) -> dict[str, Any]:
    return {
        "all": summarise(rows),
        "tuned voices": summarise([r for r in rows if not r.held_out]),
        "held-out voices": summarise([r for r in rows if r.held_out]),
        "by phrase": {
            p: summarise([r for r in rows if r.phrase == p]) for p in dict.fromkeys(r.phrase for r in rows)
        },
    }


def _ms(x: float | None) -> str:
    return "—" if x is None else bc.fmt(x, 0)


def report(cmd: str, machine: str, s: dict[str, Any], voices: list[str], lines: list[str]) -> str:
    """The `turns-bargein` section of docs/benchmarks.md."""
    head = ["voices", "backchannel false stops", "interruptions missed", "stop p50 ms", "stop p95 ms",
            "judge p50 ms", "judge p95 ms"]  # fmt: skip

    def cells(x: dict[str, Any]) -> list[str]:
        pct = [("—" if x[k] is None else f"{x[k]} %") for k in ("false_stops_pct", "missed_pct")]
        return [*pct, *map(_ms, (x["stop_p50_ms"], x["stop_p95_ms"], x["judge_p50_ms"], x["judge_p95_ms"]))]

    groups = [[g, *cells(s[g])] for g in ("all", "tuned voices", "held-out voices")]
    phrases = [[p, *cells(x)] for p, x in s["by phrase"].items()]
    held = ", ".join(v for v in voices if VOICES[v].held_out) or "none"
    return "\n\n".join(
        [
            "### Backchannels and interruptions over bot speech",
            f"`{cmd}`. {machine}",
            f"Voices {', '.join(voices)} (held out: {held}); lines {', '.join(lines)}; each clip played "
            f"{LEAD_S} s into a long bot reply on a live call (real models, paced). Stop latency: the clip's "
            "first voiced sample to the transport's clear; judge: speech start to decision (turn record).",
            bc.md_table(head, groups),
            "By phrase (“Mhm.” stands for mm-hmm; `<cough>` is shaped noise):",
            bc.md_table(["phrase", *head[1:]], phrases),
        ]
    )


def as_json(rows: list[Outcome], s: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    return {"bargein_config": config, "summary": s, "clips": [asdict(r) for r in rows]}
