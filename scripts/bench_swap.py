"""Live model swap under load: N simultaneous calls while the gateway moves from the first to the full model.

    .venv/bin/python scripts/bench_swap.py --first CACHE/models/shop-first-… --full CACHE/models/shop-…

Each round runs the same N Twilio callers twice, in alternating order, on a fresh `voicebot serve --domain
domains/shop` each time (scripts/bench_calls.run_level: same seeded staggers, scripts and pauses, so turn k of
one run is spoken at the same moment as turn k of the other):
- **no swap**: the server's model cache holds the first model alone, so it serves that all along;
- **swap**: the same, and `--swap-at-s` seconds into the calls the full model is put in place (one atomic
  rename, as `voicebot train` finishes a model); the gateway's watcher (`nlu.swap_check_s`, here
  `--check-s`) finds it, loads it beside the calls and swaps it in between parses (voicebot/nlu/swap.py).
  The swap moment is when the server logs "NLU model swapped".

Reported per variant: calls dropped (a call broken off by an error; a caller line with no reply), how the
server recorded each call's end, its warnings, voice-to-voice p50/p95 over all turns, and over the turns
spoken in the swap window (model placed → swapped + `--window-s`) against the turns spoken in the same
window of the no-swap runs. The issue's bar (first-start issue): 0 dropped, p95 during the swap within 20 %
of the p95 without. Writes
docs/results/swap.json and the `swap` section of docs/benchmarks.md (with --no-write: prints only).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import _bench_common as bc
from _calls_server import Server, add_server_args
from bench_calls import caller_clips, run_level

from models.first_start import model_score
from models.train_domain import model_dir
from voicebot.config import VoicebotConfig

ROOT = Path(__file__).resolve().parent.parent


REAL_CACHE = VoicebotConfig().cache_dir  # read once: run() points VOICEBOT_CACHE at each server's own


def model_cache(folder: Path, first: Path, full_name: str) -> Path:
    """A model cache for one server: the shared Whisper/smart-turn files linked in, the first model under the
    name the shop domain's first model has; the full model's place (`full_name`) still empty."""
    real, cache = REAL_CACHE, folder / "cache"
    (cache / "models").mkdir(parents=True)
    for entry in real.iterdir():
        if entry.is_dir() and entry.name not in ("models", "domains"):
            (cache / entry.name).symlink_to(entry)
    domain = ROOT / "domains" / "shop"
    (cache / "models" / model_dir(domain, cache, first=True).name).symlink_to(first.resolve())
    assert model_dir(domain, cache).name == full_name
    return cache


def place_full(cache: Path, full: Path, at_s: float) -> Any:
    """`during` for run_level: after `at_s`, the full model appears in the cache at once (a symlink renamed
    into place); then wait for the server's log line. Returns (placed, swapped) epoch times."""

    async def during(server: Server) -> dict[str, float | None]:
        await asyncio.sleep(at_s)
        target = cache / "models" / model_dir(ROOT / "domains" / "shop", cache).name
        staging = target.with_name(target.name + ".staging")
        staging.symlink_to(full.resolve())
        placed = time.time()
        staging.rename(target)
        swapped = None
        while time.time() - placed < 120:
            if "NLU model swapped" in server.log_path.read_text(errors="replace"):
                swapped = time.time()
                break
            await asyncio.sleep(0.05)
        return {"placed": placed, "swapped": swapped}

    return during


def v2v(rows: list[dict[str, Any]], lo: float = float("-inf"), hi: float = float("inf")) -> list[float]:
    """Voice-to-voice of the caller lines whose speech ended in [lo, hi) s from the calls' start."""
    return [r["v2v_ms"] for r in rows if r["line"] >= 0 and "v2v_ms" in r and lo <= r["speech_end_s"] < hi]


def dropped(level: dict[str, Any]) -> dict[str, int]:
    """What a swap must not cost: a call broken off (a client error, the stream failing) and caller lines
    that got no reply. A call the bot ends itself (goodbye, transfer) is its script's normal end."""
    lines = [r for r in level["rows"] if r["line"] >= 0]
    return {
        "broken_calls": level["ended"].get("error", 0),
        "lines_without_reply": sum("v2v_ms" not in r for r in lines),
        "lines": len(lines),
    }


def end_reasons(level: dict[str, Any]) -> dict[str, int]:
    """How the server recorded each call's end (compared between the variants: the same scripts)."""
    return dict(Counter(str(r["end_reason"]) for r in level["rows"] if r["line"] < 0))


def problems(level: dict[str, Any]) -> dict[str, int]:
    """The server's warnings and errors, counted by kind (event-loop stalls by the stall watch)."""
    kinds: Counter[str] = Counter()
    for line in level["server_problems"]:
        if "running as root" in line:
            continue
        kinds["event-loop stall" if "stalled" in line else line.split(": ", 1)[-1][:120]] += 1
    return dict(kinds)


def spread(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "p50": round(bc.pct(values, 50), 1), "p95": round(bc.pct(values, 95), 1)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    clips = caller_clips()
    full_name = args.full.resolve().name
    runs: dict[str, list[dict[str, Any]]] = {"none": [], "swap": []}
    for r in range(args.rounds):
        for variant in ("none", "swap") if r % 2 == 0 else ("swap", "none"):
            with tempfile.TemporaryDirectory(prefix=f"bench-swap-{variant}-") as tmp:
                cache = model_cache(Path(tmp), args.first, full_name)
                os.environ["VOICEBOT_CACHE"] = str(cache)  # the server and its domain copy read this
                settings = {"VOICEBOT__NLU__SWAP_CHECK_S": str(args.check_s)}
                during = place_full(cache, args.full, args.swap_at_s) if variant == "swap" else None
                level = run_level(args.calls, args, clips, settings, during)
            runs[variant].append(level)
            print(f"round {r + 1} {variant}: {spread(v2v(level['rows']))}, dropped {dropped(level)}, "
                  f"swap {level['during']}", file=sys.stderr, flush=True)  # fmt: skip
    return summarise(runs, args.window_s)


def summarise(runs: dict[str, list[dict[str, Any]]], window_s: float) -> dict[str, Any]:
    windows = []
    for level in runs["swap"]:
        side = level["during"]
        done = side["swapped"] if side["swapped"] is not None else float("inf")
        windows.append((side["placed"] - level["t0"], done - level["t0"] + window_s))
    in_window = {
        variant: [x for level in levels for lo, hi in windows for x in v2v(level["rows"], lo, hi)]
        for variant, levels in runs.items()
    }
    return {
        "rounds": len(runs["swap"]),
        "swap_s": [
            round(level["during"]["swapped"] - level["during"]["placed"], 2)
            if level["during"]["swapped"] is not None
            else None
            for level in runs["swap"]
        ],
        "windows_s": [[round(lo, 1), round(hi, 1)] for lo, hi in windows],
        "variants": {
            variant: {
                "all": spread([x for level in levels for x in v2v(level["rows"])]),
                "swap_window": spread(in_window[variant]),
                "dropped": dict(sum((Counter(dropped(level)) for level in levels), Counter())),
                "end_reasons": dict(sum((Counter(end_reasons(level)) for level in levels), Counter())),
                "server_problems": dict(sum((Counter(problems(level)) for level in levels), Counter())),
            }
            for variant, levels in runs.items()
        },
    }


TABLE_HEAD = ["variant", "lines answered", "dropped (calls or lines)", "calls ended (server record)",
              "server warnings", "v2v p50 / p95 ms, all turns",
              "v2v p50 / p95 ms, turns in the swap window"]  # fmt: skip


def report(cmd: str, machine: str, s: dict[str, Any], args: argparse.Namespace) -> str:
    fmt, none, swap = bc.fmt, s["variants"]["none"], s["variants"]["swap"]
    rows = []
    for name, v in (("no swap", none), ("swap", swap)):
        d, w = v["dropped"], v["swap_window"]
        lost = d.get("broken_calls", 0) + d.get("lines_without_reply", 0)
        ends = ", ".join(f"{why} ×{n}" for why, n in sorted(v["end_reasons"].items()))
        stalls = ", ".join(f"{what} ×{n}" for what, n in sorted(v["server_problems"].items())) or "none"
        rows.append([name, f"{d['lines'] - d.get('lines_without_reply', 0)}/{d['lines']}", lost, ends, stalls,
                     f"{fmt(v['all']['p50'], 0)} / {fmt(v['all']['p95'], 0)}",
                     f"{fmt(w['p50'], 0)} / {fmt(w['p95'], 0)} (n = {w['n']})"])  # fmt: skip
    ratio = swap["swap_window"]["p95"] / none["swap_window"]["p95"] - 1
    lost = rows[1][2]
    verdict = "**Both met.**" if lost == 0 and ratio <= 0.2 else "**Not met.**"
    models = (
        f"Serving first: `{args.first.resolve()}` (held-out {model_score(args.first)}); put in place: "
        f"`{args.full.resolve()}` (held-out {model_score(args.full)}; a model the watcher swaps in when it "
        "scores at least as well)."
    )
    how = (
        f"{args.calls} simultaneous Twilio callers, {s['rounds']} round(s) of a run without and a run with a "
        f"swap, in alternating order, each on a fresh server (scripts/bench_swap.py's docstring says how). "
        f"The full model was put in place {args.swap_at_s:g} s into the calls; the watcher polls every "
        f"{args.check_s:g} s; model placed → swapped took {', '.join(f'{x} s' for x in s['swap_s'])}. "
        f"Swap window: placed → swapped + {args.window_s:g} s ({s['windows_s']} s from the calls' start)."
    )
    verdicts = (
        f"p95 in the swap window vs the same turns without a swap: {100 * ratio:+.1f} % (bar: within +20 %); "
        f"dropped with the swap: {lost} (bar: 0). {verdict}"
    )
    title = "## Live model swap under calls (first → full model)"
    table = bc.md_table(TABLE_HEAD, rows)
    return "\n\n".join([title, f"Command: `{cmd}`", machine, models, how, table, verdicts])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--first", type=Path, required=True, help="the first model's directory (serves first)")
    ap.add_argument("--full", type=Path, required=True, help="the full model's directory (swapped in)")
    ap.add_argument("--calls", type=int, default=8, help="simultaneous calls")
    ap.add_argument("--rounds", type=int, default=2, help="pairs of runs (without, with a swap)")
    ap.add_argument("--swap-at-s", type=float, default=12.0, help="seconds into the calls the model appears")
    ap.add_argument("--check-s", type=float, default=2.0, help="the watcher's poll (nlu.swap_check_s)")
    ap.add_argument("--window-s", type=float, default=10.0, help="swap window: swapped + this many seconds")
    add_server_args(ap)
    args = ap.parse_args()
    if args.quick:
        sys.exit("--quick: the swap is between the first and the full model")
    info = bc.machine_info()
    summary = run(args)
    cmd = " ".join([".venv/bin/python scripts/bench_swap.py", *sys.argv[1:]])
    body = report(cmd, bc.machine_line(info), summary, args)
    if not args.no_write:
        raw = {"command": cmd, "machine": info, **summary}
        (args.out / "results" / "swap.json").write_text(json.dumps(raw, indent=1))
        bc.write_section(args.out / "benchmarks.md", "swap", body)
    print(body)


if __name__ == "__main__":
    main()
