"""Plots of the soak (scripts/soak_calls.py): what a reader checks first — do the lines stay flat?"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import _bench_common as bc
import numpy as np


def plots(img: Path, samples: list[dict[str, Any]], rows: list[dict[str, Any]], a: dict[str, Any]) -> None:
    """The soak's three PNGs: resources over time with their fitted slopes, latency over time, and the
    first vs last window's latency CDF."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = samples
    t = np.asarray([x["t_s"] for x in s]) / 60
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(10, 6.5))
    for ax, key, col, label in ((top, "rss", "rss_mb", "RSS (MB)"), (bottom, "fds", "fds", "open fds")):
        ax.plot(t, [x[col] for x in s], lw=1, label=label)
        f = a[key]
        if f["n"] >= 3:
            span = np.asarray([a["warmup_s"], a["load_s"]])
            ax.plot(span / 60, f["intercept"] + f["slope_per_h"] * span / 3600, "r--", lw=1,
                    label=f"fit: {f['slope_per_h']:+.2f}/h")  # fmt: skip
    if all("anon_mb" in x for x in s):
        top.plot(t, [x["anon_mb"] for x in s], lw=1, label="… anonymous (heap)")
    if all("heap_in_use_mb" in x for x in s):
        top.plot(t, [x["heap_in_use_mb"] for x in s], lw=1, label="C heap in use (mallinfo2)")
        top.plot(t, [x["heap_free_mb"] for x in s], lw=1, label="C heap free, held")
    bottom.plot(t, [x["threads"] for x in s], lw=1, label="threads")
    for ax in (top, bottom):
        ax.axvspan(0, a["warmup_s"] / 60, color="grey", alpha=0.15, label="warm-up")
        ax.axvspan(a["load_s"] / 60, t[-1], color="orange", alpha=0.15, label="draining")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    top.set(ylabel="server RSS (MB)", title="Server resources over the soak")
    bottom.set(ylabel="count", xlabel="minutes")
    fig.tight_layout()
    img.mkdir(parents=True, exist_ok=True)
    fig.savefig(img / "soak_resources.png", dpi=110)
    plt.close(fig)

    turns = [r for r in rows if r["line"] >= 0 and "v2v_ms" in r]
    x = np.asarray([r["speech_end_s"] for r in turns]) / 60
    y = np.asarray([r["v2v_ms"] for r in turns])
    plt_, fig, ax = bc._figure(10)
    ax.scatter(x, y, s=6, alpha=0.4, label="turn")
    edges = np.linspace(0, a["load_s"] / 60, 21)
    bins = [((lo + hi) / 2, y[(x >= lo) & (x < hi)]) for lo, hi in itertools.pairwise(edges)]
    mids = [m for m, inside in bins if inside.size]
    for q, style in ((50, "k-"), (95, "r-")):
        ax.plot(mids, [np.percentile(v, q) for _, v in bins if v.size], style, lw=1.5, label=f"p{q} per bin")
    w, end = a["window_s"] / 60, a["load_s"] / 60
    ax.axvspan(0, w, color="green", alpha=0.1, label="first window")
    ax.axvspan(end - w, end, color="purple", alpha=0.1, label="last window")
    ax.set(xlabel="minutes (caller's end of speech)", ylabel="voice-to-voice (ms)",
           title="Voice-to-voice latency over the soak")  # fmt: skip
    ax.grid(alpha=0.3)
    bc._save(plt_, fig, ax, img / "soak_latency.png")

    def window(lo: float, hi: float) -> list[float]:
        return [r["v2v_ms"] for r in turns if lo <= r["speech_end_s"] < hi]

    w = a["window_s"]
    series = {f"first {w / 60:.2f} min": window(0, w),
              f"last {w / 60:.2f} min": window(a["load_s"] - w, a["load_s"])}  # fmt: skip
    title = "Caller's end of speech → first bot audio: first vs last window"
    bc.cdf_plot(img / "soak_v2v_cdf.png", series, "voice-to-voice latency (ms)", title)
