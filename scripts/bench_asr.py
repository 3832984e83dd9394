"""ASR benchmark: WER, digit strings, non-speech, latency, streaming, encoder window and memory.

    .venv/bin/python scripts/bench_asr.py --out docs --models base tiny.en --progress

Builds a deterministic customer-service test set, synthesises it with Piper (joe), espeak-ng and flite
(slt), and decodes it clean at 16 kHz and through an 8 kHz μ-law phone line. Rewrites the `bench_asr`
section of docs/benchmarks.md, plots into docs/img/, raw rows into docs/results/. Audio goes to --data-dir
(a temporary directory by default), never into the repository.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _bench_common as bc
import jiwer
import numpy as np
from tqdm import tqdm

from voicebot.asr import ASRBackend, make_asr
from voicebot.audio import read_audio, resample, to_float, write_wav
from voicebot.brain import BrainInput, EchoBrain
from voicebot.config import ASRConfig, TTSConfig, VoicebotConfig
from voicebot.filecall import FileCall
from voicebot.frames import PCM, BotReply, FinalTranscript
from voicebot.pipeline import Services
from voicebot.transcribe import transcribe_file
from voicebot.tts import make_backend
from voicebot.vad import SileroVAD

CORPUS = bc.CORPUS
Key = tuple[str, int, str]  # (voice, utterance index, condition)
VOICES = ("piper", "espeak-ng", "flite")
CONDS = ("16k-clean", "8k-ulaw")
RATE, fmt, pct, normalise, met = bc.RATE, bc.fmt, bc.pct, bc.normalise, bc.met
TARGETS = {"wer": 18.0, "digits": 95.0, "final_ms": 300.0, "rss_mb": 900.0}


def build_audio(items: list[int], voices: list[str], data_dir: Path, progress: bool) -> dict[Key, Path]:
    """(voice, utterance, condition) -> WAV path (16 kHz clean, or 8 kHz μ-law decoded); cached."""
    paths: dict[Key, Path] = {}
    for voice in voices:
        backend = None
        for i in tqdm(items, desc=f"tts {voice}", disable=not progress):
            clean, tel = data_dir / voice / f"u{i:02d}_16k.wav", data_dir / voice / f"u{i:02d}_8k.wav"
            if not (clean.exists() and tel.exists()):
                backend = backend or make_backend(TTSConfig(backend=voice))  # type: ignore[arg-type]
                pad = np.zeros(int(0.25 * backend.sample_rate), np.int16)
                pcm = np.concatenate([pad, backend.synthesize(CORPUS[i][0]), pad])
                write_wav(clean, resample(pcm, backend.sample_rate, RATE), RATE)
                write_wav(tel, bc.telephone(pcm, backend.sample_rate), 8000)
            paths[voice, i, "16k-clean"], paths[voice, i, "8k-ulaw"] = clean, tel
    return paths


def decode_set(asr: ASRBackend, model: str, window: float, paths: dict[Key, Path], conds: tuple[str, ...],
               progress: bool) -> list[dict[str, Any]]:  # fmt: skip
    rows = []
    asr.transcribe(to_float(read_audio(next(iter(paths.values())), RATE)))  # warm-up, not timed
    keys = [k for k in paths if k[2] in conds]
    for voice, i, cond in tqdm(keys, desc=f"asr {model} w{window:g}", disable=not progress):
        audio = to_float(read_audio(paths[voice, i, cond], RATE))
        tr = asr.transcribe(audio)
        ref, is_digits = CORPUS[i]
        nref, nhyp = normalise(ref), normalise(tr.text)
        rows.append({
            "model": model, "window": window, "condition": cond, "voice": voice, "utt": i,
            "reference": ref, "hypothesis": tr.text, "raw_text": tr.raw_text, "rejected": tr.rejected or "",
            "norm_ref": nref, "norm_hyp": nhyp, "wer": jiwer.wer(nref, nhyp) if nhyp else 1.0,
            "digit_utt": is_digits, "digits_ref": bc.digit_sequence(ref) if is_digits else "",
            "digits_hyp": bc.digit_sequence(tr.text) if is_digits else "",
            "digits_ok": (bc.digit_sequence(ref) == bc.digit_sequence(tr.text)) if is_digits else "",
            "audio_s": audio.size / RATE, "decode_ms": tr.decode_ms, "window_s": tr.window_s,
            "rtf": tr.decode_ms / 1000 / (audio.size / RATE),
        })  # fmt: skip
    return rows


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    digits = [r["digits_ok"] for r in rows if r["digit_utt"]]
    dec = [r["decode_ms"] for r in rows]
    return {
        "n": len(rows),
        "wer": 100 * jiwer.wer([r["norm_ref"] for r in rows], [r["norm_hyp"] for r in rows]),
        "digits": 100 * sum(digits) / len(digits) if digits else float("nan"),
        "n_digits": len(digits),
        "rejected": sum(bool(r["rejected"]) for r in rows),
        "rtf": sum(dec) / 1000 / sum(r["audio_s"] for r in rows),
        "p50": pct(dec, 50),
        "p95": pct(dec, 95),
    }


def nonspeech(asr: ASRBackend, model: str, vad: SileroVAD, data_dir: Path) -> list[dict[str, Any]]:
    config = VoicebotConfig(asr=ASRConfig(model=model))
    rows = []
    for n, (name, pcm) in enumerate(bc.nonspeech_clips().items()):
        for cond, path in (("16k-clean", data_dir / "nonspeech" / f"c{n}_16k.wav"),
                           ("8k-ulaw", data_dir / "nonspeech" / f"c{n}_8k.wav")):  # fmt: skip
            phone = cond == "8k-ulaw"
            write_wav(path, bc.telephone(pcm, RATE) if phone else pcm, 8000 if phone else RATE)
            full = transcribe_file(path, asr, vad, config)
            raw = asr.transcribe(to_float(read_audio(path, RATE)))
            rows.append({
                "model": model, "clip": name, "condition": cond, "seconds": round(pcm.size / RATE, 2),
                "vad_utterances": len(full.utterances), "full_words": len(full.text.split()),
                "full_text": full.text,
                "full_raw": " | ".join(u["raw_text"] for u in full.utterances),
                "raw_words": len(raw.text.split()), "raw_text": raw.text, "raw_unguarded": raw.raw_text,
                "raw_rejected": raw.rejected or "",
            })  # fmt: skip
    return rows


class TimedBrain(EchoBrain):
    def __init__(self) -> None:
        super().__init__()
        self.turn = -1
        self.finals: dict[int, list[float]] = {}

    async def handle(self, event: BrainInput) -> BotReply | None:
        if isinstance(event, FinalTranscript):
            self.finals.setdefault(self.turn, []).append(time.monotonic())
        return await super().handle(event)


class TimedCall(FileCall):
    brain: TimedBrain
    feed_starts: list[float]

    async def _feed(self, pcm: PCM) -> None:
        self.feed_starts.append(time.monotonic())
        self.brain.turn += 1
        await super()._feed(pcm)


def streaming(services: Services, files: list[tuple[int, Path]]) -> list[dict[str, Any]]:
    brain = TimedBrain()
    call = TimedCall(services, brain, fast=False, rate=8000)
    call.brain, call.feed_starts = brain, []
    result = asyncio.run(call.run([p for _, p in files]))
    rows = []
    for n, ((i, path), turn) in enumerate(zip(files, result.turns, strict=False)):
        t = turn.get("timings_ms", {})
        end = call.feed_starts[n] + bc.speech_end_s(read_audio(path, 8000), 8000)
        finals = brain.finals.get(n, [])
        rows.append({
            "utt": i, "reference": CORPUS[i][0], "transcript": turn.get("transcript"),
            "wer": jiwer.wer(normalise(CORPUS[i][0]), normalise(turn.get("transcript") or "")),
            "endpoint_ms": t.get("endpoint"), "asr_ms": t.get("asr"), "asr_decode_ms": t.get("asr_decode"),
            "final_ms": (t.get("endpoint") or 0) + (t.get("asr") or 0),
            "wall_ms": (finals[-1] - end) * 1000 if finals else None, "n_finals": len(finals),
            "speculative": (turn.get("asr") or {}).get("speculative"),
        })  # fmt: skip
    return rows


def rss_probe() -> None:
    """Run in a fresh process: RSS after Services.load(VoicebotConfig()), then after one synth + decode."""
    base = bc.proc_memory_mb()
    services = Services.load(VoicebotConfig())
    loaded = bc.proc_memory_mb()
    pcm = services.tts.synthesize_at("My order number is four five seven two one nine.", RATE)
    services.asr.transcribe(to_float(pcm))
    print(json.dumps({"python": base, "loaded": loaded, "after_use": bc.proc_memory_mb()}))


def plots(summary: dict[str, Any], rows: list[dict[str, Any]], img: Path, models: list[str]) -> None:
    groups = [*VOICES, "all"]
    series = {f"{m} {c}": [summary.get(f"{m}|10|{c}|{g}", {}).get("wer", np.nan) for g in groups]
              for m in models for c in CONDS}  # fmt: skip
    title = "WER by voice, model and condition (10 s window)"
    bc.bar_chart(
        img / "asr_wer.png", groups, series, "WER %", title, (TARGETS["wer"], "target: 8 kHz ≤ 18 %")
    )
    cdf: dict[str, list[float]] = {}
    for r in rows:
        cdf.setdefault(f"{r['model']} {r['condition']} {r['window']:g}s window", []).append(r["decode_ms"])
    bc.cdf_plot(img / "asr_decode_cdf.png", cdf, "decode time per utterance (ms)", "ASR decode latency CDF")


NOTES = {
    "set": """{n} customer-service utterances ({d} with spoken digit strings or dollar amounts), synthesised
with {voices} (Piper voice joe, flite voice slt). Conditions: *16k-clean*, and *8k-ulaw*: a phone line
(to 8 kHz, FFT band-limit 300–3400 Hz, G.711 μ-law encode + decode, back to 16 kHz for Whisper).
{c} non-speech clips of 3–5 s, each clean at 16 kHz and through the same phone line.""",
    "acc": """WER is over all words of a set (jiwer, after normalisation, see below); decode = wall time of
`asr.transcribe` on the whole utterance (no VAD); RTF = total decode time / total audio time;
guard-rejected = real speech the hallucination guards threw away (counts as all words deleted).""",
    "ns": """*full* = `voicebot.transcribe.transcribe_file` on the WAV (Silero VAD gate, then ASR and guards),
*raw* = `asr.transcribe` on the whole clip (no VAD, guards on), *unguarded* = the raw decode before the
guards. Each cell is words emitted by {models}.""",
    "stream": """`FileCall(services, EchoBrain(), fast=False, rate=8000)`, default config, caller audio fed
in real time. *endpoint* = trailing silence the endpointer waited (audio time); *asr* = endpoint
detection → final transcript (≈ 0 when the speculative decode was already done); *wall clock* = from the
moment the last sample of speech (by energy) was fed to the final transcript reaching the brain, which
also counts resampler and VAD buffering.""",
}


def _t(headers: str, rows: list[list[Any]]) -> str:
    return bc.md_table(headers.split(" | "), rows)


Rows = list[dict[str, Any]]


def report(cmd: str, machine: str, summary: dict[str, Any], rows: Rows, noise: Rows, stream: Rows,
           memory: dict[str, Any], models: list[str], voices: list[str], n_items: int) -> str:  # fmt: skip
    tel = summary["base|10|8k-ulaw|all"]
    ns_words = sum(r["full_words"] for r in noise if r["model"] == "base")
    final = [r["final_ms"] for r in stream]
    peak = memory["after_use"]["VmHWM"]
    targets = [
        ["8 kHz μ-law WER ≤ 18 %", f"{tel['wer']:.2f} %", met(tel["wer"] <= TARGETS["wer"])],
        ["0 words on non-speech (VAD + ASR), every clip", f"{ns_words} words", met(ns_words == 0)],
        ["digit strings exact ≥ 95 % (8 kHz μ-law)", f"{tel['digits']:.2f} % of {tel['n_digits']}",
         met(tel["digits"] >= TARGETS["digits"])],
        ["final transcript ≤ 300 ms after end of speech, p50 (endpoint wait + asr)",
         f"{pct(final, 50):.1f} ms", met(pct(final, 50) <= TARGETS["final_ms"])],
        ["RSS ≤ 900 MB (base + VAD + Piper; peak VmHWM after a decode and a synthesis)", f"{peak:.1f} MB",
         met(peak <= TARGETS["rss_mb"])],
    ]  # fmt: skip
    acc = [[*k.split("|"), s["n"], fmt(s["wer"], 2), f"{fmt(s['digits'], 1)} % of {s['n_digits']}",
            s["rejected"], fmt(s["rtf"], 3), fmt(s["p50"]), fmt(s["p95"])]
           for k, s in summary.items()]  # fmt: skip
    windows = [[w, fmt(s["wer"], 2), fmt(s["digits"], 1), fmt(s["p50"]), fmt(s["p95"])]
               for w in ("10", "30") if (s := summary.get(f"base|{w}|8k-ulaw|all"))]  # fmt: skip
    clips = dict.fromkeys((r["clip"], r["condition"]) for r in noise)
    ns = [[c, cond, *[_ns(noise, m, c, cond) for m in models]] for c, cond in clips]
    lat = {
        "end of speech → final (endpoint + asr)": final,
        "endpoint wait alone": [r["endpoint_ms"] for r in stream],
        "asr after endpoint alone": [r["asr_ms"] for r in stream],
        "wall clock: end of speech fed → final at brain": [r["wall_ms"] for r in stream if r["wall_ms"]],
    }
    lat_rows = [[k, fmt(pct(v, 50)), fmt(pct(v, 95)), fmt(max(v, default=np.nan))] for k, v in lat.items()]
    spec = sum(bool(r["speculative"]) for r in stream)
    s_refs, s_hyps = (
        [normalise(r["reference"]) for r in stream],
        [normalise(r["transcript"] or "") for r in stream],
    )
    s_wer = 100 * jiwer.wer(s_refs, s_hyps)
    fails = [[r["model"], r["condition"], r["voice"], r["digits_ref"], r["digits_hyp"] or "—",
              r["hypothesis"] or f"(empty: {r['rejected']})"]
             for r in rows if r["digit_utt"] and not r["digits_ok"] and r["window"] == 10]  # fmt: skip
    n_dig = sum(CORPUS[i][1] for i in {r["utt"] for r in rows})
    mem = [[k, fmt(v["VmRSS"]), fmt(v["VmHWM"])] for k, v in memory.items()]
    out = [
        "## ASR benchmark (faster-whisper, int8, CPU)", f"Command: `{cmd}`", machine,
        NOTES["set"].format(n=n_items, d=n_dig, voices=", ".join(voices), c=len({c for c, _ in clips})),
        "### Targets (default configuration: Whisper base, 10 s minimum encoder window)",
        _t("target | measured | status", targets),
        "### Accuracy and decode latency", NOTES["acc"],
        _t("model | min window s | condition | voice | utts | WER % | digits exact | guard-rejected | RTF | "
           "decode p50 ms | decode p95 ms", acc),
        "### Encoder window: `min_window_s` 10 (default) vs 30 (plain Whisper); base, 8 kHz μ-law",
        _t("min_window_s | WER % | digits exact % | decode p50 ms | decode p95 ms", windows),
        "### Non-speech clips: words emitted", NOTES["ns"].format(models=" / ".join(models)),
        _t(" | ".join(["clip", "condition", *[f"{m} full / raw / unguarded" for m in models]]), ns),
        f"### Streaming latency (base, 8 kHz μ-law, Piper voice, {len(stream)} turns)", NOTES["stream"],
        _t("measure | p50 ms | p95 ms | max ms", lat_rows),
        f"Speculative decode used for {spec} of {len(stream)} turns; streaming WER {s_wer:.2f} %.",
        "### Memory (fresh process, `Services.load(VoicebotConfig())`)",
        _t("point | VmRSS MB | VmHWM (peak) MB", mem),
        "### Digit-string failures (10 s window, every model and condition)",
        _t("model | condition | voice | expected | got | hypothesis", fails) if fails else "None.",
        "### Normalisation", " ".join((bc.normalise.__doc__ or "").split()),
        "Raw rows: [utterances](results/asr_utterances.csv), [non-speech](results/asr_nonspeech.csv), "
        "[streaming](results/asr_streaming.csv), [summary](results/asr_summary.json).",
        "![WER by model and condition](img/asr_wer.png)\n\n![decode latency CDF](img/asr_decode_cdf.png)",
    ]  # fmt: skip
    return "\n\n".join(out)


def _ns(noise: list[dict[str, Any]], model: str, clip: str, cond: str) -> str:
    r = next(r for r in noise if (r["model"], r["clip"], r["condition"]) == (model, clip, cond))
    return f"{r['full_words']} / {r['raw_words']} / {len(r['raw_unguarded'].split())}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("docs"))
    ap.add_argument("--models", nargs="+", default=["base", "tiny.en"])
    ap.add_argument("--quick", action="store_true", help="a few utterances, for a smoke run")
    ap.add_argument(
        "--data-dir", type=Path, help="cache for generated audio (default: a temporary directory)"
    )
    ap.add_argument("--progress", action="store_true")
    ap.add_argument("--rss-probe", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rss_probe:
        return rss_probe()
    with tempfile.TemporaryDirectory(prefix="bench_asr_") as tmp:
        run(args, args.data_dir or Path(tmp))


def run(args: argparse.Namespace, data_dir: Path) -> None:
    info = bc.machine_info()
    probe = subprocess.run(
        [sys.executable, __file__, "--rss-probe"], capture_output=True, text=True, check=True
    )
    memory = json.loads(probe.stdout.strip().splitlines()[-1])
    items = [1, 6, 20, 26, 0, 12] if args.quick else list(range(len(CORPUS)))
    voices = ["piper", "espeak-ng"] if args.quick else list(VOICES)
    paths = build_audio(items, voices, data_dir, args.progress)
    rows: list[dict[str, Any]] = []
    noise: list[dict[str, Any]] = []
    vad = SileroVAD()
    cache = VoicebotConfig().cache_dir
    for model in args.models:
        asr = make_asr(ASRConfig(model=model), cache)
        rows += decode_set(asr, model, 10.0, paths, CONDS, args.progress)
        noise += nonspeech(asr, model, vad, data_dir)
        del asr
    wide = make_asr(ASRConfig(model="base", min_window_s=30.0), cache)
    rows += decode_set(wide, "base", 30.0, paths, ("8k-ulaw",), args.progress)
    del wide
    services = Services.load(VoicebotConfig())
    stream_items = items[:3] if args.quick else items[::4][:12]
    stream = streaming(services, [(i, paths["piper", i, "8k-ulaw"]) for i in stream_items])
    services.close()
    summary: dict[str, Any] = {}
    for key in sorted({(r["model"], r["window"], r["condition"]) for r in rows}):
        sel = [r for r in rows if (r["model"], r["window"], r["condition"]) == key]
        for g in [*voices, "all"]:
            summary["|".join([key[0], f"{key[1]:g}", key[2], g])] = summarise(
                [r for r in sel if g in ("all", r["voice"])]
            )
    results, img = args.out / "results", args.out / "img"
    bc.write_csv(results / "asr_utterances.csv", rows)
    bc.write_csv(results / "asr_nonspeech.csv", noise)
    bc.write_csv(results / "asr_streaming.csv", stream)
    raw = {"machine": info, "memory_mb": memory, "summary": summary, "quick": args.quick}
    (results / "asr_summary.json").write_text(json.dumps(raw, indent=1))
    plots(summary, rows, img, args.models)
    cmd = " ".join([".venv/bin/python scripts/bench_asr.py", *sys.argv[1:]])
    body = report(
        cmd, bc.machine_line(info), summary, rows, noise, stream, memory, args.models, voices, len(items)
    )
    bc.write_section(args.out / "benchmarks.md", "bench_asr", body)
    print(body)


if __name__ == "__main__":
    main()
