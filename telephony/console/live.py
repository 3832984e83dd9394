"""The console's live view: every call in progress, pushed to each open console as it happens.

`LiveFeed` is a `CallObserver`, so it sits on every call's event path; it must never make a call wait.
Each event is masked and turned into JSON once, then offered to every console's bounded queue with
`put_nowait`: a console that reads too slowly loses its queue (its stream ends, the browser's EventSource
reconnects and starts again from a snapshot) instead of holding a call back. While at least one console
watches, calls decode partial transcripts too (`console.live_partials`; like the browser page's, they run
only when the model pool is idle, so a busy gateway skips them first).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from voicebot.frames import BotReply, CallEnded, FinalTranscript, Frame, PartialTranscript, TurnDone
from voicebot.handoff import REASON_TEXT, reason_of
from voicebot.pii import mask_mapping, mask_text
from voicebot.records.capture import caller_of

if TYPE_CHECKING:
    from telephony.session import CallHub

QUEUE = 512  # events a console may fall behind by before it is dropped (a call makes a few a second)
LINES = 40  # transcript lines kept per live call for a console that opens mid-call
HEARTBEAT_S = 15.0  # an SSE comment this often keeps proxies from closing an idle stream
POLL_S = 1.0  # how soon an idle stream notices the gateway shutting down


@dataclass
class LiveCall:
    """What a console shows of one running call; everything in it is already masked."""

    id: str
    protocol: str
    caller: str | None
    started_ms: float  # wall clock, ms since the epoch (the page counts the duration from it)
    flow: str | None = None
    intent: str | None = None
    sentiment: str | None = None
    slots: dict[str, Any] = field(default_factory=dict)
    lines: list[dict[str, str]] = field(default_factory=list)  # {"who": "caller"|"bot", "text": …}
    partial: str = ""
    transfer: dict[str, Any] | None = None  # {reason, reason_text, target}: handed to a person, ending

    def as_json(self) -> dict[str, Any]:
        return dict(vars(self))


class LiveFeed:
    """Observer of every call, publisher to every console (see the module docstring)."""

    def __init__(self, partials: bool = True) -> None:
        self.calls: dict[str, LiveCall] = {}
        self.partials = partials
        self.hub: CallHub | None = None  # set by the console router: partials are switched on its calls
        self._queues: set[asyncio.Queue[str | None]] = set()

    @property
    def watchers(self) -> int:
        return len(self._queues)

    @property
    def _stopping(self) -> bool:
        """The gateway has drained: no call left and none taken (its shutdown waits for our streams)."""
        return self.hub is not None and not self.hub.accepting and not self.hub.calls

    def _publish(self, event: dict[str, Any]) -> None:
        if not self._queues:
            return
        text = json.dumps(event, ensure_ascii=False)
        for queue in list(self._queues):
            try:
                queue.put_nowait(text)
            except asyncio.QueueFull:  # too slow: drop it (its stream ends and reconnects), never wait
                self._queues.discard(queue)
                self._end_stream(queue)
        self._switch_partials()

    @staticmethod
    def _end_stream(queue: asyncio.Queue[str | None]) -> None:
        while not queue.empty():
            queue.get_nowait()
        queue.put_nowait(None)

    def _switch_partials(self, call_id: str | None = None) -> None:
        """Partials on for every call while someone watches; back to the transport's own choice after."""
        if not self.partials or self.hub is None:
            return
        calls = self.hub.calls if call_id is None else {call_id: self.hub.calls.get(call_id)}
        for call in calls.values():
            if call is not None:
                own = bool(getattr(call.transport, "shows_partials", False))
                call.pipe.asr.partials = own or bool(self._queues)

    # --- CallObserver ---------------------------------------------------------------------------------

    def on_start(self, call_id: str, protocol: str, meta: dict[str, Any]) -> None:
        live = LiveCall(call_id, protocol, caller_of(meta), time.time() * 1000.0)
        self.calls[call_id] = live
        self._switch_partials(call_id)
        self._publish({"type": "call", "call": live.as_json()})

    def on_event(self, call_id: str, frame: Frame) -> None:
        live = self.calls.get(call_id)
        if live is None:
            return
        if isinstance(frame, PartialTranscript):
            live.partial = mask_text(frame.text)
            self._publish({"type": "partial", "id": call_id, "text": live.partial})
        elif isinstance(frame, FinalTranscript):
            self._line(live, "caller", frame.text)
        elif isinstance(frame, BotReply) and frame.text:
            self._line(live, "bot", frame.text)
        elif isinstance(frame, TurnDone):
            record = mask_mapping(frame.record.as_json())
            live.flow = record.get("flow") or live.flow
            live.intent = record.get("intent") or live.intent
            live.sentiment = record.get("sentiment") or live.sentiment
            if isinstance(record.get("slots"), dict):
                live.slots = record["slots"]
            state = {
                "flow": live.flow,
                "intent": live.intent,
                "sentiment": live.sentiment,
                "slots": live.slots,
            }
            self._publish({"type": "state", "id": call_id} | state)
        elif isinstance(frame, CallEnded):
            self._transfer(live, frame)

    def _transfer(self, live: LiveCall, ended: CallEnded) -> None:
        """A call handed to a person: why, before its notice has played and the line goes (the bot's
        reason code, as the hand-off summary names it; telephony.handoff)."""
        action = next((a for a in ended.actions if a.kind == "transfer"), None)
        if action is None:
            return
        reason = reason_of(action)
        live.transfer = {"reason": reason, "reason_text": REASON_TEXT[reason],
                         "target": mask_text(action.target or "")}  # fmt: skip
        self._publish({"type": "transfer", "id": live.id} | live.transfer)

    def _line(self, live: LiveCall, who: str, text: str) -> None:
        line = {"who": who, "text": mask_text(text)}
        live.lines = [*live.lines[-(LINES - 1) :], line]
        if who == "caller":
            live.partial = ""
        self._publish({"type": "line", "id": live.id} | line)

    def on_end(self, call_id: str, reason: str) -> None:
        if self.calls.pop(call_id, None) is not None:
            self._publish({"type": "ended", "id": call_id, "reason": mask_text(reason)})

    # --- consoles -------------------------------------------------------------------------------------

    async def stream(self) -> AsyncIterator[str]:
        """One console's Server-Sent Events: a snapshot of the live calls, then every event as it comes."""
        queue: asyncio.Queue[str | None] = asyncio.Queue(QUEUE)
        snapshot = {"type": "snapshot", "calls": [c.as_json() for c in self.calls.values()]}
        self._queues.add(queue)
        self._switch_partials()
        try:
            yield f"data: {json.dumps(snapshot, ensure_ascii=False)}\n\n"
            idle = 0.0
            while True:
                try:
                    text = await asyncio.wait_for(queue.get(), POLL_S)
                except TimeoutError:
                    if self._stopping:
                        return  # uvicorn waits for open responses before it stops: this one must end
                    idle += POLL_S
                    if idle >= HEARTBEAT_S:
                        idle = 0.0
                        yield ": keep-alive\n\n"
                    continue
                if text is None:
                    return
                idle = 0.0
                yield f"data: {text}\n\n"
        finally:
            self._queues.discard(queue)
            self._switch_partials()
