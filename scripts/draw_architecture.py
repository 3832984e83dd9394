"""Draws docs/architecture.png from the code itself: the stages a `CallPipeline` really has (built on the
fake models, so no model is loaded), the frame classes of `voicebot.frames` by category, and both directions.

    .venv/bin/python scripts/draw_architecture.py            # writes docs/architecture.png

Run it after adding a stage or a frame; tests/test_docs.py fails when the picture is missing.
"""

from __future__ import annotations

import argparse
import inspect
from itertools import pairwise
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from voicebot import frames as F
from voicebot.brain import EchoBrain
from voicebot.filecall import ReplyCollector
from voicebot.pipeline import CallPipeline
from voicebot.testing.fakes import fake_services

ROOT = Path(__file__).resolve().parent.parent
BASES = {"Frame", "SystemFrame", "DataFrame", "ControlFrame"}
COLOURS = {F.Category.SYSTEM: "#d9534f", F.Category.DATA: "#5b9bd5", F.Category.CONTROL: "#70ad47"}
MEANING = {
    F.Category.SYSTEM: "system: at once, overtake queued work, survive an interruption",
    F.Category.DATA: "data: in order, dropped when the caller interrupts",
    F.Category.CONTROL: "control: in order, never dropped",
}


def stage_names() -> list[tuple[str, str]]:
    """(class name, module) of each stage, in pipeline order, from a real pipeline on fake models."""
    services = fake_services()
    try:
        pipe = CallPipeline(services, EchoBrain(), ReplyCollector(), paced=False)
        return [(type(s).__name__, type(s).__module__) for s in pipe.stages]
    finally:
        services.close()


def frames_by_category() -> dict[F.Category, list[str]]:
    out: dict[F.Category, list[str]] = {c: [] for c in F.Category}
    for name, cls in inspect.getmembers(F, inspect.isclass):
        if issubclass(cls, F.Frame) and cls.__module__ == F.__name__ and name not in BASES:
            out[cls.category].append(name)
    return out


def box(ax: Any, x: float, y: float, w: float, h: float, text: str, colour: str = "#f2f2f2") -> None:
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02", fc=colour, ec="#404040", lw=1.2))
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=9)


def arrow(ax: Any, start: tuple[float, float], end: tuple[float, float], colour: str, rad: float = 0.0,
          label: str = "", style: str = "-|>") -> None:  # fmt: skip
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle=style, mutation_scale=14, color=colour, lw=1.6,
                                 connectionstyle=f"arc3,rad={rad}"))  # fmt: skip
    if label:
        lift = abs(rad) * abs(end[0] - start[0]) / 2 + 0.15 if rad else 0.25
        lift = -lift if rad * (start[0] - end[0]) < 0 else lift  # the arc bends down: its label under it
        mid = ((start[0] + end[0]) / 2, (start[1] + end[1]) / 2 + lift)
        ax.text(*mid, label, ha="center", va="center", fontsize=8, color=colour)


def draw(out: Path) -> None:
    stages = stage_names()
    fig, ax = plt.subplots(figsize=(14, 6.2))
    ax.set_xlim(0, 14)
    ax.set_ylim(0, 6.2)
    ax.axis("off")
    w, h, y, gap = 1.55, 0.8, 3.6, 0.55
    x0 = 1.55
    xs = [x0 + i * (w + gap) for i in range(len(stages))]
    box(ax, 0.05, y, 1.1, h, "caller in\n(transport)", "#fff2cc")
    arrow(ax, (1.15, y + h / 2), (xs[0], y + h / 2), "#404040")
    for x, (name, module) in zip(xs, stages, strict=True):
        box(ax, x, y, w, h, f"{name}\n{module.removeprefix('voicebot.')}")
    for a, b in pairwise(xs):
        arrow(ax, (a + w, y + h / 2), (b, y + h / 2), "#404040")
    end = xs[-1] + w
    box(ax, end + 0.35, y, 1.3, h, "events →\nobservers\n(records, metrics)", "#fff2cc")
    arrow(ax, (end, y + h / 2), (end + 0.35, y + h / 2), "#404040")
    index = {name: i for i, (name, _) in enumerate(stages)}
    brain, speak = xs[index["BrainStage"]], xs[index["SpeakStage"]]
    for target in ("ASRStage", "VADStage"):
        x = xs[index[target]]
        label = "ListeningContext (before each caller turn)" if target == "VADStage" else ""
        arrow(ax, (brain + w * 0.3, y + h), (x + w * 0.7, y + h), "#7030a0", rad=0.35, label=label)
    arrow(ax, (speak + w * 0.3, y + h), (brain + w * 0.7, y + h), "#c55a11", rad=0.6, label="PlaybackReport")
    asr = xs[index["ASRStage"]]  # the bot is speaking: caller speech over it is judged (voicebot.asr.bargein)
    arrow(ax, (speak + w * 0.15, y), (asr + w * 0.6, y), "#2e75b6", rad=-0.3, label="BotSpeaking")
    turns = xs[index["TurnStage"]]
    ax.text((speak + w + turns) / 2, y + h / 2 - 0.3, "reply,\nreport", ha="center", va="top", fontsize=8)
    box(ax, speak, y - 1.35, w, 0.7, "AudioSink\n(the transport)", "#fff2cc")
    arrow(ax, (speak + w / 2, y), (speak + w / 2, y - 0.65), "#404040", label="BotAudio")
    legend = (
        "downstream: caller → bot (black)     upstream, the one way back: dialogue expectation (purple), "
    )
    ax.text(0.05, 5.85, legend + "what the caller heard (orange), the bot speaks (blue)", fontsize=9)
    groups = frames_by_category()
    for row, category in enumerate(F.Category):
        ty = 1.55 - row * 0.6
        ax.add_patch(FancyBboxPatch((0.05, ty - 0.18), 0.3, 0.36, boxstyle="round,pad=0.02",
                                    fc=COLOURS[category], ec="none"))  # fmt: skip
        ax.text(0.45, ty + 0.08, MEANING[category], fontsize=9, va="center", weight="bold")
        ax.text(0.45, ty - 0.16, ", ".join(sorted(groups[category])), fontsize=8, va="center")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "architecture.png")
    args = ap.parse_args()
    draw(args.out)
    print(args.out)


if __name__ == "__main__":
    main()
