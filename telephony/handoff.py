"""The warm hand-off desk: every transfer's summary (`voicebot.handoff`), delivered the ways contact
centres take it.

`HandoffDesk` is a call observer. It keeps each call's turn records as they pass and, when the call ends
in a transfer (`CallEnded` with a transfer action, which observers hear before the line is put down; else
the `CallOutcome` after it, as when an operator's transfer notice was lost and the call was ended from the
server side: then too late for the line), makes the summary and hands it on:
- to the call's `Ending` (`CallHub.handoff_of`), so the protocol module puts it on the wire as it hangs up
  where its protocol can carry it: Genesys AudioConnector `disconnect` output variables
  (`telephony.genesys`), a FreeSWITCH `mod_audio_fork` `transfer` event (`telephony.freeswitch`), and for
  Twilio the TwiML `<Dial>` that `<Connect action>` fetches once the stream closes (`/twilio/handoff`,
  `telephony.twiml`); Asterisk AudioSocket's frames carry audio, DTMF and hang-up only, so the dialplan
  reads it from the endpoint below by the AudioSocket UUID it chose;
- to the call record (`CallStore.add_handoff`, read back by `voicebot calls show` and the console);
- to the webhook in `handoff.webhook_url`, signed (`telephony.webhook`), as a background task;
- to `GET /calls/{id}/handoff` (the gateway token, as `/metrics` takes it), where `id` is our call id or
  the carrier's (Twilio CallSid, AudioSocket/FreeSWITCH UUID, Genesys conversationId…) for the last
  `handoff.keep` summaries (memory), and by our call id for any call in the call records.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from telephony.session import CallOutcome
from telephony.twiml import handoff_response, token_ok
from telephony.webhook import Webhook
from voicebot.config import VoicebotConfig
from voicebot.frames import CallEnded, Frame, TurnDone
from voicebot.handoff import HandoffNotes, HandoffSummary
from voicebot.records import CallStore

log = logging.getLogger(__name__)
# Meta keys holding the carrier's own id of the call, by which the line asks for its summary.
PROVIDER_KEYS = ("callSid", "call_sid", "call_control_id", "uuid", "conversationId", "callId", "sessionId")
EVENT = "call.handoff"


def provider_id(meta: Mapping[str, Any]) -> str | None:
    return next((str(meta[k]) for k in PROVIDER_KEYS if isinstance(meta.get(k), str) and meta[k]), None)


class HandoffDesk:
    """Call observer: makes each transfer's summary and delivers it (see the module docstring)."""

    def __init__(self, config: VoicebotConfig, store: CallStore | None = None) -> None:
        self.config, self.store = config, store
        settings = config.handoff
        self.webhook = (
            Webhook(settings.webhook_url, settings.webhook_secret, settings.webhook_timeout_s,
                    settings.webhook_attempts, settings.webhook_backoff_s)
            if settings.webhook_url else None
        )  # fmt: skip
        self.notes: dict[str, HandoffNotes] = {}
        self.summaries: OrderedDict[str, HandoffSummary] = OrderedDict()  # by call id and provider id
        self.deliveries: set[asyncio.Task[bool]] = set()

    # --- observer ------------------------------------------------------------------------------------

    def on_start(self, call_id: str, protocol: str, meta: dict[str, Any]) -> None:
        self.notes[call_id] = HandoffNotes(call_id, protocol, provider_id(meta))

    def on_event(self, call_id: str, frame: Frame) -> None:
        notes = self.notes.get(call_id)
        if notes is None:
            return
        if isinstance(frame, TurnDone):
            notes.add(frame.record)
        elif isinstance(frame, CallEnded | CallOutcome) and call_id not in self.summaries:
            actions = frame.actions if isinstance(frame, CallEnded) else frame.ending.actions
            transfer = next((a for a in actions if a.kind == "transfer"), None)
            if transfer is not None:
                self._deliver(notes.summary(transfer, self.config.server.public_url))

    def on_end(self, call_id: str, reason: str) -> None:
        self.notes.pop(call_id, None)

    async def on_serve_stop(self) -> None:
        """Webhook deliveries still running get their time (each is bounded), so a drain loses none."""
        if self.deliveries:
            await asyncio.gather(*self.deliveries, return_exceptions=True)

    def handoff_of(self, call_id: str) -> HandoffSummary | None:
        return self.summaries.get(call_id)

    # --- delivery ------------------------------------------------------------------------------------

    def _deliver(self, summary: HandoffSummary) -> None:
        for key in filter(None, (summary.call_id, summary.provider_id)):
            self.summaries[key] = summary
            self.summaries.move_to_end(key)
        while len(self.summaries) > 2 * self.config.handoff.keep:
            self.summaries.popitem(last=False)
        body = summary.as_json()
        log.info("call %s hand-off: %s / %s", summary.call_id, *summary.lines)
        if self.store is not None:
            self.store.add_handoff(summary.call_id, body)
        if self.webhook is not None:
            data = json.dumps({"event": EVENT, "handoff": body}).encode()
            task = asyncio.get_running_loop().create_task(self.webhook.deliver(data, EVENT, summary.call_id))
            self.deliveries.add(task)
            task.add_done_callback(self.deliveries.discard)

    async def find(self, key: str) -> dict[str, Any] | None:
        """The summary of call `key` (ours or the carrier's id): memory first, then the call records."""
        summary = self.summaries.get(key)
        if summary is not None:
            return summary.as_json()
        if self.store is None:
            return None
        store = self.store
        detail = await asyncio.to_thread(store.get_call, key)
        return detail.handoff if detail is not None else None


def add_handoff_routes(app: FastAPI, desk: HandoffDesk, config: VoicebotConfig) -> None:
    """`GET /calls/{id}/handoff` and Twilio's `<Connect action>` request, `/twilio/handoff`."""

    @app.get("/calls/{call_id}/handoff")
    async def handoff(request: Request, call_id: str) -> Response:
        if not token_ok(config.server.token, request):
            return Response("missing or wrong token", status_code=403, media_type="text/plain")
        try:
            found = await desk.find(call_id)
        except RuntimeError as exc:  # the records database is down: say so, never a bare 500
            return Response(str(exc), status_code=503, media_type="text/plain")
        if found is None:
            return Response("no hand-off for this call", status_code=404, media_type="text/plain")
        return JSONResponse(found)

    @app.api_route("/twilio/handoff", methods=["GET", "POST"])
    async def twilio_handoff(request: Request) -> Response:
        return await handoff_response(config, request, desk.handoff_of)
