"""Calls benchmark (latency and capacity): N simulated callers at once over Twilio Media Streams on loopback.

    nice -n 10 .venv/bin/python scripts/bench_calls.py --quick --calls 1 --no-write   # a smoke run
    .venv/bin/python scripts/bench_calls.py                # N = 1 2 4 8 16, one conversation per caller

Each level N starts a fresh `voicebot serve --domain domains/shop` process (scripts/_calls_server: its CPU and
memory are its own, its shop database freshly seeded), waits for /health, then runs N callers at once
(scripts/_calls_client: Twilio peers playing shop conversations) staggered by 0–2 s. Caller audio is Piper
speech synthesised once and cached under $TMPDIR/voicebot-bench-calls. Results: docs/results/calls_<N>.csv,
docs/results/calls.json, docs/img/calls_*.png and the `calls` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import _bench_common as bc
import numpy as np
from _calls_client import SCRIPTS, Caller, CallLog, speech_frames, turn_rows, underruns
from _calls_server import SERVER_KEYS, Server, add_server_args, free_port, join, lag_counts, server_turns

from voicebot.audio import read_audio, write_wav
from voicebot.config import TTSConfig

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_S = 0.5
STAGES = ("endpoint", "asr", "nlu", "dialogue_step", "action", "tts_first_audio")
MB = 1e6


# --- caller audio -------------------------------------------------------------------------------------


def caller_clips() -> dict[str, list[str]]:
    """Every caller line as 20 ms payloads; the TTS is loaded only for lines not cached yet (a temp dir
    kept between runs, so every run of the benchmark and the soak plays the same audio)."""
    cache = Path(tempfile.gettempdir()) / "voicebot-bench-calls"
    cache.mkdir(exist_ok=True)
    config, tts, clips = TTSConfig(), None, {}
    for text in {line.text for script in SCRIPTS for line in script.lines}:
        key = f"{config.backend}|{config.voice}|{config.length_scale}|{text}"
        path = cache / f"{hashlib.sha1(key.encode()).hexdigest()[:16]}.wav"
        if not path.is_file():
            if tts is None:
                from voicebot.tts import make_tts

                tts = make_tts(config)
            write_wav(path, tts.synthesize_at(text, 8_000), 8_000)
        clips[text] = speech_frames(read_audio(path, 8_000))
    return clips


# --- one level ----------------------------------------------------------------------------------------


async def play_calls(n: int, rounds: int, port: int, clips: dict[str, list[str]], seed: int) -> list[CallLog]:
    url = f"ws://127.0.0.1:{port}/twilio/stream"

    async def caller(i: int) -> list[CallLog]:
        logs = []
        for r in range(rounds):
            tag = f"{seed}-{n}-{i}-{r}"
            await asyncio.sleep(random.Random(tag).uniform(0.0, 2.0))
            script = SCRIPTS[(i + r * n) % len(SCRIPTS)]
            log = CallLog(i, r, script.name, "CA" + hashlib.md5(tag.encode()).hexdigest())
            logs.append(await Caller(url, script, clips, log, tag + "-pauses").run())
        return logs

    return [log for logs in await asyncio.gather(*(caller(i) for i in range(n))) for log in logs]


async def sampled(server: Server, work: Any) -> tuple[Any, list[tuple[float, float, float]]]:
    """Run `work` while sampling the server's (time, CPU s, RSS bytes) every SAMPLE_S."""
    samples = [(time.monotonic(), *server.usage())]
    task = asyncio.ensure_future(work)
    while not task.done():
        await asyncio.wait([task], timeout=SAMPLE_S)
        samples.append((time.monotonic(), *server.usage()))
    return task.result(), samples


async def _beside(calls: Awaitable[list[CallLog]], during: Any, server: Server) -> tuple[list[CallLog], Any]:
    if during is None:
        return await calls, None
    logs, side = await asyncio.gather(calls, during(server))
    return logs, side


TIMER = {"VOICEBOT__TURN__DECIDE": "false"}  # `--before`: turns end after the fixed vad.end_silence_ms


def run_level(
    n: int,
    args: argparse.Namespace,
    clips: dict[str, list[str]],
    settings: dict[str, str] | None = None,
    during: Callable[[Server], Awaitable[Any]] | None = None,
) -> dict[str, Any]:
    """One level: a fresh server, `n` callers. `during(server)` runs beside the calls (e.g. scripts/
    bench_swap.py puts a better model in place mid-call); its result is the level's `during`."""
    with tempfile.TemporaryDirectory(prefix=f"bench-calls-{n}-") as tmp:
        server = Server(Path(tmp), args.port or free_port(), args.quick, n, settings)
        try:
            started = time.monotonic()
            server.wait_ready()
            load_s = time.monotonic() - started
            idle = server.usage()[1]
            mine = os.times()
            t0 = time.time()
            calls = play_calls(n, args.rounds, server.port, clips, args.seed)
            (logs, side), samples = asyncio.run(sampled(server, _beside(calls, during, server)))
            mine_after = os.times()
            lag = server.loop_lag()
        finally:
            server.stop()
        rows = [{"calls": n} | row for log in logs for row in turn_rows(log, t0 - log.wall0)]
        join(rows, server_turns(server.db))
        problems = server.problems()
    t, cpu, rss = (np.asarray(v) for v in zip(*samples, strict=True))
    wall = float(t[-1] - t[0])
    client_cpu = (mine_after.user + mine_after.system) - (mine.user + mine.system)
    return {
        "calls": n,
        "t0": t0,
        "during": side,
        "rows": rows,
        "load_s": round(load_s, 1),
        "wall_s": round(wall, 1),
        "cpu_mean_pct": round(100 * float(cpu[-1] - cpu[0]) / wall, 1),
        "cpu_max_pct": round(float(np.max(100 * np.diff(cpu) / np.diff(t), initial=0.0)), 1),
        "rss_idle_mb": round(idle / MB, 1),
        "rss_peak_mb": round(float(rss.max()) / MB, 1),
        "rss_mean_mb": round(float(rss.mean()) / MB, 1),
        "client_cpu_pct": round(100 * client_cpu / wall, 1),
        "client_late_ms": _spread([x * 1000 for log in logs for x in log.lateness]),
        "ended": {e: sum(log.ended_by == e for log in logs) for e in {log.ended_by for log in logs}},
        "errors": [log.error for log in logs if log.error],
        "bad_media": sum(log.bad_media for log in logs),
        "server_problems": problems,
        "loop_lag": lag,
    }


# --- numbers ------------------------------------------------------------------------------------------


def _spread(values: list[float]) -> dict[str, float]:
    stats = {f"p{q}": round(bc.pct(values, q), 1) for q in (50, 95, 99)}
    return {"n": len(values), **stats, "max": round(max(values), 1) if values else float("nan")}


def summarise(level: dict[str, Any]) -> dict[str, Any]:
    rows = level["rows"]
    lines = [r for r in rows if r["line"] >= 0]
    barge = [r for r in lines if r.get("bot_speaking")]
    return {
        "v2v_ms": _spread([r["v2v_ms"] for r in lines if "v2v_ms" in r]),
        "first_audio_ms": _spread([r["first_audio_ms"] for r in rows if "first_audio_ms" in r]),
        "barge_clear_ms": _spread([r["clear_ms"] for r in barge if "clear_ms" in r]),
        "barge_media_stop_ms": _spread([r["media_stop_ms"] for r in barge if "media_stop_ms" in r]),
        "barge_ins": len(barge),
        "barge_not_stopped": sum("clear_ms" not in r for r in barge),
        "lines": len(lines),
        "no_reply": sum("v2v_ms" not in r for r in lines),
        "matched_turns": sum("transcript" in r for r in lines),
        **underruns(rows),
        "server_empty_turns": sum(r.get("srv_empty_turns", 0) for r in rows),
        "server_no_input_turns": sum(r.get("srv_no_input_turns", 0) for r in rows),
        "end_reasons": dict(Counter(str(r["end_reason"]) for r in rows if r["line"] < 0)),
        "stages_ms": {
            k: round(bc.pct([r[f"srv_{k}"] for r in lines if f"srv_{k}" in r], 50), 1) for k in SERVER_KEYS
        },
        "rss_per_call_mb": round((level["rss_peak_mb"] - level["rss_idle_mb"]) / level["calls"], 1),
    }


def rss_slope(levels: dict[int, dict[str, Any]]) -> float:
    """MB of peak RSS per extra call: least-squares slope over the levels run."""
    ns = sorted(levels)
    if len(ns) < 2:
        return float("nan")
    return float(np.polyfit(ns, [levels[n]["rss_peak_mb"] for n in ns], 1)[0])


def target_rows(levels: dict[int, dict[str, Any]]) -> list[list[str]]:
    """The issue's targets; the barge-in one is judged at the smallest N whose calls had barge-ins."""
    rows: list[list[str]] = []

    def fmt(x: float | None) -> str:
        return bc.fmt(float("nan") if x is None else x)

    one, eight = levels.get(1, {}), levels.get(8, {})
    v1, v8 = one.get("v2v_ms", {}), eight.get("v2v_ms", {})
    barged = [n for n in sorted(levels) if levels[n]["barge_clear_ms"]["n"]]
    at = barged[0] if barged else 0
    b = levels[at]["barge_clear_ms"] if at else {}
    slope = rss_slope(levels)
    where = f"at {at} call(s)" if at else "(none ran: it is the 4th conversation; N · rounds ≥ 4 plays it)"
    checks = [
        ("1 call: voice-to-voice p50 ≤ 700 ms", one, f"{fmt(v1.get('p50'))} ms", v1.get("p50", 1e9) <= 700),
        ("1 call: voice-to-voice p95 ≤ 1,100 ms", one, f"{fmt(v1.get('p95'))} ms",
         v1.get("p95", 1e9) <= 1100),
        (f"barge-in stop (onset → clear) p95 ≤ 300 ms, {where}", b,
         f"{fmt(b.get('p95'))} ms (n = {b.get('n', 0)})",
         b.get("p95", 1e9) <= 300 and not levels.get(at, {}).get("barge_not_stopped")),
        ("8 calls: voice-to-voice p95 ≤ 1,500 ms", eight, f"{fmt(v8.get('p95'))} ms",
         v8.get("p95", 1e9) <= 1500),
        ("8 calls: no underruns (gap > 40 ms inside a reply)", eight, str(eight.get("underruns")),
         eight.get("underruns") == 0),
        ("8 calls: server RSS ≤ 1.5 GB", eight, f"{eight.get('rss_peak_mb', 0):.0f} MB peak",
         eight.get("rss_peak_mb", 1e9) <= 1500),
        ("≤ 20 MB RSS per extra call (slope of peak RSS over N)", slope == slope, f"{fmt(slope)} MB",
         slope <= 20),
    ]  # fmt: skip
    for target, ran, measured, ok in checks:
        rows.append([target, measured if ran else "not run", bc.met(bool(ok)) if ran else "n/a"])
    return rows


# --- report -------------------------------------------------------------------------------------------


LEVEL_HEAD = ["calls", "turns (no reply)", "v2v p50 ms", "p95", "p99",
              "barge-in stop p50 / p95 ms (n, not stopped)", "media stop p50 / p95 ms",
              "underruns (worst gap ms; in client stalls; between sentences)", "server CPU % mean (max)",
              "RSS idle / mean / peak MB", "RSS MB per call",
              "client lateness p99 ms / CPU %"]  # fmt: skip
STAGE_HEAD = ["calls", "endpoint", "ASR final", "NLU", "dialogue step", "action", "TTS first audio",
              "ASR decode (overlaps endpoint)", "brain total", "v2v p50", "turns matched"]  # fmt: skip
HOW = """Each level N starts a fresh `voicebot serve --domain domains/shop{quick}` process (freshly seeded
shop database, call records in a temp SQLite file) and runs N simulated callers at once, staggered by a random
0–2 s, each through {rounds} conversation(s): track an order, cancel one, ask for a refund, or ask about
delivery and barge in 1.5 s into the answer to ask for a person (caller i plays conversation
(i + round·N) mod 4). Callers are our own Twilio peers (`scripts/_calls_client.py`): 20 ms μ-law frames in
real time for the whole call (silence between lines), marks echoed once their audio has played, `clear`
honoured, `stop` on hang-up; caller lines are Piper speech at 8 kHz cut to the speech. A caller lets the bot
finish (the reply's final mark, or 600 ms without bot audio) and pauses 400–800 ms before its next line.

**Voice-to-voice**: the caller sends the frame holding its last speech sample → the first bot `media` frame
received after it (after the `clear`, for a barge-in). **Barge-in stop**: the frame holding the caller's
first speech sample, sent while bot audio was playing → `clear` received (media stop: → the last bot frame
before it). **Underruns**: the caller's playback ran dry inside one reply (frames grouped by the mark
that follows them): a bot frame started playing over 40 ms after the one before it. A frame plays on arrival,
or once the frame before it has played when the server sent it ahead (`pipeline.send_ahead_ms`, as Twilio
buffers it); for audio sent in real time this is a gap over 40 ms between arrivals. *Between sentences*: a
sentence's mark came in the gap, so the next sentence's audio was late (its synthesis), not the event loop.
**Server CPU**: CPU time of the server process and its children over the level's wall time (100 % = one core
of {cores}), sampled every {sample} s. **RSS**: resident memory; idle = models loaded, before the first call;
per call = (peak − idle) / N. The client's frame lateness p99 and CPU say whether the load generator kept real
time. Stage times are the server's own turn records (`timings_ms`)."""


def report(cmd: str, machine: str, levels: dict[int, dict[str, Any]], args: argparse.Namespace) -> str:
    fmt, items = bc.fmt, sorted(levels.items())
    table = [
        [n, f"{s['lines']} ({s['no_reply']})", *(fmt(s["v2v_ms"][q], 0) for q in ("p50", "p95", "p99")),
         f"{fmt(b['p50'], 0)} / {fmt(b['p95'], 0)} ({b['n']}, {s['barge_not_stopped']})",
         f"{fmt(m['p50'], 0)} / {fmt(m['p95'], 0)}", under,
         f"{fmt(s['cpu_mean_pct'], 0)} ({fmt(s['cpu_max_pct'], 0)})",
         " / ".join(fmt(s[f"rss_{k}_mb"], 0) for k in ("idle", "mean", "peak")), fmt(s["rss_per_call_mb"]),
         f"{fmt(s['client_late_ms']['p99'])} / {fmt(s['client_cpu_pct'], 0)}"]
        for n, s in items for b, m in [(s["barge_clear_ms"], s["barge_media_stop_ms"])]
        for under in [f"{s['underruns']} ({fmt(s['worst_gap_ms'], 0)}; {s['underruns_client_stalled']}; "
                      f"{s['underruns_between_sentences']})"]
    ]  # fmt: skip
    keys = (*STAGES, "asr_decode", "dialogue")
    stages = [[n, *(fmt(s["stages_ms"][k]) for k in keys), fmt(s["v2v_ms"]["p50"], 0),
               f"{s['matched_turns']}/{s['lines']}"] for n, s in items]  # fmt: skip
    ends = "; ".join(
        f"{n}: "
        + ", ".join(f"“{why}” ×{c}" for why, c in sorted(s["end_reasons"].items()))
        + " (line closed by "
        + ", ".join(f"{who} ×{c}" for who, c in sorted(s["ended"].items()))
        + f"; {s['server_empty_turns']} empty transcripts, {s['server_no_input_turns']} no-input reprompts)"
        for n, s in items
    )
    lags = "; ".join(f"{n}: {lag_counts(s['loop_lag'])}" for n, s in items if s.get("loop_lag"))
    problems = sorted({p.split(": ", 1)[-1][:160] for _, s in items for p in s["server_problems"]})
    errors = sorted({e for _, s in items for e in s["errors"]})
    ok, ran = [n for n, s in items if s["v2v_ms"]["p95"] <= 1500], ", ".join(str(n) for n, _ in items)
    how = HOW.format(quick=" --quick" * args.quick, rounds=args.rounds, cores=os.cpu_count(), sample=SAMPLE_S)
    out = [
        "## Calls: latency and capacity (Twilio Media Streams on loopback)",
        f"Command: `{cmd}`",
        machine,
        how,
        "### Targets",
        bc.md_table(["target", "measured", "status"], target_rows(levels)),
        f"Largest N with voice-to-voice p95 ≤ 1.5 s: **{max(ok) if ok else 'none'}** (of {ran}).",
        "### Per number of simultaneous calls",
        bc.md_table(LEVEL_HEAD, table),
        "### Server-side stages (medians, ms)",
        bc.md_table(STAGE_HEAD, stages),
        "*endpoint*: VAD speech end → end of utterance decided; *ASR final*: → transcript (near 0 when the "
        "speculative decode, made during the endpoint wait, is reused); *brain total*: "
        "NLU + dialogue step + back-end action; *TTS first audio*: reply → its first audio frame. The rest "
        "of voice-to-voice is audio buffering, queueing and the transport.",
        f"How calls ended (server record; who closed the stream): {ends}. Server log warnings/errors: "
        + ("; ".join(f"`{p}`" for p in problems[:8]) if problems else "none")
        + (f". Client errors: {'; '.join(errors[:5])}" if errors else "")
        + ".",
        "Server event-loop heartbeats (every 25 ms) late by over 20 / 40 / 100 ms, of all beats, per N "
        f"(`voicebot_loop_lag_seconds`; a lag over 20 ms is a gap over 40 ms in every reply then playing): "
        f"{lags or 'not measured'}.",
        "![voice-to-voice latency CDF](img/calls_v2v_cdf.png)",
        "![server-side stage medians](img/calls_breakdown.png)",
        "Raw per-turn rows: `docs/results/calls_<N>.csv`; summary: `docs/results/calls.json`.",
    ]  # fmt: skip
    return "\n\n".join(out)


def _no_nan(value: Any) -> Any:
    """NaN (no data) as JSON null: strict JSON readers refuse NaN."""
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_no_nan(v) for v in value]
    return None if isinstance(value, float) and value != value else value


def breakdown_chart(path: Path, levels: dict[int, dict[str, Any]]) -> None:
    """Stacked bars of the stage medians per N, with the measured voice-to-voice median beside them."""
    plt, fig, ax = bc._figure(9)
    ns = sorted(levels)
    x = np.arange(len(ns))
    bottom = np.zeros(len(ns))
    for stage in STAGES:
        values = np.nan_to_num([levels[n]["stages_ms"][stage] for n in ns])
        ax.bar(x, values, 0.6, bottom=bottom, label=stage)
        bottom += values
    v2v = [levels[n]["v2v_ms"]["p50"] for n in ns]
    ax.scatter(x, v2v, marker="D", color="black", zorder=3, label="voice-to-voice p50 (caller side)")
    ax.set(xticks=x, xticklabels=[str(n) for n in ns], xlabel="simultaneous calls", ylabel="ms",
           title="Server-side stage medians per turn")  # fmt: skip
    ax.grid(axis="y", alpha=0.3)
    bc._save(plt, fig, ax, path)


def compare_turns(before: dict[int, dict[str, Any]], after: dict[int, dict[str, Any]]) -> str:
    """The same level with turns ended by the fixed timer, then by decision (`--before`), in one run."""
    if not before:
        return ""
    fmt = bc.fmt
    rows = [
        [n, *(f"{fmt(s['v2v_ms']['p50'], 0)} / {fmt(s['v2v_ms']['p95'], 0)}" for s in (before[n], after[n])),
         *(fmt(s["stages_ms"]["endpoint"], 0) for s in (before[n], after[n])),
         *(f"{s['matched_turns']}/{s['lines']}" for s in (before[n], after[n]))]
        for n in sorted(before)
    ]  # fmt: skip
    head = ["calls", "v2v p50 / p95, timer", "v2v p50 / p95, decided", "endpoint, timer",
            "endpoint, decided", "turns matched, timer", "turns matched, decided"]  # fmt: skip
    return (
        "\n\n### Turn-taking before and after, same run\n\nEach level run first with `turn.decide: false` "
        "(the fixed 500 ms `vad.end_silence_ms`), then as shipped (`voicebot.asr.turnend.decide`).\n\n"
        + bc.md_table(head, rows)
        + "\n"
    )


def write_results(
    out: Path, levels: dict[int, dict[str, Any]], info: dict[str, Any], cmd: str, body: str
) -> None:
    for n, level in levels.items():
        bc.write_csv(out / "results" / f"calls_{n}.csv", level["rows"])
    summary = {str(n): {k: v for k, v in s.items() if k != "rows"} for n, s in sorted(levels.items())}
    raw = {"command": cmd, "machine": info, "rss_slope_mb_per_call": rss_slope(levels), "levels": summary}
    (out / "results" / "calls.json").write_text(json.dumps(_no_nan(raw), indent=1))
    series = {
        f"{n} call{'s' * (n != 1)}": [r["v2v_ms"] for r in s["rows"] if "v2v_ms" in r]
        for n, s in sorted(levels.items())
    }
    bc.cdf_plot(out / "img" / "calls_v2v_cdf.png", series, "voice-to-voice latency (ms)",
                "Caller's end of speech → first bot audio", (1500, "8-call target: p95 ≤ 1.5 s"))  # fmt: skip
    breakdown_chart(out / "img" / "calls_breakdown.png", levels)
    bc.write_section(out / "benchmarks.md", "calls", body)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--calls", type=int, nargs="+", default=[1, 2, 4, 8, 16], help="simultaneous calls per level"
    )
    ap.add_argument("--rounds", type=int, default=1, help="conversations each caller plays per level")
    ap.add_argument(
        "--before",
        action="store_true",
        help="also run each level with turns ended by the fixed timer (turn.decide false), just before",
    )
    add_server_args(ap)
    args = ap.parse_args()
    info = bc.machine_info()
    clips = caller_clips()
    levels: dict[int, dict[str, Any]] = {}
    before: dict[int, dict[str, Any]] = {}
    for n in args.calls:
        if args.before:
            old = run_level(n, args, clips, TIMER)
            before[n] = old | summarise(old)
        level = run_level(n, args, clips)
        levels[n] = level | summarise(level)
        s = levels[n]
        v2v = s["v2v_ms"]
        print(f"{n} call(s): v2v p50 {bc.fmt(v2v['p50'], 0)} / p95 {bc.fmt(v2v['p95'], 0)} ms, "
              f"server CPU {s['cpu_mean_pct']} %, RSS peak {s['rss_peak_mb']:.0f} MB, {s['wall_s']} s",
              file=sys.stderr, flush=True)  # fmt: skip
    machine = bc.machine_line(info)
    cmd = " ".join([".venv/bin/python scripts/bench_calls.py", *sys.argv[1:]])
    body = report(cmd, machine, levels, args) + compare_turns(before, levels)
    if not args.no_write:
        write_results(args.out, levels, info, cmd, body)
    print(body)


if __name__ == "__main__":
    main()
