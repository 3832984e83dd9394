"""Observer input → masked, JSON-plain write operations ("ops").

Masking happens here, once, on the way in: an op is what may be written to the database, the spool file
or a log, so nothing unmasked ever leaves this module. Each op is a plain dict that survives a JSON round
trip unchanged (the spool file stores them as lines) and carries the time it happened, so a write replayed
an hour later still records when the call really started or ended.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from voicebot.frames import CallEnded
from voicebot.pii import mask_mapping, mask_text, mask_value

Op = dict[str, Any]

# Meta keys that may hold the caller's number (Twilio "from", Asterisk "callerid"), first match wins.
CALLER_KEYS = ("caller", "from", "caller_id", "callerid", "ani")

# Opaque provider ids (Twilio SIDs, AudioSocket/browser UUIDs) are kept verbatim: masking a digit run inside
# one ("…-9a53-1234567890ab") would break the link to the provider's own logs, and a random id is not PII.
_PROVIDER_ID = re.compile(r"[A-Z]{2}[0-9a-f]{32}|[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")

# TurnDone record key → turn column. Keys not listed here are kept (masked) in the `extra` column.
_TEXT = {"transcript": "transcript", "reply": "reply", "previous_heard": "previous_heard",
         "intent": "intent", "sentiment": "sentiment", "act": "act", "action": "action",
         "action_result": "action_result"}  # fmt: skip
_NUMBER = {"confidence": "confidence", "frustration": "frustration", "played_ms": "played_ms"}
_FLAG = {"previous_interrupted": "previous_interrupted", "interrupted": "barge_in"}
_JSON = {"slots": ("slots", dict), "entities": ("entities", dict), "timings_ms": ("timings_ms", dict)}


def now() -> str:
    return datetime.now(UTC).isoformat()


def plain(value: Any) -> Any:
    """A deep copy that JSON stores exactly (dates, enums and paths become strings)."""
    return json.loads(json.dumps(value, default=str))


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _flag(value: Any) -> bool | None:
    return None if value is None else bool(value)


def caller_of(meta: Mapping[str, Any]) -> str | None:
    """The caller's number as a hint ('*********42'), enough to spot a repeat caller, not to ring back.

    Looked for at the top of `meta`, then one level down (Twilio's custom stream `parameters`).
    """
    for scope in (meta, *(v for v in meta.values() if isinstance(v, Mapping))):
        lowered = {str(k).lower(): v for k, v in scope.items()}
        value = next((lowered[k] for k in CALLER_KEYS if lowered.get(k) not in (None, "")), None)
        if value is not None:
            return mask_value("phone", str(value))
    return None


def mask_meta(meta: Mapping[str, Any]) -> dict[str, Any]:
    """`mask_mapping`, except top-level values shaped exactly like a provider id."""
    masked = mask_mapping(meta)
    for key, value in meta.items():
        if isinstance(value, str) and _PROVIDER_ID.fullmatch(value):
            masked[key] = value
    return masked


def start_op(call_id: str, protocol: str, meta: Mapping[str, Any], instance: str | None = None) -> Op:
    """`instance`: the gateway process taking the call, so others can end it if that process dies."""
    masked: Op = plain(mask_meta(meta))
    return {"kind": "start", "call_id": call_id, "at": now(), "protocol": protocol, "meta": masked,
            "caller": caller_of(meta), "instance": instance}  # fmt: skip


_DIGITS = re.compile(r"\d+")


def turn_op(call_id: str, index: int, record: Mapping[str, Any]) -> Op:
    """One TurnDone record; the whole record is masked first, then split into columns.

    A keypad turn's reply keeps no digits, nor what the caller heard of it (in this record and, as
    `previous_heard`, in the next one): keys can be a PIN or a card number typed one by one, and a bot that
    echoes each key ("You pressed 4.") would otherwise store the number across turns."""
    masked: Op = plain(mask_mapping(record))
    keyed: tuple[str, ...] = ("reply", "heard") if record.get("dtmf") else ()
    if record.get("previous_cause") == "dtmf":
        keyed += ("previous_heard",)
    for key in keyed:
        if isinstance(masked.get(key), str):
            masked[key] = _DIGITS.sub("[key]", masked[key])
    fields: dict[str, Any] = {}
    for key, column in _TEXT.items():
        fields[column] = _text(masked.pop(key, None))
    for key, column in _NUMBER.items():
        fields[column] = _number(masked.pop(key, None))
    for key, column in _FLAG.items():
        fields[column] = _flag(masked.pop(key, None))
    fields["barge_in"] = bool(fields["barge_in"])
    for key, (column, kind) in _JSON.items():
        value = masked.pop(key, None)
        fields[column] = value if isinstance(value, kind) else kind()
    masked.pop("actions", None)
    fields["actions"] = [_action(a) for a in record.get("actions") or () if isinstance(a, Mapping)]
    fields["extra"] = masked
    return {"kind": "turn", "call_id": call_id, "at": now(), "index": index, "fields": fields}


def _action(action: Mapping[str, Any]) -> dict[str, Any]:
    """An action as stored. Its target is kept verbatim: it is the domain's configuration (a queue, a SIP
    URI, a switchboard number), not the caller's data, and masking it would hide where calls went."""
    reason = action.get("reason")
    return {"kind": _text(action.get("kind")), "target": _text(action.get("target")),
            "reason": None if reason is None else mask_text(str(reason))}  # fmt: skip


def transfer_ops(call_id: str, first_seq: int, ended: CallEnded) -> list[Op]:
    """A transfer row per transfer action the bot ended the call with (usually one)."""
    at = now()
    transfers = [a for a in ended.actions if a.kind == "transfer"]
    return [
        {"kind": "transfer", "call_id": call_id, "at": at, "seq": first_seq + n} | _action(vars(a))
        for n, a in enumerate(transfers)
    ]


_HANDOFF_IDS = ("call_id", "provider_id", "console_url", "at")  # ids and times, kept as they are


def handoff_op(call_id: str, summary: Mapping[str, Any]) -> Op:
    """A transfer's hand-off summary (`voicebot.handoff`), masked once more like everything stored, but
    for its ids (a 32-hex call id can hold a run of digits that reads as a phone number)."""
    masked = mask_mapping({k: v for k, v in summary.items() if k not in _HANDOFF_IDS})
    kept = {k: summary[k] for k in _HANDOFF_IDS if k in summary}
    return {"kind": "handoff", "call_id": call_id, "at": now(), "summary": plain(masked | kept)}


def end_op(call_id: str, reason: str) -> Op:
    return {"kind": "end", "call_id": call_id, "at": now(), "reason": mask_text(reason)}


def audio_op(call_id: str, path: str) -> Op:
    return {"kind": "audio", "call_id": call_id, "at": now(), "path": path}
