"""Call records: every call, turn and transfer in a database (SQLite or PostgreSQL), masked, never lost."""

from voicebot.records.instances import LOST_REASON
from voicebot.records.store import CallStore
from voicebot.records.views import CallDetail, CallSummary, TransferView, TurnView

__all__ = ["LOST_REASON", "CallDetail", "CallStore", "CallSummary", "TransferView", "TurnView"]
