"""Shared pieces of the benchmark scripts: machine facts, percentiles, the WER text normaliser, and rewriting
one marked section of docs/benchmarks.md while keeping the others intact. The telephone channel is
`voicebot.line` (`telephone`, `simulate` and its presets)."""

from __future__ import annotations

import csv
import datetime as dt
import os
import platform
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from voicebot.frames import PCM

DOC_INTRO = """# Benchmarks

Measured numbers for the offline voice bot, produced by the scripts in `scripts/` on the machine named in
each section. Every section is rewritten by its script; rerun the command shown to reproduce it.
"""


# ---------------------------------------------------------------------------------------------- machine


def _proc(path: str, key: str) -> str:
    try:
        lines = Path(path).read_text().splitlines()
        return next(line.split(":", 1)[1].strip() for line in lines if line.startswith(key))
    except (OSError, StopIteration):
        return "unknown"


def machine_info() -> dict[str, Any]:
    ram = _proc("/proc/meminfo", "MemTotal").split()[0]
    return {
        "cpu": _proc("/proc/cpuinfo", "model name"),
        "cores": os.cpu_count() or 1,
        "ram_gib": round(int(ram) / 1024**2, 1) if ram.isdigit() else ram,
        "python": platform.python_version(),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu_s": _cpu_seconds(),
    }


def _cpu_seconds() -> tuple[float, float, float]:
    """(wall, busy CPU-seconds of the whole machine, CPU-seconds of this process and its children)."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    busy = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # minus idle and iowait
    t = os.times()
    return time.time(), busy, t.user + t.system + t.children_user + t.children_system


def machine_line(info: dict[str, Any]) -> str:
    """Machine facts, plus how much CPU other processes took while the benchmark ran (it skews timings)."""
    (w0, b0, o0), (w1, b1, o1) = info["cpu_s"], _cpu_seconds()
    info["other_cpu_pct"] = round(100 * max(0.0, (b1 - b0) - (o1 - o0)) / ((w1 - w0) * info["cores"]), 1)
    return (
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['ram_gib']} GiB RAM, Python {info['python']}; "
        f"run {info['date']} at nice {os.nice(0)}; other processes used {info['other_cpu_pct']} % of the "
        "machine's CPU meanwhile (timings are only comparable when that is near 0)."
    )


def proc_memory_mb() -> dict[str, float]:
    """Current (VmRSS) and peak (VmHWM) resident memory of this process, in MB (10^6 bytes)."""
    return {k: int(_proc("/proc/self/status", k).split()[0]) * 1024 / 1e6 for k in ("VmRSS", "VmHWM")}


# ---------------------------------------------------------------------------------------------- numbers


def pct(values: Sequence[float], q: float) -> float:
    """Percentile with linear interpolation; NaN for no data."""
    return float(np.percentile(np.asarray(values, dtype=float), q)) if len(values) else float("nan")


def fmt(x: float, digits: int = 1) -> str:
    return "n/a" if x != x else f"{x:.{digits}f}"


def met(ok: bool) -> str:
    return "**met**" if ok else "**MISSED**"


def md_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fields: list[str] = []
    for row in rows:
        fields += [k for k in row if k not in fields]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def write_section(doc: Path, name: str, body: str) -> None:
    """Replace the text between `<!-- name:start -->` and `<!-- name:end -->` (appended if absent)."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = doc.read_text() if doc.exists() else DOC_INTRO
    block = f"{start}\n{body.strip()}\n{end}"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)


# ---------------------------------------------------------------------------------------------- test set

# The ASR test set: (text spoken = reference, whether it holds a digit string or amount).
CORPUS: list[tuple[str, bool]] = [
    ("Hi, I'm calling about an order I placed last week.", False),
    ("My order number is four five seven two one nine.", True),
    ("It still hasn't arrived and the tracking page hasn't changed in five days.", False),
    ("Can you tell me when my package will be delivered?", False),
    ("The tracking number is eight three one six zero four two seven.", True),
    ("I'd like to return a pair of shoes that don't fit.", False),
    ("I was charged forty nine dollars ninety nine twice for the same order.", True),
    ("How long does a refund usually take to show up on my card?", False),
    ("I want to cancel my subscription before the next billing date.", False),
    ("The last four digits of my card are seven seven zero three.", True),
    ("Can I change the delivery address to my office instead?", False),
    ("The package was left outside and now it's missing.", False),
    ("My account is locked and I can't reset my password.", False),
    ("I never received the verification code by text message.", False),
    ("My phone number is five five five two six eight one nine four zero.", True),
    ("The item arrived damaged, the box was completely crushed.", False),
    ("I'd like a refund of one hundred twenty dollars to my original payment method.", True),
    ("Do you offer express shipping to Canada?", False),
    ("Please update the email address on my account.", False),
    ("I ordered the blue one but you sent me the red one.", False),
    ("Order six zero three eight eight one was supposed to come yesterday.", True),
    ("Why was my payment declined when there is money in my account?", False),
    ("Can I pay with a gift card and a credit card together?", False),
    ("My gift card number is nine two four four one six seven five.", True),
    ("I'd like to speak to a manager, please.", False),
    ("The discount code didn't work at checkout.", False),
    ("My total should have been thirty four dollars fifty, not forty three.", True),
    ("Can you send me a copy of the invoice?", False),
    ("I need to update my billing address after moving.", False),
    ("The refund for order two two nine one zero seven still hasn't come through.", True),
    ("How do I track a return I sent back last Monday?", False),
    ("Is it possible to exchange this for a larger size?", False),
    ("I was billed nineteen dollars ninety nine for a free trial.", True),
    ("My zip code is nine four one zero three.", True),
    ("Your website keeps logging me out when I try to pay.", False),
    ("Can you split the order into two separate deliveries?", False),
    ("The courier said nobody was home, but I was there all day.", False),
    ("I want to close my account and delete my data.", False),
    ("The confirmation number is three one four one five nine.", True),
    ("How much is the restocking fee for returns?", False),
    ("My membership renewed automatically and I didn't want it to.", False),
    ("The charge of two hundred fifteen dollars thirty on my statement is not mine.", True),
    ("Could you reschedule the delivery for Friday morning?", False),
    ("I'd like to add a second shipping address to my profile.", False),
    ("Please read me the balance on my store credit.", False),
    ("My customer ID is one zero zero four eight two.", True),
    ("I paid by bank transfer three days ago and the order is still pending.", False),
    ("Yes, that's correct, thank you very much.", False),
]

# ---------------------------------------------------------------------------------------------- signals

RATE = 16_000


def tone(freqs: list[float], seconds: float, level: float = 0.2) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return np.asarray(level * np.mean([np.sin(2 * np.pi * f * t) for f in freqs], axis=0))


def at_dbfs(x: np.ndarray, db: float) -> np.ndarray:
    return np.asarray(x / np.sqrt(np.mean(x**2)) * 10 ** (db / 20))


def gate(x: np.ndarray, on_s: float, off_s: float) -> np.ndarray:
    t = np.arange(x.size) / RATE
    return x * ((t % (on_s + off_s)) < on_s)


def nonspeech_clips() -> dict[str, PCM]:
    rng = np.random.default_rng(7)
    white = rng.standard_normal(4 * RATE)
    spectrum = np.fft.rfft(white)
    f = np.maximum(np.fft.rfftfreq(white.size, 1 / RATE), 20.0)
    pink, brown = (np.fft.irfft(spectrum / f**p, n=white.size) for p in (0.5, 1.0))
    dtmf = {"1": (697, 1209), "4": (770, 1209), "5": (770, 1336), "7": (852, 1209), "#": (941, 1477),
            "9": (852, 1477), "0": (941, 1336), "2": (697, 1336)}  # fmt: skip
    keys = np.concatenate([np.concatenate([tone(list(dtmf[k]), 0.15), np.zeros(int(0.1 * RATE))])
                           for k in "4572190#"] * 2)  # fmt: skip
    env = np.minimum(1, np.arange(RATE) / 800) * np.exp(-np.arange(RATE) / RATE * 1.5)
    chords = [[261.6, 329.6, 392.0], [349.2, 440.0, 523.3], [392.0, 493.9, 587.3], [261.6, 329.6, 392.0]]
    music = np.concatenate([env * tone([*c, c[0] / 2], 1.0, 0.3) for c in chords])
    clips = {
        "digital silence": np.zeros(3 * RATE),
        "white noise -50 dBFS": at_dbfs(white[: 3 * RATE], -50),
        "pink noise -35 dBFS": at_dbfs(pink, -35),
        "brown noise -30 dBFS": at_dbfs(brown, -30),
        "440 Hz tone": tone([440], 3.0),
        "DTMF 4572190#": keys,
        "hold music (4 chords)": music,
        "busy tone 480+620 Hz": gate(tone([480, 620], 4.0), 0.5, 0.5),
        "ringback 440+480 Hz": gate(tone([440, 480], 5.0), 2.0, 4.0),
    }
    return {k: (np.clip(v, -1, 1) * 32767).astype(np.int16) for k, v in clips.items()}


def speech_end_s(pcm: PCM, rate: int) -> float:
    """End of the last 10 ms frame within 35 dB of the loudest one: where the words stop."""
    frames = pcm[: pcm.size // (rate // 100) * (rate // 100)].astype(np.float64).reshape(-1, rate // 100)
    db = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-9)
    return float((np.nonzero(db > db.max() - 35)[0][-1] + 1) / 100)


# ---------------------------------------------------------------------------------------------- text

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen"
)
ONES = [*_ONES.split(), "seventeen", "eighteen", "nineteen"]
TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_ORD = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
        "nine": "ninth", "twelve": "twelfth"}  # fmt: skip
_SPELLING = {"ok": "okay", "cancelled": "canceled", "e mail": "email", "alright": "all right"}


def cardinal(n: int) -> str:
    if n < 20:
        return ONES[n]
    if n < 100:
        return TENS[n // 10] + ("" if n % 10 == 0 else " " + ONES[n % 10])
    if n < 1000:
        return ONES[n // 100] + " hundred" + ("" if n % 100 == 0 else " " + cardinal(n % 100))
    if n < 1_000_000:
        return cardinal(n // 1000) + " thousand" + ("" if n % 1000 == 0 else " " + cardinal(n % 1000))
    return " ".join(ONES[int(c)] for c in str(n))


def ordinal(n: int) -> str:
    words = cardinal(n).split()
    last = words[-1]
    words[-1] = _ORD.get(last) or (last[:-1] + "ieth" if last.endswith("y") else last + "th")
    return " ".join(words)


def _number(digits: str) -> str:
    """A bare number: ≥ 3 digits or a leading zero is a spoken digit string, else a cardinal."""
    digits = digits.replace(",", "")
    if len(digits) >= 3 or (len(digits) > 1 and digits[0] == "0"):
        return " ".join(ONES[int(c)] for c in digits)
    return cardinal(int(digits))


def _amount(m: re.Match[str]) -> str:
    whole = int((m.group(1) or m.group(3)).replace(",", ""))
    cents = m.group(2) or m.group(4) or ""
    out = f" {cardinal(whole)} dollars"
    if cents and int(cents):
        out += " " + cardinal(int(cents.ljust(2, "0")))
    return out + " "


_AMOUNT = re.compile(r"\$\s?(\d[\d,]*)(?:\.(\d{1,2}))?\b|\b(\d[\d,]*)(?:\.(\d{1,2}))?\s?dollars?\b")


def normalise(text: str) -> str:
    """Reference and hypothesis both go through this normaliser before WER. It lower-cases; writes dollar
    amounts (`$49.99`, `49.99 dollars`, `$1,250.00`) as words the way a caller says them (`forty nine dollars
    ninety nine`; zero cents dropped); writes ordinals (`5th`) and `%` as words; writes numbers of 3 or more
    digits, or with a leading zero, digit by digit (`457219`, `457-219` → `four five seven two one nine`) and
    shorter ones as cardinals (`14` → `fourteen`); removes apostrophes and turns other punctuation into
    spaces; maps `ok`→`okay`, `cancelled`→`canceled`, `e mail`→`email`; drops `and` right after `dollars`
    and every `cents`. The digit-string check takes every number of the normalised text in order and joins
    them (`forty nine dollars ninety nine` → `4999`, `four five seven` → `457`), and compares exactly."""
    t = text.lower().replace("’", "'")
    t = _AMOUNT.sub(_amount, t)
    t = re.sub(r"\b(\d{1,2})(st|nd|rd|th)\b", lambda m: " " + ordinal(int(m.group(1))) + " ", t)
    t = re.sub(r"(\d)%", r"\1 percent", t)
    t = re.sub(r"\d[\d,]*", lambda m: " " + _number(m.group().rstrip(",")) + " ", t)
    t = t.replace("'", "")
    t = re.sub(r"[^a-z ]+", " ", t)
    t = " " + " ".join(t.split()) + " "
    for old, new in _SPELLING.items():
        t = t.replace(f" {old} ", f" {new} ")
    t = re.sub(r" dollars and (?=\w)", " dollars ", t).replace(" cents ", " ")
    return " ".join(t.split())


_VALUE = {w: i for i, w in enumerate(ONES)} | {w: 10 * i for i, w in enumerate(TENS) if i >= 2}


def digit_sequence(text: str) -> str:
    """All numbers in the normalised text, in order, as one digit string ("forty nine dollars ninety
    nine" -> "4999", "four five seven" -> "457"); digit-by-digit runs stay digit-by-digit."""
    numbers: list[int] = []
    total, group, after_multiplier = 0, -1, False  # group -1: not inside a number
    for word in [*normalise(text).split(), "."]:
        if word in _VALUE:
            v = _VALUE[word]
            tens_then_unit = group % 100 >= 20 and group % 10 == 0 and v < 10
            if group >= 0 and ((after_multiplier and v < 100) or tens_then_unit):
                group += v
            else:
                if group >= 0:
                    numbers.append(total + group)
                total, group = 0, v
            after_multiplier = False
        elif word == "hundred" and group >= 0:
            group, after_multiplier = group * 100, True
        elif word == "thousand" and group >= 0:
            total, group, after_multiplier = (total + group) * 1000, 0, True
        elif group >= 0:
            numbers.append(total + group)
            total, group, after_multiplier = 0, -1, False
    return "".join(str(n) for n in numbers)


# ---------------------------------------------------------------------------------------------- plots


def _figure(width: float) -> tuple[Any, Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, 4.5))
    return plt, fig, ax


def _save(plt: Any, fig: Any, ax: Any, path: Path) -> None:
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def bar_chart(path: Path, groups: list[str], series: dict[str, list[float]], ylabel: str, title: str,
              target: tuple[float, str] | None = None) -> None:  # fmt: skip
    """Grouped bars: one group per entry of `groups`, one bar per series."""
    plt, fig, ax = _figure(11)
    width = 0.8 / max(1, len(series))
    for k, (label, values) in enumerate(series.items()):
        ax.bar(np.arange(len(groups)) + (k - len(series) / 2 + 0.5) * width, values, width, label=label)
    if target is not None:
        ax.axhline(target[0], color="red", ls="--", lw=1, label=target[1])
    ax.set(xticks=range(len(groups)), xticklabels=groups, ylabel=ylabel, title=title)
    ax.grid(axis="y", alpha=0.3)
    _save(plt, fig, ax, path)


def cdf_plot(path: Path, series: Mapping[str, Sequence[float]], xlabel: str, title: str,
             target: tuple[float, str] | None = None, logx: bool = False) -> None:  # fmt: skip
    """Empirical CDF of each series."""
    plt, fig, ax = _figure(10)
    for label, values in series.items():
        d = np.sort(np.asarray(values, dtype=float))
        ax.step(d, np.arange(1, d.size + 1) / d.size, where="post", label=label)
    if target is not None:
        ax.axvline(target[0], color="red", ls="--", lw=1, label=target[1])
    ax.set(xlabel=xlabel, ylabel="fraction ≤ x", title=title, xscale="log" if logx else "linear")
    ax.grid(alpha=0.3, which="both")
    _save(plt, fig, ax, path)
