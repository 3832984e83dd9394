"""The peer, side by side: our bot and a Pipecat 1.14 bot on the same model files, one Twilio client, one run.

    .venv/bin/python scripts/bench_peer.py --quick              # 2 rounds: docs/results/peer.json + a section
    .venv/bin/python scripts/bench_peer.py --quick --rounds 1 --no-write

Four servers run at once, each answering Twilio Media Streams on loopback: ours (`voicebot serve`, the shop
domain, scripts/_calls_server) with the TTS cache on, ours with it off (`tts.cache_size` 0, no warmed
replies: every reply synthesised when it is due), and the Pipecat bot of scripts/_peer_pipecat.py with
Pipecat's speech-timeout turn stop and with smart-turn v3.2. Pipecat runs in its own venv, made here on
first use under `--venv` (pip from PyPI: pipecat-ai[silero,whisper,websocket,piper]==1.14.0); it is no
dependency of the project. Both bots use the same faster-whisper base int8 directory (the voicebot cache),
the same Silero VAD file and the same Piper joe voice; Pipecat keeps its own decode settings, turn logic
and a fixed reply in place of an LLM (ours runs its NLU and dialogue).

The caller is the calls benchmark's (scripts/_calls_client: the same Piper caller clips, 20 ms μ-law frames
in real time, a person's 400-800 ms pause after each reply). Rounds interleave the four bots, each round in
another order, one call at a time, every bot playing the four shop conversations. Measured per caller line
(the barge-in line left out): **voice-to-voice**, the frame holding the caller's last speech sample → the
first bot frame that is not silence (over -45 dBFS: Pipecat streams a TTS's leading silence, ours trims
it); an **early cut**, bot audio that starts while the caller is still saying the line (the turn was ended
inside it); unanswered lines.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import _bench_common as bc
import numpy as np
from _calls_client import SCRIPTS, Caller, CallLog, turn_rows
from _calls_server import Server, add_server_args, free_port
from bench_calls import caller_clips

from voicebot.assets import whisper_model_dir
from voicebot.audio import ulaw_decode
from voicebot.config import VoicebotConfig
from voicebot.tts.piper_tts import default_voice

ROOT = Path(__file__).resolve().parent.parent
PIPECAT = ("pipecat-ai[silero,whisper,websocket,piper]==1.14.0", "uvicorn")  # uvicorn: serves the FastAPI app
SILENT_DBFS = -45.0  # a bot frame quieter than this is silence, not the reply's first audio
NO_CACHE = {"VOICEBOT__TTS__CACHE_SIZE": "0", "VOICEBOT__TTS__WARM_REPLIES": "false"}
BOTS = (
    "ours, TTS cache on",
    "ours, TTS cache off",
    "Pipecat 1.14, speech timeout",
    "Pipecat 1.14, smart-turn",
)


def peer_venv(folder: Path) -> Path:
    """The Pipecat venv's python, made (and pipecat installed) when it is not there yet."""
    python = folder / "venv" / "bin" / "python"
    if not python.is_file():
        subprocess.run([sys.executable, "-m", "venv", str(folder / "venv")], check=True)
    check = [str(python), "-c", "import pipecat, faster_whisper, piper, uvicorn"]
    if subprocess.run(check, capture_output=True).returncode != 0:
        print(f"installing {' '.join(PIPECAT)} into {folder / 'venv'}", file=sys.stderr, flush=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PIPECAT], check=True)
    return python


class Peer:
    """scripts/_peer_pipecat.py as a child process on a free port."""

    def __init__(self, python: Path, turn: str, folder: Path) -> None:
        self.port = free_port()
        self.log_path = folder / f"pipecat-{turn}.log"
        whisper = whisper_model_dir(VoicebotConfig().asr.model, VoicebotConfig().cache_dir)
        cmd = [str(python), str(ROOT / "scripts" / "_peer_pipecat.py"), "--port", str(self.port),
               "--turn", turn, "--whisper", str(whisper), "--voice", str(default_voice())]  # fmt: skip
        with self.log_path.open("w") as log:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 300.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Pipecat peer exited:\n{self.log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2):
                    return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"Pipecat peer not up after {timeout:.0f} s")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class PeerCaller(Caller):
    """The calls benchmark's caller, hearing a reply start at its first frame that is not silence."""

    def on_media(self, now: float, media_payload: str, at: float) -> None:
        if not self.speaking:
            pcm = ulaw_decode(base64.b64decode(media_payload)).astype(np.float64)
            if 10 * np.log10(np.mean(pcm**2) / 32768.0**2 + 1e-12) < SILENT_DBFS:
                return
        super().on_media(now, media_payload, at)


def early_cuts(log: CallLog) -> set[int]:
    """The caller lines (not barge-ins) during which the bot started talking: the turn ended inside them."""
    media = np.asarray(log.media)
    return {
        s.index
        for s in log.said
        if not s.barge_planned and not s.bot_speaking and np.any((media > s.onset + 0.1) & (media < s.end))
    }


async def one_call(port: int, script_no: int, clips: dict[str, list[str]], tag: str, peer: bool) -> CallLog:
    script = SCRIPTS[script_no]
    log = CallLog(0, 0, script.name, "CA" + hashlib.md5(tag.encode()).hexdigest())
    caller = PeerCaller(f"ws://127.0.0.1:{port}/twilio/stream", script, clips, log, tag + "-pauses")
    if peer:
        caller.close_wait_s = 1.0  # the fixed-reply bot never hangs up: the caller does, after the last reply
    return await caller.run()


def play(ports: dict[str, int], rounds: int, clips: dict[str, list[str]]) -> dict[str, list[dict[str, Any]]]:
    """Every bot plays every conversation once per round; the bots' order rotates from round to round."""
    rows: dict[str, list[dict[str, Any]]] = {bot: [] for bot in ports}
    order = list(ports)
    for r in range(rounds):
        for bot in order[r % len(order) :] + order[: r % len(order)]:
            for s in range(len(SCRIPTS)):
                log = asyncio.run(one_call(ports[bot], s, clips, f"peer-{r}-{s}", bot.startswith("Pipecat")))
                cut = early_cuts(log)
                for row in turn_rows(log, log.started):
                    if row["line"] >= 0:
                        rows[bot].append(
                            row | {"round": r, "early_cut": row["line"] in cut, "error": log.error}
                        )
                print(f"round {r} {bot} {SCRIPTS[s].name}: "
                      f"{[row.get('v2v_ms') for row in rows[bot][-len(SCRIPTS[s].lines):]]}",
                      file=sys.stderr, flush=True)  # fmt: skip
    return rows


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    timed = [r for r in rows if not r["barge_planned"]]
    v2v = [r["v2v_ms"] for r in timed if "v2v_ms" in r]
    return {
        "lines": len(timed),
        "answered": len(v2v),
        "v2v_ms": {
            "p50": bc.pct(v2v, 50),
            "p95": bc.pct(v2v, 95),
            "mean": float(np.mean(v2v)) if v2v else None,
        },
        "early_cuts": sum(r["early_cut"] for r in rows),
        "errors": sorted({r["error"] for r in rows if r.get("error")}),
        "values": v2v,
    }


def report(cmd: str, machine: str, sums: dict[str, dict[str, Any]], rounds: int) -> str:
    fmt = bc.fmt
    best = min((b for b in sums if b.startswith("Pipecat")), key=lambda b: sums[b]["v2v_ms"]["p50"])
    rows = [
        [bot, f"{s['answered']}/{s['lines']}", fmt(s["v2v_ms"]["p50"], 0), fmt(s["v2v_ms"]["p95"], 0),
         s["early_cuts"], f"{s['v2v_ms']['p50'] / sums[best]['v2v_ms']['p50']:.2f}×"]
        for bot, s in sums.items()
    ]  # fmt: skip
    head = ["bot", "lines answered", "v2v p50 ms", "v2v p95 ms", "early cuts", "p50 ÷ best Pipecat p50"]
    off = sums["ours, TTS cache off"]["v2v_ms"]["p50"] / sums[best]["v2v_ms"]["p50"]
    return "\n\n".join([
        "## The peer: Pipecat 1.14 side by side (same models, one Twilio client, one run)",
        f"Command: `{cmd}`",
        machine,
        f"{rounds} round(s), the bots interleaved (each round in another order), one call at a time; each "
        f"bot plays the calls benchmark's four shop conversations per round ({len(SCRIPTS)} calls, the "
        "barge-in line not timed). The Pipecat bot (scripts/_peer_pipecat.py, its own venv) runs Silero VAD, "
        "faster-whisper base int8 and Piper joe from the same files as ours, behind Pipecat's FastAPI "
        "websocket transport and Twilio serializer, with a fixed reply in place of an LLM; ours runs its "
        "NLU and dialogue. Voice-to-voice: caller's last speech frame → first bot frame over "
        f"{SILENT_DBFS:.0f} dBFS. Early cut: the bot started talking while the caller was still saying a "
        "line.",
        bc.md_table(head, rows),
        f"Ours with the TTS cache off against the best Pipecat setting ({best}): **{off:.2f}×** at the "
        "median (issue 24's target: ≤ 0.35×).",
        "![voice-to-voice, ours and Pipecat](img/peer.png)",
        "Raw per-line rows: `docs/results/peer.json`.",
    ])  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=2, help="rounds; each bot plays the four conversations")
    ap.add_argument("--venv", type=Path, default=Path(tempfile.gettempdir()) / "voicebot-bench-peer",
                    help="folder of the Pipecat venv (made on first use)")  # fmt: skip
    add_server_args(ap)
    args = ap.parse_args()
    python = peer_venv(args.venv)
    info = bc.machine_info()
    clips = caller_clips()
    with tempfile.TemporaryDirectory(prefix="bench-peer-") as tmp:
        folder = Path(tmp)
        for sub in ("on", "off"):
            (folder / sub).mkdir()
        servers: list[Server | Peer] = [
            Server(folder / "on", free_port(), args.quick, 1),
            Server(folder / "off", free_port(), args.quick, 1, NO_CACHE),
            Peer(python, "timeout", folder),
            Peer(python, "smart-turn", folder),
        ]
        try:
            for server in servers:
                server.wait_ready()
            rows = play(dict(zip(BOTS, (s.port for s in servers), strict=True)), args.rounds, clips)
        finally:
            for server in servers:
                server.stop()
    sums = {bot: summary(r) for bot, r in rows.items()}
    cmd = " ".join([".venv/bin/python scripts/bench_peer.py", *sys.argv[1:]])
    body = report(cmd, bc.machine_line(info), sums, args.rounds)
    if not args.no_write:
        out = {"command": cmd, "machine": info, "bots": sums, "rows": rows}
        (args.out / "results" / "peer.json").write_text(json.dumps(out, indent=1, default=str))
        title = "Caller's end of speech → first bot audio, ours and Pipecat"
        series = {b: s["values"] for b, s in sums.items()}
        bc.cdf_plot(args.out / "img" / "peer.png", series, "voice-to-voice latency (ms)", title)
        bc.write_section(args.out / "benchmarks.md", "peer", body)
    print(body)


if __name__ == "__main__":
    main()
