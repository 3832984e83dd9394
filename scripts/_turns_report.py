"""The report and plot of scripts/bench_turns.py: tables per detector, voice group and category."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import _bench_common as bc
import numpy as np

from models.voices import VOICES

OVER_WAIT_MS = 1000.0


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    lat = [r["latency_ms"] for r in rows if r["latency_ms"] is not None]
    waited = [r["pause_ms"] for r in rows if r["pause_ms"] is not None]
    n = len(rows)
    return {
        "n": n,
        "pause_p50_ms": round(bc.pct(waited, 50), 1) if waited else None,
        "latency_p50_ms": round(bc.pct(lat, 50), 1) if lat else None,
        "latency_p95_ms": round(bc.pct(lat, 95), 1) if lat else None,
        "false_cuts_pct": round(100 * sum(r["false_cut"] for r in rows) / n, 1) if n else None,
        "over_waits_pct": round(100 * sum((r["pause_ms"] or 0) > OVER_WAIT_MS for r in rows) / n, 1)
        if n
        else None,
    }


def _ms(x: float | None) -> str:
    return "—" if x is None else bc.fmt(x, 0)


def report(
    cmd: str, machine: str, summary: dict[str, Any], clips: list[Any], turns: int, pauses: tuple[float, ...]
) -> str:
    """The `turns` section of docs/benchmarks.md (`clips`: bench_turns' Clip records)."""

    def cells(s: dict[str, Any]) -> list[str]:
        return [
            _ms(s["pause_p50_ms"]),
            _ms(s["latency_p50_ms"]),
            _ms(s["latency_p95_ms"]),
            f"{s['false_cuts_pct']} %",
            f"{s['over_waits_pct']} %",
        ]

    head = ["detector", "waits p50 ms", "answer-ready p50 ms", "p95 ms", "false cuts", "over-waits"]
    groups = [
        f"**{group}**\n\n" + bc.md_table(head, [[name, *cells(s[group])] for name, s in summary.items()])
        for group in ("all", "tuned voices", "held-out voices")
    ]
    cats = list(next(iter(summary.values()))["by category"])
    by_cat = bc.md_table(
        ["detector", *cats],
        [
            [
                name,
                *(
                    f"{_ms(cat['latency_p50_ms'])} ms / {cat['false_cuts_pct']} %"
                    for cat in (s["by category"][c] for c in cats)
                ),
            ]
            for name, s in summary.items()
        ],
    )
    obs = [p for c in clips for p in c.seen]
    compute = (
        f"per pause observed ({len(obs)}): Whisper decode p50 "
        f"{bc.fmt(bc.pct([p.decode_ms for p in obs], 50), 0)} ms, smart-turn p50 "
        f"{bc.fmt(bc.pct([p.model_ms for p in obs], 50), 0)} ms"
    )
    names = dict.fromkeys(c.voice for c in clips)
    voices = ", ".join(f"{v}{' (held out)' if VOICES[v].held_out else ''}" for v in names)
    lines = dict.fromkeys(c.line for c in clips)
    return "\n\n".join(
        [
            "## Turns\n\nWhen each end-of-turn detector decides that the caller is done "
            "(scripts/bench_turns.py: the set, the detectors and the measures are in its docstring). "
            "'Waits' is the pause the detector needs, from the caller's last word (the VAD hears the end a "
            "little late); 'answer-ready' is when the bot may answer: that pause over and the transcript "
            "(and the audio model) computed, on this machine, at its load; a false cut ends the turn "
            "inside it (a pause inside a number, after 'um', 'and…'); an over-wait waits over 1 s "
            "after the last word (its pause, not counting this machine's decode time).",
            f"Command: `{cmd}`. {machine} {len(clips)} clips: {turns} turns × voices "
            f"{voices} × lines {', '.join(lines)}; pauses inside turns "
            f"{', '.join(str(p) for p in pauses)} s. {compute}.",
            *groups,
            "**By category** (latency p50 / false cuts)\n\n" + by_cat,
            "![turn decisions](img/turns.png)",
        ]
    )


def plot(path: Path, summary: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summary)
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.6))
    x = np.arange(len(names))
    for off, group in ((-0.2, "tuned voices"), (0.2, "held-out voices")):
        a.bar(x + off, [summary[n][group]["pause_p50_ms"] or 0 for n in names], 0.4, label=f"{group}: waits")
        a.errorbar(x + off, [summary[n][group]["latency_p50_ms"] or 0 for n in names], fmt="k_", ms=14)
        b.bar(x + off, [summary[n][group]["false_cuts_pct"] for n in names], 0.4, label=group)
    a.set_ylabel("after the last word, ms: p50 wait (bar),\np50 answer-ready at this load (tick)")
    b.set_ylabel("false cuts, % of turns")
    for ax in (a, b):
        ax.set_xticks(x, [n.replace(" + ", "\n+ ") for n in names], fontsize=8)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
