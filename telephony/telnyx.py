"""Telnyx media streaming (`/telnyx/stream`): Call Control's bidirectional WebSocket in RTP mode.

Per Telnyx's "Stream call media over WebSocket" AsyncAPI reference (developers.telnyx.com, media-streaming
spec as published 2025-26) and the Call Control `streaming_start` / `answer` parameters (`stream_url`,
`stream_track`, `stream_codec`, `stream_bidirectional_mode: rtp`, `stream_bidirectional_codec`). Telnyx →
us, JSON text: `connected`, `start` (stream_id; start.call_control_id, call_session_id, from, to,
client_state, custom_parameters, media_format {encoding, sample_rate, channels}), `media` (base64 RTP
payload: track, chunk, timestamp), `dtmf` (dtmf.digit), `mark` (our mark, echoed once played), `error`,
`stop`. Us → Telnyx: `media` ({"media": {"payload"}}, 20 ms each, the reference allows 20 ms to 30 s),
`mark` after each sentence, `clear` on barge-in.

Codecs: PCMU and PCMA at 8 kHz, L16 at 8 or 16 kHz; G722, OPUS and AMR-WB are refused (1003), so set
`stream_codec` and `stream_bidirectional_codec` to the same one of ours. The reference does not say the
byte order of L16; its payloads are "RTP payloads", and RTP's L16 is network byte order (RFC 3551
§4.5.11), so big-endian is what we read and send. It also says media frame order is not guaranteed, so
timestamps are not read as a clock (no gap filling, unlike Twilio). Authentication: Telnyx signs its
webhooks, not the stream, so the gateway token travels in the stream URL (`?token=…`) or as the
`token` custom parameter. Hang-up from our side closes the stream; Telnyx then sends your Call Control
webhook `streaming.stopped`, where you hang up or transfer (its transfer target is in the call record).
"""

from __future__ import annotations

from fastapi import WebSocket

from telephony.mediastream import Dialect, Message, media_stream_call
from telephony.session import CallHub
from telephony.stream import Codec, WireError, as_int, codec, strings, text

CODECS = {"PCMU": "pcmu", "PCMA": "pcma", "L16": "l16be"}


def media_format(start: Message) -> Codec:
    fmt = start.get("media_format")
    fmt = fmt if isinstance(fmt, dict) else {}
    encoding, rate = fmt.get("encoding"), as_int(fmt.get("sample_rate"))
    if encoding not in CODECS or rate is None or fmt.get("channels", 1) != 1:
        raise WireError(f"unsupported media format {text(fmt)[:60]}: need PCMU, PCMA or L16 mono", 1003)
    return codec(CODECS[str(encoding)], rate)


def meta(data: Message, start: Message) -> Message:
    ids = {key: text(start.get(key, "")) for key in ("call_control_id", "call_session_id", "from", "to")}
    params = {k: v for k, v in strings(start.get("custom_parameters")).items() if k != "token"}
    return ids | {"stream_id": text(data.get("stream_id") or start.get("stream_id")), "parameters": params}


TELNYX = Dialect(
    protocol="telnyx",
    sid="stream_id",
    sequence="sequence_number",
    fmt=media_format,
    media=lambda sid, payload, _: {"event": "media", "media": {"payload": payload}},
    mark=lambda sid, name: {"event": "mark", "mark": {"name": name}},
    clear=lambda sid: {"event": "clear"},
    echoes={"mark": lambda data: data["mark"]["name"]},
    meta=meta,
    token=lambda data, start: strings(start.get("custom_parameters")).get("token"),
    timeline=False,
)


async def telnyx_call(ws: WebSocket, hub: CallHub, query_token: str | None) -> None:
    await media_stream_call(ws, hub, TELNYX, query_token)
