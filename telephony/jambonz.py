"""jambonz `listen` with bidirectional streaming audio (`/jambonz/listen`).

Per jambonz's `listen` verb reference and "Bidirectional (streaming) audio" (docs.jambonz.org, release 0.9
and later). jambonz connects with the WebSocket subprotocol `audio.jambonz.org` (and HTTP Basic auth when
the verb has `wsAuth`), sends one text frame — the call's attributes (callSid, from, to, direction…), its
`sampleRate` and `mixType`, and the verb's `metadata` — then binary frames of 16-bit little-endian PCM at
that rate. With `passDtmf: true` keys arrive as text `{"event": "dtmf", "dtmf": "5", "duration": …}`. With
`bidirectionalAudio: {enabled: true, streaming: true, sampleRate: <the same rate>}` we send binary PCM back,
`{"type": "mark", "data": {"name": …}}` after each sentence (jambonz answers `{"type": "mark", "data":
{"name", "event": "playout" | "cleared"}}`), `{"type": "killAudio"}` on barge-in, and on our hang-up
`{"type": "disconnect"}` before closing: the `listen` verb ends and its `actionHook` says what comes next.

`mixType` must be `mono` (stereo would interleave two parties). `bidirectionalAudio.sampleRate` is not
repeated in the first frame, so it must equal `sampleRate`: we send at the rate we receive. Authentication:
the `wsAuth` password, `?token=…` on the URL, or `metadata.token`.
"""

from __future__ import annotations

from fastapi import WebSocket

from telephony.binarystream import BinaryDialect, First, Message, binary_stream_call, kind_of
from telephony.session import CallHub
from telephony.stream import WireError, as_int, basic_password, codec, strings, text

IDS = ("callSid", "callId", "accountSid", "applicationSid", "from", "to", "direction")
ATTRIBUTES = frozenset({*IDS, "sampleRate", "mixType", "token", "sipStatus", "callStatus", "callerName"})


def call_attributes(data: Message, rate: int) -> First:
    """The ids and custom fields of a mod_audio_fork first frame (jambonz's, or a dialplan's metadata)."""
    if text(data.get("mixType", "mono")) != "mono":
        raise WireError(f"unsupported mixType {text(data.get('mixType'))[:20]!r}: need mono", 1003)
    meta = {key: text(data[key]) for key in IDS if key in data}
    params = {k: v for k, v in strings(data).items() if k not in ATTRIBUTES}
    token = data.get("token")
    return First(codec("l16le", rate), meta | {"parameters": params}, text(token) if token else None)


def opening(data: Message, query: dict[str, str]) -> First:
    rate = as_int(data.get("sampleRate"))
    if rate is None:
        raise WireError("first frame without a sampleRate", 1007)
    return call_attributes(data, rate)


JAMBONZ = BinaryDialect(
    protocol="jambonz",
    opening=opening,
    kind=kind_of,
    dtmf={"dtmf": lambda data: data["dtmf"]},
    echoes={"mark": lambda data: (data["data"]["name"], data["data"].get("event") == "cleared")},
    clear={"type": "killAudio"},
    mark=lambda name: {"type": "mark", "data": {"name": name}},
    bye={"type": "disconnect"},
    subprotocol="audio.jambonz.org",
    awaited="call attributes",
)


async def jambonz_call(ws: WebSocket, hub: CallHub, query_token: str | None) -> None:
    await binary_stream_call(ws, hub, JAMBONZ, query_token or basic_password(ws), dict(ws.query_params))
