"""Latency per wire protocol: one call over Twilio and over each carrier stream, in the same gateway run.

    nice -n 10 .venv/bin/python scripts/bench_carriers.py            # 2 rounds, writes docs/benchmarks.md
    nice -n 10 .venv/bin/python scripts/bench_carriers.py --rounds 1 --no-write

One gateway in this process (real models: Silero, Whisper base, Piper; the echo brain, so the figures are
the pipeline's and the wire's, not a domain's), then, one after another, a call per protocol from the peers
the tests use (`voicebot.testing.carriers`; Twilio's from `voicebot.testing.faults.callers`), each asking
the same three questions in 20 ms frames in real time, after one warm-up call that is not counted (its
replies fill the TTS cache, which every later call then hits alike). Per turn, two figures: voice-to-voice
as the caller measures it (from its last frame of speech to the first frame of the bot's reply it
receives) and as the server records it (`at_ms.first_audio_sent`: from the endpointer's end of speech to
the reply's first frame handed to the socket). Rounds alternate the order of the protocols, so a drift in
the machine's load (other work on it) does not favour one. Results: the `calls-carriers` section of
docs/benchmarks.md and docs/results/calls_carriers.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
from pathlib import Path
from typing import Any

import _bench_common as bc
import numpy as np

from voicebot.config import ServerConfig, VoicebotConfig
from voicebot.frames import PCM, TurnDone
from voicebot.pipeline import Services
from voicebot.testing.carriers import PEERS, CarrierCaller
from voicebot.testing.faults.callers import Caller, TwilioCaller, until
from voicebot.testing.gateway import Recorder, no_greeting, running_gateway
from voicebot.testing.speech import caller_audio

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
JSON_OUT = ROOT / "docs" / "results" / "calls_carriers.json"
TOKEN = "bench-token"
QUESTIONS = ("hours", "agent", "hours")
PROTOCOLS = ("twilio", *PEERS)


def make_caller(protocol: str) -> Caller:
    if protocol == "twilio":
        caller = TwilioCaller()
        caller.path += f"?token={TOKEN}"
        return caller
    return PEERS[protocol]({"bench": "1"}, TOKEN)


def clocked(caller: Caller) -> tuple[list[float], list[float]]:
    """Loop times of every frame the caller sends and of every bot audio frame it receives."""
    sent: list[float] = []
    heard: list[float] = []
    loop = asyncio.get_running_loop()
    send = caller._send

    async def timed_send(pcm: PCM) -> None:
        await send(pcm)
        sent.append(loop.time())

    caller._send = timed_send  # type: ignore[method-assign]
    if isinstance(caller, CarrierCaller):
        read = caller.read

        def timed_read(message: str | bytes) -> tuple[str, Any]:
            kind, data = read(message)
            if kind == "media":
                heard.append(loop.time())
            return kind, data

        caller.read = timed_read  # type: ignore[method-assign]
    else:
        assert isinstance(caller, TwilioCaller)
        handle = caller.stream.handle

        def timed_handle(message: str | bytes) -> dict[str, Any]:
            data = handle(message)
            if data.get("event") == "media":
                heard.append(loop.time())
            return data

        caller.stream.handle = timed_handle  # type: ignore[method-assign]
    return sent, heard


async def one_call(protocol: str, gw: Any, recorder: Recorder, lines: dict[str, PCM]) -> list[dict[str, Any]]:
    caller = make_caller(protocol)
    sent, heard = clocked(caller)
    await caller.connect(gw)
    turns: list[dict[str, Any]] = []
    try:
        assert await until(lambda: caller.call_id(gw.hub) is not None, 20)
        call_id = caller.call_id(gw.hub)
        assert call_id is not None
        for n, key in enumerate(QUESTIONS, 1):
            _, last = caller.say(np.concatenate([lines[key], np.zeros(12_000, np.int16)]))
            speech_end = last - (12_000 + 2_400) // 160  # the frame where the silence starts (0.3 s pad)
            assert await until(lambda: len(recorder.of(call_id, TurnDone)) >= n, 60)  # noqa: B023
            await asyncio.sleep(1.0)  # the reply plays on
            ended = sent[speech_end - 1]
            first = next((t for t in heard if t > ended), None)
            record = recorder.of(call_id, TurnDone)[n - 1].record
            turns.append(
                {
                    "client_ms": None if first is None else round((first - ended) * 1000.0, 1),
                    "server_ms": record.times.at_ms().get("first_audio_sent"),
                    "transcript": record.transcript,
                }
            )
            while caller.sent < last:  # the trailing silence is sent before the next question
                await asyncio.sleep(0.05)
        if isinstance(caller, CarrierCaller):
            await caller.hang_up()
    finally:
        await caller.close()
    return turns


async def run(rounds: int) -> dict[str, list[dict[str, Any]]]:
    config = VoicebotConfig(server=ServerConfig(token=TOKEN, audiosocket_port=None, drain_s=2))
    services = Services.load(config)
    lines = caller_audio(services)
    recorder = Recorder()
    results: dict[str, list[dict[str, Any]]] = {p: [] for p in PROTOCOLS}
    try:
        async with running_gateway(config, no_greeting(services), observers=[recorder]) as gw:
            await one_call(
                "twilio", gw, recorder, lines
            )  # warm-up, not counted: the replies reach the TTS cache
            for r in range(rounds):
                for protocol in PROTOCOLS if r % 2 == 0 else PROTOCOLS[::-1]:
                    results[protocol] += await one_call(protocol, gw, recorder, lines)
                    print(f"round {r + 1}: {protocol} {results[protocol][-len(QUESTIONS) :]}", flush=True)
    finally:
        services.close()
    return results


def median(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return round(statistics.median(kept), 1) if kept else None


def section(results: dict[str, list[dict[str, Any]]], command: str, info: dict[str, Any]) -> str:
    base = {k: median([t[k] for t in results["twilio"]]) for k in ("client_ms", "server_ms")}
    rows = []
    for protocol, turns in results.items():
        client, server = median([t["client_ms"] for t in turns]), median([t["server_ms"] for t in turns])
        ratio = f"{(client / base['client_ms'] - 1) * 100:+.1f} %" if client and base["client_ms"] else "–"
        kept = [t["client_ms"] for t in turns if t["client_ms"] is not None]
        spread = f"{min(kept):.0f}–{max(kept):.0f}" if kept else "–"
        rows.append([protocol, len(turns), client, spread, server, ratio])
    return "\n".join(
        [
            "## Calls per wire protocol (one call each, same run)",
            "",
            f"Command: `{command}`",
            "",
            bc.machine_line(info),
            "",
            "One gateway, real models, echo brain, no greeting; a call per protocol from the test peers, "
            f"{len(QUESTIONS)} questions each, rounds alternating the order. Voice-to-voice medians: as the "
            "caller measures it (its last frame of speech → the first frame of the reply it receives) and as "
            "the server records it (`at_ms.first_audio_sent`). The last column compares the caller's figure "
            "with Twilio's in the same run.",
            "",
            bc.md_table(
                ["protocol", "turns", "caller v2v ms", "its range", "server v2v ms", "vs Twilio"], rows
            ),
            "",
            "A few turns per protocol: a difference smaller than the ranges overlap is noise, all the more "
            "when the machine line above shows other work on it.",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    info = bc.machine_info()
    results = asyncio.run(run(args.rounds))
    niceness = os.nice(0)
    command = (f"nice -n {niceness} " if niceness else "") + ".venv/bin/python scripts/bench_carriers.py"
    command += f" --rounds {args.rounds}" if args.rounds != 2 else ""
    body = section(results, command, info)
    print(body)
    if not args.no_write:
        JSON_OUT.parent.mkdir(parents=True, exist_ok=True)
        JSON_OUT.write_text(
            json.dumps({"command": command, "machine": info, "turns": results}, indent=1) + "\n"
        )
        bc.write_section(DOC, "calls-carriers", body)
        print(f"wrote {JSON_OUT.relative_to(ROOT)} and the calls-carriers section of {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
