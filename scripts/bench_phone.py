"""The phone front end: 8 kHz μ-law audio into the 16 kHz VAD and Whisper. Which upsampler, which VAD model.

    .venv/bin/python scripts/bench_phone.py --progress

1. Upsampler. soxr's HQ stream holds ~100 ms back, which delays every end of turn and every barge-in by that
   much; `voicebot.audio.Upsampler` (a 65-tap windowed sinc, ~1 ms) does not. Does it cost accuracy? The ASR
   test set (bench_asr's corpus, three voices, both μ-law conditions) is decoded as a live call does it:
   20 ms frames through the resampler, the endpointer, then Whisper on each utterance (no prompt); and each
   whole clip upsampled at once (no VAD).
2. VAD model. Silero v6.2 (the silero-vad package) against the older v6 export faster-whisper ships, on the
   same live path, and on one-word answers said after 11 s of silence (the bot's question) at 8 frame
   alignments each: is the utterance there, and does its audio start at or before the word?

Writes the `bench_phone` section of docs/benchmarks.md and docs/results/phone_*.csv.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import _bench_common as bc
import jiwer
import numpy as np
from bench_asr import CORPUS, VOICES, build_audio
from tqdm import tqdm

from voicebot.asr import ASRBackend, make_asr
from voicebot.assets import _package_dir, silero_vad_path
from voicebot.audio import Upsampler, live_resampler, read_audio, resample, to_float
from voicebot.config import ASRConfig, VADConfig, VoicebotConfig
from voicebot.frames import SpeechEnded
from voicebot.line import telephone
from voicebot.tts import make_backend
from voicebot.vad import Endpointer, SileroVAD

CONDS = ("8k-ulaw", "8k-ulaw-hard")
FRAME = 160  # 20 ms at 8 kHz
# (name, low-delay upsampler, VAD model) for the live path
WAYS = (
    ("soxr HQ, v6.2", False, "v6.2"),
    ("low-delay, v6.2", True, "v6.2"),
    ("low-delay, fw v6", True, "fw v6"),
)
ANSWERS = ["Yes.", "No.", "Yeah.", "Yes, please.", "Sure.", "Nope.", "Correct.", "That is right."]
Rows = list[dict[str, Any]]
ASR_NOTE = (
    f"**Upsampler and VAD model on the ASR test set** (bench_asr's corpus; {', '.join(VOICES)}; through "
    "each 8 kHz μ-law condition). `vad+asr`: 20 ms frames through the live stream resampler and the "
    "endpointer, Whisper on each utterance; *split*: clips that did not come out as exactly one utterance. "
    "`asr`: the whole clip upsampled at once. v6.2 = Silero from the `silero-vad` package (the default), "
    "fw v6 = the export inside faster-whisper (used before)."
)
SHORT_NOTE = (
    "**One-word answers after the bot's question** (11 s of silence after a first turn, μ-law, low-delay "
    "upsampler, 8 frame alignments per synthesis): utterances whose audio starts at or before the word (a "
    'late start turned "Yes, please." into "please."), of those tried.'
)


def live_utterances(pcm8: np.ndarray, low_delay: bool, vad: SileroVAD) -> list[SpeechEnded]:
    """What a live call's endpointer hands the ASR: 20 ms frames through the stream resampler."""
    up, ep = live_resampler(8000, 16000, low_delay), Endpointer(vad, VADConfig())
    frames = []
    for start in range(0, pcm8.size, FRAME):
        frames += ep.process(up.process(pcm8[start : start + FRAME]))
    frames += ep.process(up.process(np.zeros(0, np.int16), last=True)) + ep.flush()
    return [f for f in frames if isinstance(f, SpeechEnded)]


def whole_clip(pcm8: np.ndarray, low_delay: bool) -> np.ndarray:
    return Upsampler(8000, 16000).process(pcm8, last=True) if low_delay else resample(pcm8, 8000, 16000)


def row(way: str, path: str, key: tuple[str, int, str], text: str, utterances: int) -> dict[str, Any]:
    voice, i, cond = key
    ref, is_digits = CORPUS[i]
    return {
        "way": way, "path": path, "condition": cond, "voice": voice, "utt": i, "reference": ref,
        "hypothesis": text, "norm_ref": bc.normalise(ref), "norm_hyp": bc.normalise(text),
        "utterances": utterances, "digit_utt": is_digits,
        "digits_ok": bc.digit_sequence(ref) == bc.digit_sequence(text) if is_digits else "",
    }  # fmt: skip


def decode(asr: ASRBackend, vads: dict[str, SileroVAD], paths: dict[Any, Path], progress: bool) -> Rows:
    rows = []
    keys = [k for k in paths if k[2] in CONDS]
    for key in tqdm(keys, desc="decode", disable=not progress):
        pcm8 = read_audio(paths[key], 8000)
        for way, low, model in WAYS:
            ends = live_utterances(pcm8, low, vads[model])
            text = " ".join(t for e in ends if (t := asr.transcribe(to_float(e.audio)).text))
            rows.append(row(way, "vad+asr", key, text, len(ends)))
        for way, low in (("soxr HQ", False), ("low-delay", True)):
            rows.append(row(way, "asr", key, asr.transcribe(to_float(whole_clip(pcm8, low))).text, 1))
    return rows


def short_answers(vads: dict[str, SileroVAD], syntheses: int, progress: bool) -> Rows:
    """Each answer synthesised `syntheses` times (Piper varies), after a first turn and 11 s of silence."""
    tts = make_backend(VoicebotConfig().tts)
    first = telephone(
        tts.synthesize("I want a refund for order nine three two zero one seven."), tts.sample_rate
    )
    rows = []
    for n in tqdm(range(syntheses), desc="short answers", disable=not progress):
        for text in ANSWERS:
            answer = telephone(tts.synthesize(text), tts.sample_rate)
            loud = np.flatnonzero(np.abs(answer.astype(np.int32)) > 300)
            answer = answer[loud[0] : loud[-1] + 1]
            for gap_ms in range(11000, 11160, 20):
                silence = np.zeros(gap_ms * 8, np.int16)
                line = np.concatenate(
                    [np.zeros(8000, np.int16), first, silence, answer, np.zeros(8000, np.int16)]
                )
                onset = (8000 + first.size + silence.size) / 8000
                for model, vad in vads.items():
                    ends = live_utterances(line, True, vad)
                    heard = len(ends) >= 2
                    rows.append({
                        "model": model, "synthesis": n, "answer": text, "gap_ms": gap_ms, "heard": heard,
                        "from_start": heard and audio_start(ends[-1]) <= onset + 0.04,
                        "utterances": len(ends),
                    })  # fmt: skip
    return rows


def audio_start(end: SpeechEnded) -> float:
    """Where an utterance's audio starts on the line (the endpointer keeps up to 250 ms of its silence)."""
    return end.speech_end_t + min(0.25, end.t - end.speech_end_t) - end.audio.size / 16000


def summary(rows: Rows) -> tuple[float, float, int]:
    digits = [r["digits_ok"] for r in rows if r["digit_utt"]]
    wer = 100 * jiwer.wer([r["norm_ref"] for r in rows], [r["norm_hyp"] or "-" for r in rows])
    return wer, 100 * sum(digits) / max(1, len(digits)), sum(r["utterances"] != 1 for r in rows)


def report(cmd: str, machine: str, rows: Rows, answers: Rows) -> str:
    table = []
    for path, ways in (("vad+asr", [w[0] for w in WAYS]), ("asr", ["soxr HQ", "low-delay"])):
        for cond in CONDS:
            for way in ways:
                sel = [r for r in rows if (r["path"], r["condition"], r["way"]) == (path, cond, way)]
                wer, digits, split = summary(sel)
                table.append([path, cond, way, len(sel), bc.fmt(wer, 2), bc.fmt(digits),
                              split if path == "vad+asr" else ""])  # fmt: skip
    short = []
    for model in dict.fromkeys(r["model"] for r in answers):
        cells = []
        for text in ANSWERS:
            sel = [r for r in answers if r["model"] == model and r["answer"] == text]
            cells.append(f"{sum(r['from_start'] for r in sel)}/{len(sel)}")
        sel = [r for r in answers if r["model"] == model]
        total = f"**{sum(r['from_start'] for r in sel)}/{len(sel)}** ({sum(r['heard'] for r in sel)} heard)"
        short.append([model, *cells, total])
    return "\n".join(
        [
            "## Phone front end: upsampler and VAD model (Whisper base, int8)",
            "",
            f"Command: `{cmd}`",
            "",
            machine,
            "",
            ASR_NOTE,
            "",
            bc.md_table(
                ["path", "condition", "upsampler, VAD", "clips", "WER %", "digit strings %", "split"], table
            ),
            "",
            SHORT_NOTE,
            "",
            bc.md_table(["VAD", *ANSWERS, "all"], short),
        ]
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("docs"))
    ap.add_argument("--data-dir", type=Path, help="cache for generated audio (default: a temp dir)")
    ap.add_argument("--syntheses", type=int, default=4, help="Piper syntheses per short answer")
    ap.add_argument("--progress", action="store_true")
    args = ap.parse_args()
    info = bc.machine_info()
    vads = {"v6.2": SileroVAD(silero_vad_path()),
            "fw v6": SileroVAD(_package_dir("faster_whisper", "assets") / "silero_vad_v6.onnx")}  # fmt: skip
    answers = short_answers(vads, args.syntheses, args.progress)
    with tempfile.TemporaryDirectory(prefix="bench_phone_") as tmp:
        paths = build_audio(list(range(len(CORPUS))), list(VOICES), args.data_dir or Path(tmp), args.progress)
        asr = make_asr(ASRConfig(model="base"), VoicebotConfig().cache_dir)
        rows = decode(asr, vads, paths, args.progress)
    bc.write_csv(args.out / "results" / "phone_asr.csv", rows)
    bc.write_csv(args.out / "results" / "phone_short_answers.csv", answers)
    cmd = " ".join([".venv/bin/python scripts/bench_phone.py", *sys.argv[1:]])
    body = report(cmd, bc.machine_line(info), rows, answers)
    bc.write_section(args.out / "benchmarks.md", "bench_phone", body)
    print(body)


if __name__ == "__main__":
    main()
