"""Turn-taking benchmark: when does each end-of-turn detector decide that the caller is done?

    .venv/bin/python scripts/bench_turns.py --quick --no-write   # 2 voices, one line: a smoke run
    .venv/bin/python scripts/bench_turns.py                      # 4 voices (2 held out), 2 lines
    .venv/bin/python scripts/bench_turns.py --part bargein --quick --limit 2 --no-write   # the other half

A labelled set of caller turns, each said by several synthetic voices and sent down a simulated phone line:
finished sentences, yes/no answers, order numbers read whole and in groups with 0.5-1.4 s pauses, hesitations
("I'd like to, um, … cancel my order."), trailing "and…", comma pauses. Every pause inside a turn is one the
bot must wait through; the pause after the last word is the one it should answer after, soon.

The audio goes through the real endpointer (Silero VAD, `voicebot.vad.Endpointer`); at each pause, once it
is `turn.speculate_after_ms` long, the listener's observations are taken as on a live call: the speculative
Whisper decode under the turn's listening context (`voicebot.nlu.grammar.listening_plan`) and smart-turn
v3.2's P(complete), each timed. Each detector then turns the same observations into the pause it needs:

- timer (before): the fixed `vad.end_silence_ms`, or the context's longer pause for a number unless a
  hypothesis already reads as the whole number (the behaviour before `turn.decide`);
- smart-turn alone: `turn.complete_ms` when the audio model hears the turn complete, else `turn.hold_ms`;
- text + context: `voicebot.asr.turnend.decide` without the audio model;
- text + context + smart-turn: `decide` with it (the shipped default when `turn.audio_model` names it).

A turn ends at the first pause that lasts as long as its detector needs, and no sooner than the observation
it needs is computed (`speculate_after_ms` + decode/model time). Reported per detector: decision latency
after the caller's last word (p50/p95), false cuts (the turn ended inside the caller's turn), over-waits
(decision over 1 s after the last word), by category and by tuned vs held-out voices (models/voices.py: the
held-out families were never listened to while choosing the rules). Results: docs/results/turns.json, the
`turns` section of docs/benchmarks.md, docs/img/turns.png.

The other half (`--part bargein`, in scripts/_bargein_bench.py): backchannels and interruptions by the same
voices played over bot speech on live calls; backchannel false stops and interruption stop latency, in
turns.json under "bargein" and the `turns-bargein` section.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _bargein_bench as bargein
import _bench_common as bc
from _turns_report import plot, report, summarise

from models.voices import VOICES, Voice
from voicebot.asr.turnend import decide
from voicebot.audio import resample, to_float
from voicebot.config import TurnConfig, VoicebotConfig
from voicebot.frames import ListeningContext, SpeechAudio, SpeechStarted
from voicebot.line.chain import simulate
from voicebot.line.config import preset
from voicebot.nlu.grammar import listening_plan
from voicebot.pipeline import Services
from voicebot.vad import WINDOW, WINDOW_MS, Endpointer

FREE = ListeningContext(expected="free")
YES_NO = ListeningContext(expected="yes_no")
ORDER = ListeningContext(
    expected="slot", slot="order_id", slot_type="digits", min_length=6, max_length=6, end_silence_ms=1500
)
# (category, context, the parts said with a pause between them)
TURNS: list[tuple[str, ListeningContext, tuple[str, ...]]] = [
    *[
        ("sentence", FREE, (t,))
        for t in (
            "I'd like to cancel my order.",
            "Where is my parcel?",
            "Can I speak to a person, please?",
            "Thank you, goodbye.",
            "I want a refund for the shoes.",
            "What are your opening hours?",
            "My package arrived damaged.",
            "Please change my delivery address.",
        )
    ],
    *[("yes/no", YES_NO, (t,)) for t in ("Yes.", "No.", "Yes, that's right.", "No, that's wrong.", "Yeah.")],
    ("number whole", ORDER, ("four five seven two one nine.",)),
    ("number whole", ORDER, ("eight three oh, one one two.",)),
    ("number in groups", ORDER, ("four five seven", "two one nine.")),
    ("number in groups", ORDER, ("eight three zero", "one one two.")),
    ("number in groups", ORDER, ("double five one", "six oh four.")),
    ("number in groups", ORDER, ("three three", "seven two", "nine nine.")),
    ("hesitation", FREE, ("I'd like to, um,", "cancel my order.")),
    ("hesitation", FREE, ("It's about, uh,", "a refund.")),
    ("hesitation", FREE, ("Um,", "where is my parcel?")),
    ("trailing", FREE, ("I want to track my order and", "change the address.")),
    ("trailing", FREE, ("My order number is", "four five seven two one nine.")),
    ("trailing", FREE, ("I'd like to return the shoes because", "they are too small.")),
    ("comma pause", FREE, ("No thanks,", "goodbye.")),
    ("comma pause", FREE, ("Hi,", "I'd like a refund.")),
    ("comma pause", FREE, ("Okay,", "what about my invoice?")),
]
PAUSES_S = (0.5, 0.8, 1.1, 1.4)
LEAD_S, TAIL_S = 0.4, 2.2


@dataclass
class Pause:
    """One pause the listener saw: when its silence began, how long it lasted, what was observed."""

    start_s: float
    length_ms: float
    final: bool  # the caller's last pause: the turn is over
    text: str
    alternatives: list[str]
    audio_p: float
    decode_ms: float
    model_ms: float


@dataclass
class Clip:
    voice: str
    held_out: bool
    line: str
    category: str
    parts: tuple[str, ...]
    pauses_s: list[float]
    last_word_s: float
    turn: int  # index into TURNS (its listening context)
    seen: list[Pause] = field(default_factory=list)


def _trimmed(voice: Voice, text: str) -> np.ndarray:
    pcm = voice.speak(text, 8_000)
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > 200)
    return pcm[loud[0] : loud[-1] + 1] if loud.size else pcm


def make_clip(
    voice: Voice, line: str, turn: tuple[str, ListeningContext, tuple[str, ...]], seed: int
) -> tuple[np.ndarray, Clip]:
    """The turn said by `voice` with its pauses, down `line`: 16 kHz PCM and the clip's labels."""
    category, _, parts = turn
    rng = random.Random(seed)
    pauses = [rng.choice(PAUSES_S) for _ in parts[1:]]
    pieces = [np.zeros(int(LEAD_S * 8000), np.int16)]
    for i, part in enumerate(parts):
        pieces.append(_trimmed(voice, part))
        if i < len(pauses):
            pieces.append(np.zeros(int(pauses[i] * 8000), np.int16))
    last_word_s = sum(p.size for p in pieces) / 8000
    pieces.append(np.zeros(int(TAIL_S * 8000), np.int16))
    sent = simulate(np.concatenate(pieces), 8_000, preset(line).model_copy(update={"seed": seed}))
    clip = Clip(voice.name, voice.held_out, line, category, parts, pauses, last_word_s, TURNS.index(turn))
    return resample(sent, 8_000, 16_000), clip


def observe(
    services: Services, pcm: np.ndarray, clip: Clip, context: ListeningContext, turn: TurnConfig
) -> None:
    """Run the endpointer over the clip; at each pause of `speculate_after_ms`, decode and ask smart-turn."""
    cfg = services.config
    endpointer = Endpointer(services.vad, cfg.vad, hold_ms=TAIL_S * 1000)
    prompt, hints = listening_plan(context, cfg.asr.slot_hypotheses)
    start, silence, observing = 0, 0.0, None
    for i in range(0, pcm.size - WINDOW + 1, WINDOW):
        for frame in endpointer.process(pcm[i : i + WINDOW]):
            if isinstance(frame, SpeechStarted):
                start, silence = int(frame.t * 16000), 0.0
            elif isinstance(frame, SpeechAudio):
                if frame.speech:
                    if observing is not None:
                        observing.length_ms = silence
                        clip.seen.append(observing)
                        observing = None
                    silence = 0.0
                    continue
                silence += WINDOW_MS
                if observing is None and silence >= turn.speculate_after_ms:
                    observing = _look(
                        services, pcm[start : i + WINDOW], frame.t - silence / 1000, prompt, hints
                    )
    if observing is not None:
        observing.length_ms, observing.final = silence + TAIL_S * 1000, True  # never ends: the turn is over
        clip.seen.append(observing)


def _look(services: Services, audio: np.ndarray, start_s: float, prompt: Any, hints: Any) -> Pause:
    x = to_float(audio)
    heard = services.asr.transcribe(x, prompt, hints)
    t = time.perf_counter()
    p = services.smart_turn.probability(x) if services.smart_turn is not None else float("nan")
    model_ms = (time.perf_counter() - t) * 1000
    return Pause(start_s, 0.0, False, heard.text, list(heard.alternatives), p, heard.decode_ms, model_ms)


# ------------------------------------------------------------------------------------------- detectors

# (the pause it needs, its compute in ms, the pause after which that compute starts)
Needs = Callable[[Pause, ListeningContext, TurnConfig, float], tuple[float, float, float]]
SPECULATE_BEFORE_MS = 160.0  # the listener's speculative decode started this late before `turn.decide`


def timer(p: Pause, ctx: ListeningContext, turn: TurnConfig, unsure: float) -> tuple[float, float, float]:
    if ctx.end_silence_ms and ctx.expected == "slot":
        fits = listening_plan(ctx, 1)[1].fits
        whole = fits is not None and any(map(fits, [p.text, *p.alternatives]))
        return (unsure if whole else ctx.end_silence_ms), p.decode_ms, SPECULATE_BEFORE_MS
    return unsure, p.decode_ms, SPECULATE_BEFORE_MS


def smart_turn_alone(
    p: Pause, ctx: ListeningContext, turn: TurnConfig, unsure: float
) -> tuple[float, float, float]:
    pause = turn.complete_ms if p.audio_p >= turn.audio_threshold else turn.hold_ms
    return pause, max(p.decode_ms, p.model_ms), turn.speculate_after_ms


def text_context(
    p: Pause, ctx: ListeningContext, turn: TurnConfig, unsure: float
) -> tuple[float, float, float]:
    return decide(p.text, ctx, turn, unsure, p.alternatives).pause_ms, p.decode_ms, turn.speculate_after_ms


def combined(p: Pause, ctx: ListeningContext, turn: TurnConfig, unsure: float) -> tuple[float, float, float]:
    verdict = decide(p.text, ctx, turn, unsure, p.alternatives, p.audio_p)
    return verdict.pause_ms, max(p.decode_ms, p.model_ms), turn.speculate_after_ms  # both at once


DETECTORS: dict[str, Needs] = {
    "timer (before)": timer,
    "smart-turn alone": smart_turn_alone,
    "text + context": text_context,
    "text + context + smart-turn": combined,
}


def outcome(
    clip: Clip, ctx: ListeningContext, needs: Needs, turn: TurnConfig, unsure: float
) -> dict[str, Any]:
    """Where this detector ends the clip's turn: a false cut, or when the bot may answer after the last
    word (the pause it waits and its transcript both in: `latency_ms`) and the pause alone (`pause_ms`,
    from the caller's last word, free of this machine's decode time)."""
    for p in clip.seen:
        pause, compute, start = needs(p, ctx, turn, unsure)
        if p.length_ms < pause:
            continue
        if not p.final:
            return {"false_cut": True, "latency_ms": None, "pause_ms": None}
        ready = p.start_s + max(pause, start + compute) / 1000
        return {
            "false_cut": False,
            "latency_ms": round((ready - clip.last_word_s) * 1000, 1),
            "pause_ms": round((p.start_s + pause / 1000 - clip.last_word_s) * 1000, 1),
        }
    return {"false_cut": False, "latency_ms": None, "pause_ms": None}  # no pause long enough


def score(
    clips: list[Clip], contexts: dict[int, ListeningContext], turn: TurnConfig, unsure: float
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every detector's outcome on every clip, then summaries: overall, by voice group, by category."""
    rows = [
        {"detector": name, "clip": i, "category": c.category, "held_out": c.held_out, "line": c.line}
        | outcome(c, contexts[i], needs, turn, unsure)
        for name, needs in DETECTORS.items()
        for i, c in enumerate(clips)
    ]
    summary: dict[str, Any] = {}
    for name in DETECTORS:
        mine = [r for r in rows if r["detector"] == name]
        summary[name] = {
            "all": summarise(mine),
            "tuned voices": summarise([r for r in mine if not r["held_out"]]),
            "held-out voices": summarise([r for r in mine if r["held_out"]]),
            "by category": {
                cat: summarise([r for r in mine if r["category"] == cat])
                for cat in dict.fromkeys(c.category for c in clips)
            },
        }
    return rows, summary


def listen_all(config: VoicebotConfig, args: argparse.Namespace) -> list[Clip]:
    services = Services.load(config)
    clips: list[Clip] = []
    try:
        for vi, name in enumerate(args.voices):
            for li, line in enumerate(args.lines):
                for ti, spec in enumerate(TURNS):
                    pcm, clip = make_clip(VOICES[name], line, spec, args.seed + 1000 * vi + 100 * li + ti)
                    observe(services, pcm, clip, spec[1], config.turn)
                    clips.append(clip)
                print(f"{name} {line}: {len(TURNS)} turns", file=sys.stderr, flush=True)
    finally:
        services.close()
    return clips


def load(path: Path) -> list[Clip]:
    clips = []
    for c in json.loads(path.read_text())["clips"]:
        seen = [Pause(**p) for p in c.pop("seen")]
        clips.append(Clip(**(c | {"parts": tuple(c["parts"]), "seen": seen})))
    return clips


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--voices", nargs="+", default=["piper-joe", "espeak-us", "flite-kal", "festival-slt-hts"]
    )
    ap.add_argument("--lines", nargs="+", default=["clean-g711", "gsm-loss3"])
    ap.add_argument("--quick", action="store_true", help="piper-joe and flite-kal, clean-g711 only")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--rescore", type=Path, help="score the observations of an earlier run's turns.json again (no audio)"
    )
    ap.add_argument("--no-write", action="store_true", help="print, don't write docs/")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs")
    ap.add_argument(
        "--part",
        choices=("all", "turns", "bargein"),
        default="all",
        help="turn ends, backchannels/interruptions over bot speech (real time: ~4 s a clip), or both",
    )
    ap.add_argument("--limit", type=int, help="bargein: only the first N phrases of each kind (smoke runs)")
    args = ap.parse_args()
    if args.quick:
        args.voices, args.lines = ["piper-joe", "flite-kal"], ["clean-g711"]
    if args.part in ("all", "turns"):
        turn_ends(args)
    if args.part in ("all", "bargein"):
        over_bot_speech(args)


def over_bot_speech(args: argparse.Namespace) -> None:
    """The backchannel half: clips played over bot speech on live calls (scripts/_bargein_bench.py)."""
    info, config = bc.machine_info(), VoicebotConfig()
    services = Services.load(config)
    try:
        rows = bargein.run(services, args.voices, args.lines, args.seed, _trimmed, args.limit)
    finally:
        services.close()
    summary = bargein.summary(rows)
    cmd = " ".join([".venv/bin/python scripts/bench_turns.py", *sys.argv[1:]])
    body = bargein.report(cmd, bc.machine_line(info), summary, args.voices, args.lines)
    if not args.no_write:
        path = args.out / "results" / "turns.json"
        result = json.loads(path.read_text()) if path.exists() else {}
        result["bargein"] = bargein.as_json(rows, summary, config.bargein.model_dump())
        result["bargein"] |= {"command": cmd, "machine": info}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=1))
        bc.write_section(args.out / "benchmarks.md", "turns-bargein", body)
    print(body)


def turn_ends(args: argparse.Namespace) -> None:
    """The turn-end half: every detector on the labelled turns."""
    info = bc.machine_info()
    config = VoicebotConfig()
    turn = config.turn
    clips = load(args.rescore) if args.rescore else listen_all(config, args)
    contexts = {i: TURNS[c.turn][1] for i, c in enumerate(clips)}
    rows, summary = score(clips, contexts, turn, config.vad.end_silence_ms)
    cmd = " ".join([".venv/bin/python scripts/bench_turns.py", *sys.argv[1:]])
    if args.rescore:  # the audio was heard by an earlier run: its command and machine, then this scoring
        earlier = json.loads(args.rescore.read_text())
        info, cmd = earlier["machine"], f"{earlier['command'].split(' (')[0]} (scored again: {cmd})"
    machine = earlier["machine_line"] if args.rescore else bc.machine_line(info)
    body = report(cmd, machine, summary, clips, len(TURNS), PAUSES_S)
    if not args.no_write:
        (args.out / "results").mkdir(parents=True, exist_ok=True)
        path = args.out / "results" / "turns.json"
        kept = json.loads(path.read_text()) if path.exists() else {}  # the other half's results stay
        result = {
            "command": cmd,
            "machine": info,
            "machine_line": machine,
            "turn_config": turn.model_dump(),
            "summary": summary,
            "clips": [asdict(c) for c in clips],
            "outcomes": rows,
        } | ({"bargein": kept["bargein"]} if "bargein" in kept else {})
        path.write_text(json.dumps(result, indent=1))
        plot(args.out / "img" / "turns.png", summary)
        bc.write_section(args.out / "benchmarks.md", "turns", body)
    print(body)


if __name__ == "__main__":
    main()
