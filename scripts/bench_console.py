"""No disturbance: does an operator console slow the calls down? Voice-to-voice latency of the same calls
with no console open and with five, in alternating rounds of one run (issue 26: p95 may move 5 % at most).

Each round places `--calls` simultaneous Twilio-protocol calls (the shop's scripted conversation: track an
order by its number, then goodbye) on one gateway; in "consoles" rounds five consoles are open throughout:
each holds the live feed (SSE, with the partial transcripts it switches on) and, every `--refresh-s`,
reloads the history (`/console/api/calls`), the dashboard (`/console/api/stats`) and the latest call's page,
which is harsher than a person clicking around. Voice-to-voice per turn comes from the turn records
(endpoint + ASR + dialogue + first TTS audio, as `/metrics` has it).

By default the models are the test suite's fakes (`voicebot.testing.console`), so what is measured is what
the console itself costs the gateway process (event loop, serialisation, its record reads in threads, the
extra partial decodes of a fake recogniser), not the contention of real Whisper threads with it. `--real`
runs the real models instead: Silero VAD, Whisper, Piper and the shop's first NLU model
(`voicebot.testing.shop`, trained once and cached), with callers speaking Piper-synthesised lines (the
calls benchmark's "track" script, scripts/_calls_client.py); there the partial transcripts a watched call
decodes compete with the calls' own final decodes for the model pool and the CPU.

    .venv/bin/python scripts/bench_console.py --rounds 6 --calls 4
    .venv/bin/python scripts/bench_console.py --real --rounds 8 --calls 2   # about 12 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench_common import fmt, machine_info, machine_line, md_table, pct, write_section
from _calls_client import SCRIPTS

from telephony.metrics import voice_to_voice_ms
from voicebot.config import VoicebotConfig
from voicebot.frames import TurnDone
from voicebot.nlu.parser import Parser
from voicebot.pipeline import Services
from voicebot.testing.console import TOKEN, ConsoleBed, console_gateway
from voicebot.testing.twilio import RATE

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ["where is my order", "four five seven two one nine", "no thanks goodbye"]
REAL_SCRIPT = [line.text for line in SCRIPTS[0].lines]  # "track": order, its number, no thanks
TURN_WAIT_S = {False: 15.0, True: 60.0}  # the most a caller waits for the bot's answer before going on
HEADERS = f"Authorization: Bearer {TOKEN}\r\n"
CONSOLES = 5
LIMIT_PCT = 5.0


async def _get(host: str, path: str) -> None:
    name, port = host.split(":")
    reader, writer = await asyncio.open_connection(name, int(port))
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{HEADERS}Connection: close\r\n\r\n".encode())
    await reader.read()
    writer.close()


async def _feed(host: str, events: list[int]) -> None:
    name, port = host.split(":")
    reader, writer = await asyncio.open_connection(name, int(port))
    writer.write(f"GET /console/api/live HTTP/1.1\r\nHost: {host}\r\n{HEADERS}\r\n".encode())
    try:
        while line := await reader.readline():
            if line.startswith(b"data: "):
                events[0] += 1
    finally:
        writer.close()


async def _console(host: str, refresh_s: float, events: list[int]) -> None:
    """One open console: the live feed, and (`refresh_s` > 0) the history, dashboard and facets reloaded."""
    feed = asyncio.create_task(_feed(host, events))
    try:
        while refresh_s > 0:
            await _get(host, "/console/api/calls?limit=50")
            await _get(host, "/console/api/stats?hours=24")
            await _get(host, "/console/api/facets")
            await asyncio.sleep(refresh_s)
        await feed
    finally:
        feed.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await feed


async def _round(
    bed: ConsoleBed, calls: int, consoles: int, refresh_s: float, script: list[str], wait_s: float
) -> tuple[list[float], int]:
    events = [0]
    watchers = [asyncio.create_task(_console(bed.gw.http, refresh_s, events)) for _ in range(consoles)]
    await asyncio.sleep(0.5 if consoles else 0)
    try:
        ids = await asyncio.gather(*(bed.place_call(script, wait_s) for _ in range(calls)))
    finally:
        for task in watchers:
            task.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
    latencies = [
        v
        for call_id in ids
        for frame in bed.recorder.of(call_id, TurnDone)
        if (v := voice_to_voice_ms(frame.record.timings_ms)) is not None
    ]
    return latencies, events[0]


def real_services(config: VoicebotConfig) -> Services:
    """The real models for the gateway's config; Piper without its random noise, so every run's callers
    say the same audio."""
    config.tts.variation = 0.0
    return Services.load(config)


async def run(rounds: int, calls: int, refresh_s: float, partials: bool, real: bool) -> dict[str, Any]:
    found: dict[str, list[float]] = {"none": [], "consoles": []}
    per_round: dict[str, list[float]] = {"none": [], "consoles": []}
    feed_events = 0
    script, wait_s = (REAL_SCRIPT if real else SCRIPT), TURN_WAIT_S[real]
    nlu: Parser | None = None
    if real:
        from voicebot.nlu.parser import NLU
        from voicebot.testing.shop import shop_model

        nlu = NLU(shop_model(VoicebotConfig().cache_dir))
    services = real_services if real else None
    with tempfile.TemporaryDirectory() as tmp:
        async with console_gateway(Path(tmp), {"live_partials": partials}, nlu=nlu, services=services) as bed:
            if real:
                from voicebot.testing.speech import spoken

                audio = spoken(bed.services, {text: text for text in script}, RATE)
                bed.say = audio.__getitem__
            await bed.place_call(script, wait_s)  # warm-up: first-call costs out of the figures
            for n in range(rounds):
                mode = "consoles" if n % 2 else "none"
                consoles = CONSOLES if n % 2 else 0
                latencies, events = await _round(bed, calls, consoles, refresh_s, script, wait_s)
                found[mode] += latencies
                per_round[mode].append(pct(latencies, 95))
                feed_events += events
                p95 = fmt(pct(latencies, 95))
                print(f"round {n + 1}/{rounds} ({mode}): {len(latencies)} turns, p95 {p95} ms", flush=True)
    return {"samples": found, "round_p95": per_round, "feed_events": feed_events}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rounds", type=int, default=6, help="alternating rounds (even: none, odd: consoles)"
    )
    parser.add_argument("--calls", type=int, default=4, help="simultaneous calls per round")
    parser.add_argument(
        "--refresh-s", type=float, default=1.0, help="each console reloads its views this often"
    )
    parser.add_argument("--no-partials", action="store_true", help="console.live_partials off")
    parser.add_argument("--real", action="store_true", help="the real models (Whisper, Piper, shop NLU)")
    parser.add_argument("--no-docs", action="store_true", help="print only; leave docs/ as it is")
    args = parser.parse_args()
    info = machine_info()
    result = asyncio.run(run(args.rounds, args.calls, args.refresh_s, not args.no_partials, args.real))
    moved, body, record = report(args, result, info)
    print(body)
    if not args.no_docs:
        kind = "real" if args.real else "fake"
        write_section(ROOT / "docs" / "benchmarks.md", "console-real" if args.real else "console", body)
        out = ROOT / "docs" / "results" / "console_disturbance.json"
        kept = json.loads(out.read_text()) if out.is_file() else {}
        kept = {"fake": kept} if "command" in kept else kept  # the file held the fake run alone before
        out.write_text(json.dumps(kept | {kind: record}, indent=1) + "\n")
    return 0 if moved <= LIMIT_PCT else 1


def report(args: argparse.Namespace, result: dict[str, Any], info: dict[str, Any]) -> tuple[float, str, Any]:
    """The p95 move (%), the docs section and the JSON record of a run."""
    none, five = result["samples"]["none"], result["samples"]["consoles"]
    rounds = result["round_p95"]
    rows = [
        (mode, len(v), fmt(pct(v, 50)), fmt(pct(v, 95)))
        for mode, v in (("no console", none), ("5 consoles", five))
    ]
    moved = 100 * (pct(five, 95) - pct(none, 95)) / pct(none, 95)
    typical = 100 * (pct(rounds["consoles"], 50) - pct(rounds["none"], 50)) / pct(rounds["none"], 50)
    verdict = "within" if moved <= LIMIT_PCT else "OVER"  # faster with consoles is no disturbance
    command = (
        "python scripts/bench_console.py "
        + ("--real " if args.real else "")
        + f"--rounds {args.rounds} --calls {args.calls} --refresh-s {args.refresh_s}"
        + (" --no-partials" if args.no_partials else "")
    )
    if args.real:
        title = "## Console: no disturbance with the real models (one run)"
        asr = VoicebotConfig().asr.model
        models = (f"real models (Silero VAD, Whisper {asr}, Piper, the shop's first NLU model; callers say "
                  "Piper-synthesised lines), so the partial transcripts a watched call decodes compete with "
                  "the calls' own decodes")  # fmt: skip
    else:
        title = "## Console: no disturbance (voice-to-voice with and without five consoles, one run)"
        models = "fake models (what the console costs the gateway process, not Whisper contention)"
    body = "\n\n".join([
        title,
        f"`{command}` — {models}; "
        f"{args.calls} simultaneous Twilio calls a round, rounds alternating, five consoles each holding the "
        f"live feed and reloading history, dashboard and facets every {args.refresh_s:g} s "
        f"({result['feed_events']} live events delivered).",
        md_table(("consoles", "turns", "voice-to-voice p50 (ms)", "p95 (ms)"), rows),
        f"p95 moved {moved:+.1f} % with five consoles: {verdict} the 5 % limit (the median of the rounds' "
        f"own p95 moved {typical:+.1f} %: {', '.join(fmt(v) for v in rounds['none'])} ms without, "
        f"{', '.join(fmt(v) for v in rounds['consoles'])} ms with). A loaded machine makes single rounds "
        "noisy: see the line below.",
        machine_line(info),
    ])  # fmt: skip
    record = {"command": command, "machine": info, "p95_moved_pct": round(moved, 2),
              "round_p95_ms": rounds, "samples_ms": result["samples"]}  # fmt: skip
    return moved, body, record


if __name__ == "__main__":
    sys.exit(main())
