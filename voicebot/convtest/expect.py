"""Judging a step's turn records against its `expect` block, and the call's ending against `end`.

Each check returns a human-readable failure, or None. Records are written by whatever brain runs the call,
so a key the brain never wrote is reported as exactly that ("record has no 'slots'") rather than as a
puzzling mismatch with None.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from voicebot.convtest.spec import End, Expect
from voicebot.frames import CallEnded

Record = dict[str, Any]
Check = Callable[[Any, list[Record]], str | None]


def merged(records: list[Record]) -> Record:
    """One view of a step's records: for every key, the last record that has it wins."""
    out: Record = {}
    for record in records:
        out.update(record)
    return out


def reply_text(records: list[Record]) -> str | None:
    """Everything the bot said in the step, its replies joined with a space; None if it said nothing."""
    texts = [r["reply"] for r in records if r.get("reply")]
    return " ".join(texts) if texts else None


def clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _quoted(text: str | None) -> str:
    return "(nothing)" if text is None else repr(clip(text))


def _same(expected: Any, actual: Any) -> bool:
    """Equal, or equal when written out: '830112' in a test matches 830112 from a slot parser."""
    return bool(expected == actual or (actual is not None and str(expected) == str(actual)))


def regex_failure(key: str, pattern: str, text: str | None) -> str | None:
    if re.search(pattern, text or "", re.IGNORECASE):
        return None
    return f"{key}: /{pattern}/ not in {_quoted(text)}"


def _record_value(key: str) -> Check:
    """A record key compared by value; null expected also accepts a record without the key."""

    def check(expected: Any, records: list[Record]) -> str | None:
        record = merged(records)
        if key not in record:
            return None if expected is None else f"{key}: record has no {key!r}"
        if expected is None:
            return None if record[key] is None else f"{key}: expected none, got {record[key]}"
        return None if _same(expected, record[key]) else f"{key}: expected {expected}, got {record[key]}"

    return check


def _record_regex(key: str) -> Check:
    def check(pattern: str, records: list[Record]) -> str | None:
        record = merged(records)
        if key not in record:
            return f"{key}: record has no {key!r}"
        return regex_failure(key, pattern, record[key])

    return check


def _slots(expected: dict[str, Any], records: list[Record]) -> str | None:
    record = merged(records)
    if not isinstance(record.get("slots"), dict):
        return "slots: record has no 'slots'"
    slots: dict[str, Any] = record["slots"]
    problems = []
    for name, value in expected.items():
        actual = slots.get(name)
        if value is None and actual is not None:
            problems.append(f"slots.{name}: expected none, got {actual!r}")
        elif value is not None and name not in slots:
            problems.append(f"slots.{name}: expected {value!r}, not filled (slots: {slots})")
        elif value is not None and not _same(value, actual):
            problems.append(f"slots.{name}: expected {value!r}, got {actual!r}")
    return "; ".join(problems) or None


def _actions(records: list[Record]) -> list[tuple[str, str | None]]:
    return [(a["kind"], a.get("target")) for r in records for a in r.get("actions") or []]


def transfer_failure(expected: str | bool, actions: Sequence[tuple[str, str | None]]) -> str | None:
    """`expected` is a target, or True for any transfer, or False for none."""
    targets = [target for kind, target in actions if kind == "transfer"]
    if expected is False:
        return None if not targets else f"transfer: expected none, got a transfer to {targets[0]}"
    if not targets:
        wanted = "a transfer" if expected is True else f"a transfer to {expected}"
        return f"transfer: expected {wanted}, got none"
    if expected is True or expected in targets:
        return None
    return f"transfer: expected a transfer to {expected}, got one to {targets[0]}"


def _hangup(expected: bool, records: list[Record]) -> str | None:
    hung_up = any(kind == "hangup" for kind, _ in _actions(records))
    if hung_up == expected:
        return None
    return "hangup: expected the bot to hang up" if expected else "hangup: the bot hung up"


def _silent(expected: bool, records: list[Record]) -> str | None:
    text = reply_text(records)
    if (text is None) == expected:
        return None
    if expected:
        return f"silent: expected no reply, got {_quoted(text)}"
    return "silent: expected a reply, got none"


def _no_reply(pattern: str, records: list[Record]) -> str | None:
    text = reply_text(records)
    found = re.search(pattern, text or "", re.IGNORECASE)
    return None if found is None else f"no_reply: /{pattern}/ found in {_quoted(text)}"


_CHECKS: dict[str, Check] = {
    "intent": _record_value("intent"),
    "slots": _slots,
    "action": _record_value("action"),
    "action_result": _record_value("action_result"),
    "act": _record_value("act"),
    "flow": _record_value("flow"),
    "reply": lambda pattern, records: regex_failure("reply", pattern, reply_text(records)),
    "no_reply": _no_reply,
    "transfer": lambda expected, records: transfer_failure(expected, _actions(records)),
    "hangup": _hangup,
    "silent": _silent,
    "interrupted": _record_value("interrupted"),
    "previous_interrupted": _record_value("previous_interrupted"),
    "previous_heard": _record_regex("previous_heard"),
    "transcript": _record_regex("transcript"),
}
_RECORD_FREE = {"reply", "no_reply", "silent", "transfer", "hangup"}  # meaningful with no record at all


def check_step(expect: Expect, records: list[Record]) -> list[str]:
    """Failures of one step's expectations; with no record at all, one failure says so once."""
    wanted = expect.checked()
    if not records and set(wanted) - _RECORD_FREE:
        missing = ", ".join(k for k in wanted if k not in _RECORD_FREE)
        return ["no turn record: nothing was heard or answered in this step (expected " + missing + ")"]
    return _failures(_CHECKS[key](value, records) for key, value in wanted.items())


def check_end(end: End, ended: CallEnded | None) -> list[str]:
    """Failures of the `end:` block against the call's CallEnded (None: the call never ended)."""
    actions = [(a.kind, a.target) for a in ended.actions] if ended is not None else []
    transfers = [target for kind, target in actions if kind == "transfer"]
    how = "it did not end" if ended is None else f"it ended: {ended.reason!r}"
    failures: list[str | None] = []
    for key, value in end.checked().items():
        if key == "ended":
            wanted = "the call to end" if value else "the call to go on"
            failures.append(None if (ended is not None) == value else f"ended: expected {wanted}, {how}")
        elif key == "transfer":
            failures.append(transfer_failure(value, actions))
        elif key == "hangup":
            hung_up = ended is not None and not transfers
            wanted = "the call to end with a hang-up" if value else "no hang-up"
            failures.append(None if hung_up == value else f"hangup: expected {wanted}, {how}")
        elif key == "reason":
            if ended is None:
                failures.append(f"reason: expected /{value}/, {how}")
            else:
                failures.append(regex_failure("reason", value, ended.reason))
    return _failures(failures)


def _failures(results: Iterable[str | None]) -> list[str]:
    return [r for r in results if r is not None]
