"""`voicebot calls list|show` (arguments in `voicebot.cli`): records for a person at a terminal, or JSON."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path

from voicebot.records.db import default_url
from voicebot.records.store import CallStore
from voicebot.records.views import CallDetail, CallSummary, TurnView

COLUMNS = ("ID", "PROTOCOL", "STARTED", "DURATION", "TURNS", "END REASON", "TRANSFER")


def run(args: argparse.Namespace, records_url: str | None, cache_dir: Path) -> int:
    """`--db`, else the configured URL, else SQLite in the cache dir; 1 when `show` finds no such call."""
    store = CallStore(args.db or records_url or default_url(cache_dir))
    try:
        if args.calls_command == "list":
            print(format_table(store.list_calls(args.limit)))
            return 0
        detail = store.get_call(args.id)
        if detail is None:
            print(f"error: no call {args.id!r} in {store.url}", file=sys.stderr)
            return 1
        print(json.dumps(detail.as_json(), indent=2) if args.json else format_call(detail))
        return 0
    finally:
        store.close()


def _when(moment: datetime) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _duration(call: CallSummary) -> str:
    seconds = call.duration_s
    if seconds is None:
        return "active"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def _transfer(call: CallSummary) -> str:
    if call.transfer_target is None and call.transfer_reason is None:
        return ""
    target = call.transfer_target or "?"
    return f"{target} ({call.transfer_reason})" if call.transfer_reason else target


def format_table(calls: list[CallSummary]) -> str:
    if not calls:
        return "no calls recorded"
    rows = [COLUMNS] + [
        (c.id, c.protocol, _when(c.started_at), _duration(c), str(c.turns), c.end_reason or "", _transfer(c))
        for c in calls
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.rjust(w) if i == 4 else cell.ljust(w) for i, (cell, w) in
                       enumerate(zip(row, widths, strict=True))).rstrip() for row in rows]  # fmt: skip
    return "\n".join(lines)


def _turn_lines(turn: TurnView) -> list[str]:
    lines = [f"#{turn.index}  {_when(turn.created_at)}"]
    if turn.transcript is not None:
        understood = f"{turn.intent} {turn.confidence:.2f}" if turn.confidence is not None else turn.intent
        lines.append(f"  caller: {turn.transcript}  [{understood}]")
    for label, value in (("slots", turn.slots), ("entities", turn.entities)):
        if value:
            lines.append(f"  {label}: {json.dumps(value, ensure_ascii=False)}")
    if turn.action:
        lines.append(f"  action: {turn.action} → {turn.action_result}")
    if turn.reply is not None:
        cut = f"  [barge-in after {turn.played_ms:.0f} ms]" if turn.barge_in and turn.played_ms else ""
        lines.append(f"  bot ({turn.act}): {turn.reply}{cut}")
    if turn.timings_ms:
        lines.append("  ms: " + ", ".join(f"{k} {v}" for k, v in turn.timings_ms.items()))
    return lines


def format_call(detail: CallDetail) -> str:
    c = detail.call
    ended = f"ended {_when(c.ended_at)}: {c.end_reason}" if c.ended_at else "still active"
    lines = [
        f"call {c.id} ({c.protocol}), started {_when(c.started_at)}, {_duration(c)}, {ended}",
        f"caller: {c.caller or 'unknown'}   meta: {json.dumps(detail.meta, ensure_ascii=False)}",
    ]
    if c.instance:
        lines.append(f"instance: {c.instance}")
    lines += [f"transfer: {t.target} ({t.reason}) at {_when(t.at)}" for t in detail.transfers]
    if detail.handoff:  # the warm hand-off summary the agent was given (voicebot.handoff)
        lines += [f"hand-off: {line}" for line in detail.handoff.get("summary", [])]
    if c.recording:
        lines.append(f"recording: {c.recording}")
    for turn in detail.turns:
        lines += _turn_lines(turn)
    return "\n".join(lines)
