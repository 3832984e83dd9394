"""Call ids on log lines, and one JSON object per log line for log collectors.

`Call.run` sets `CALL_ID` for the duration of a call. Every task the call starts (pipeline stages, the
event pump, the reader) and every `asyncio.to_thread` call copies it, so whatever logs while handling the
call can be told apart from the other calls running at the same time. `CallIdFilter` copies it onto each
record as `record.call_id` (`NO_CALL`, "-", outside a call). Put the filter on the *handlers*: a logger's
own filters only see records logged on that very logger, never those propagated from its children.

    handler = logging.StreamHandler()
    handler.addFilter(CallIdFilter())   # after voicebot.pii.install_log_masking, see below
    handler.setFormatter(JsonFormatter() if json_logs else logging.Formatter(TEXT_FORMAT))
    logging.getLogger().addHandler(handler)

Order matters with `voicebot.pii.PIIFilter`: it masks every non-standard record attribute as free text,
and a 32-hex-digit call id often holds a run of digits that looks like a phone number. Adding the
`CallIdFilter` after it (`install_call_ids` does, when called after `install_log_masking`) keeps the id
intact. Work run on a plain executor (`loop.run_in_executor`) does not carry the id: contextvars are only
copied by tasks and `asyncio.to_thread`.
"""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime

NO_CALL = "-"
CALL_ID: ContextVar[str | None] = ContextVar("voicebot_call_id", default=None)
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(call_id)s]: %(message)s"


class CallIdFilter(logging.Filter):
    """Adds `record.call_id`: the call being handled where the record was made, or `NO_CALL`."""

    def filter(self, record: logging.LogRecord) -> bool:
        # Handlers run where the record was made, so the context's id is the record's. Setting it again on
        # each handler undoes a PIIFilter that ran on an earlier handler's copy of the attribute.
        current = CALL_ID.get()
        if current is not None or not hasattr(record, "call_id"):
            record.call_id = current or NO_CALL
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, call_id (null outside a call),
    message, and exc/stack when the record has them; log collectors index these without parsing text."""

    def format(self, record: logging.LogRecord) -> str:
        call_id = getattr(record, "call_id", None) or CALL_ID.get()
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "call_id": None if call_id in (None, NO_CALL) else call_id,
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def install_call_ids(logger: logging.Logger | None = None) -> None:
    """Add a `CallIdFilter` to every handler the root (or given) logger has now; idempotent.

    Call it after logging is configured and after `install_log_masking`, so the id is added after masking.
    """
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, CallIdFilter) for f in handler.filters):
            handler.addFilter(CallIdFilter())
