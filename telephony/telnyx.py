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

from telephony.mediastream import Message, media_stream_call, twilio_shaped
from telephony.session import CallHub
from telephony.stream import Codec, WireError, as_int, codec, text

CODECS = {"PCMU": "pcmu", "PCMA": "pcma", "L16": "l16be"}


def media_format(start: Message) -> Codec:
    fmt = start.get("media_format")
    fmt = fmt if isinstance(fmt, dict) else {}
    encoding, rate = fmt.get("encoding"), as_int(fmt.get("sample_rate"))
    if not isinstance(encoding, str) or encoding not in CODECS or rate is None or fmt.get("channels", 1) != 1:
        raise WireError(f"unsupported media format {text(fmt)[:60]}: need PCMU, PCMA or L16 mono", 1003)
    return codec(CODECS[encoding], rate)


IDS = ("call_control_id", "call_session_id", "from", "to")
TELNYX = twilio_shaped(
    "telnyx", "stream_id", "sequence_number", media_format, IDS, "custom_parameters",
    names_stream=False, timeline=False,
)  # fmt: skip


async def telnyx_call(ws: WebSocket, hub: CallHub, query_token: str | None) -> None:
    await media_stream_call(ws, hub, TELNYX, query_token)
