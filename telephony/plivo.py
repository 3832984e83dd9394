"""Plivo audio streams (`/plivo/stream`): the WebSocket of a bidirectional `<Stream>` XML element.

Per Plivo's "Stream Event Protocol" and "Audio Streaming Protocol Reference" (plivo.com/docs, 2025-26) and
the `<Stream>` XML reference. Plivo → us, JSON text: `start` (sequenceNumber; start.callId, streamId,
accountId, tracks, mediaFormat {encoding, sampleRate}; extra_headers), `media` (streamId; media.track,
timestamp, chunk, base64 payload), `dtmf` (dtmf.digit), `playedStream` (a checkpoint of ours has played),
`clearedAudio` (our clear was done). Us → Plivo: `playAudio` ({media: {contentType, sampleRate,
payload}}), a `checkpoint` after each sentence, `clearAudio` on barge-in.

There is no `stop` on the socket (Plivo's stream status goes to `statusCallbackUrl`): the caller hanging
up closes it. Our hang-up closes it too; with `keepCallAlive="true"` Plivo then runs the XML after the
`<Stream>` (`<Hangup/>`, or a `<Dial>` to your agents). Formats: `audio/x-mulaw;rate=8000`,
`audio/x-l16;rate=8000` or `16000`; the reference does not give L16's byte order, and we read and send
little-endian, as Plivo's own examples decode it. Media timestamps are Unix times, not a stream clock: no
gap filling. Authentication: the gateway token as `token=…` in `extraHeaders` (letters and digits only,
so choose such a token) or in the stream URL's query. `extraHeaders` is documented as `a=1,b=2` but its
example arrives as `a=1;b=2`: both separators are read.
"""

from __future__ import annotations

import re

from fastapi import WebSocket

from telephony.mediastream import Dialect, Message, media_stream_call
from telephony.session import CallHub
from telephony.stream import Codec, WireError, as_int, codec, text

CODECS = {"audio/x-mulaw": "pcmu", "audio/x-l16": "l16le"}


def media_format(start: Message) -> Codec:
    fmt = start.get("mediaFormat")
    fmt = fmt if isinstance(fmt, dict) else {}
    encoding, rate = fmt.get("encoding"), as_int(fmt.get("sampleRate"))
    if not isinstance(encoding, str) or encoding not in CODECS or rate is None:  # a list: unhashable
        raise WireError(f"unsupported media format {text(fmt)[:60]}: need audio/x-mulaw or audio/x-l16", 1003)
    return codec(CODECS[encoding], rate)


def headers(data: Message) -> dict[str, str]:
    """`extra_headers` ("a=1;b=2" or "a=1,b=2") as a dict."""
    pairs = (part.partition("=") for part in re.split(r"[;,]", text(data.get("extra_headers") or "")))
    return {key.strip(): value.strip() for key, sep, value in pairs if sep and key.strip()}


def meta(data: Message, start: Message) -> Message:
    ids = {key: text(start.get(key, "")) for key in ("callId", "streamId", "accountId")}
    return ids | {"parameters": {k: v for k, v in headers(data).items() if k != "token"}}


def _media(sid: str, payload: str, wire: Codec) -> Message:
    content = "audio/x-mulaw" if wire.width == 1 else "audio/x-l16"
    return {
        "event": "playAudio",
        "media": {"contentType": content, "sampleRate": wire.rate, "payload": payload},
    }


PLIVO = Dialect(
    protocol="plivo",
    sid="streamId",
    sequence="sequenceNumber",
    fmt=media_format,
    media=_media,
    mark=lambda sid, name: {"event": "checkpoint", "streamId": sid, "name": name},
    clear=lambda sid: {"event": "clearAudio", "streamId": sid},
    echoes={"playedStream": lambda data: data["name"]},
    meta=meta,
    token=lambda data, start: headers(data).get("token"),
    preamble=frozenset(),
    stops=frozenset(),
    quiet=frozenset({"clearedAudio"}),
    timeline=False,
    strict_sid=False,
)


async def plivo_call(ws: WebSocket, hub: CallHub, query_token: str | None) -> None:
    await media_stream_call(ws, hub, PLIVO, query_token)
