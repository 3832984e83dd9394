"""FreeSWITCH `mod_audio_fork` (`/freeswitch/fork`), started from the dialplan.

Per `mod_audio_fork`'s README (drachtio-freeswitch-modules) and jambonz's fork of it, which adds
bidirectional streaming: `uuid_audio_fork <uuid> start <url> mono 8k <bug> <metadata> true true 8000`
opens the socket, sends `<metadata>` as the first text frame, then binary frames of 16-bit little-endian
PCM at the fork's rate; with the last three arguments (bidirectional audio on, streamed, its rate) binary
frames we send back are played to the caller. Text frames we send are the module's commands: `{"type":
"killAudio"}` (barge-in: drop what is queued) and `{"type": "disconnect"}` (our hang-up; the dialplan goes
on after the fork, e.g. to a `bridge` to your agents). On a transfer, `{"type": "transfer", "data": <the
warm hand-off summary, voicebot.handoff>}` comes first: the module raises it as the FreeSWITCH event
`mod_audio_fork::transfer` with the data as its JSON body (the module's README, "transfer"), where an
ESL or Lua handler sets it as channel variables (`uuid_setvar`) before the `bridge`.
`uuid_audio_fork <uuid> send_text <json>` sends a text frame to us: call it from your DTMF handler (ESL,
Lua) with `{"event": "dtmf", "dtmf": "5"}` to pass keys — the module forwards no DTMF itself.

The module has no playback report (no mark), so what the caller heard is the speak stage's clock; and the
rate is not on the wire: it is the `rate` in the metadata, else `?rate=` on the URL (8000 by default), and
must match the fork's `8k`/`16k`. The metadata must be a JSON object (a bare string cannot carry the token
or the call's ids); its `token` (or `?token=…`) is the gateway token, `uuid`, `caller`… go to the records.
mod_audio_stream (amigniter) is the other module of this kind; its free edition only writes returned audio
to files, so it cannot carry a conversation without more glue, and we chose mod_audio_fork.
"""

from __future__ import annotations

from fastapi import WebSocket

from telephony.binarystream import BinaryDialect, First, Message, binary_stream_call, kind_of
from telephony.jambonz import call_attributes
from telephony.session import CallHub
from telephony.stream import WireError, as_int, strings


def opening(data: Message, query: dict[str, str]) -> First:
    rate = as_int(data.get("rate", query.get("rate", 8000)))
    if rate is None:
        raise WireError("metadata with a rate that is not a number", 1007)
    first = call_attributes({k: v for k, v in data.items() if k != "rate"}, rate)
    ids = {k: v for k, v in strings(data).items() if k in ("uuid", "caller", "destination")}
    params = {k: v for k, v in first.meta["parameters"].items() if k not in ids}
    return First(first.codec, ids | {"parameters": params}, first.token)


FREESWITCH = BinaryDialect(
    protocol="freeswitch",
    opening=opening,
    kind=kind_of,
    dtmf={"dtmf": lambda data: data["dtmf"]},
    echoes={},
    clear={"type": "killAudio"},
    bye={"type": "disconnect"},
    handoff=lambda summary: {"type": "transfer", "data": summary.as_json()},
)


async def freeswitch_call(ws: WebSocket, hub: CallHub, query_token: str | None) -> None:
    await binary_stream_call(ws, hub, FREESWITCH, query_token, dict(ws.query_params))
