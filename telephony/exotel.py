"""Exotel voicebot stream (`/exotel/stream`): the Voicebot applet's bidirectional WebSocket (AgentStream).

Per Exotel's "AgentStream — WebSocket protocol" and "Working with the Stream and Voicebot Applet" pages
(developer.exotel.com, 2025-26). Exotel → us, JSON text: `connected`, `start` (stream_sid; start.call_sid,
account_sid, from, to, custom_parameters, media_format {encoding, sample_rate, bit_rate}), `media`
(base64 16-bit little-endian PCM: chunk, timestamp in ms of the stream), `dtmf` (dtmf.digit), `mark` (our
mark, echoed once played), `stop`. Us → Exotel: `media` with stream_sid, `mark` after each sentence, `clear`
on barge-in. Each of our media messages is one 20 ms frame: a multiple of 320 bytes, as Exotel asks; it
recommends 100 ms chunks against jitter, but `pipeline.send_ahead_ms` keeps that much queued at Exotel.

Ambiguities: the support article names the encoding `raw/slin`, the developer page `audio/x-raw`, and
sample_rate is a string in both examples; any of these, as string or number, is read as 16-bit PCM at
8000, 16000 or 24000 Hz (set with `?sample-rate=` on the applet's URL). Authentication: Exotel's Basic auth
(`wss://user:TOKEN@host/exotel/stream`, sent as `Authorization: Basic`): its password is the gateway token;
or `?token=…` among the URL's custom parameters. Our hang-up closes the stream; the flow goes on to the
applet after Voicebot (a Passthru or a Connect to your agents).
"""

from __future__ import annotations

from fastapi import WebSocket

from telephony.mediastream import Message, media_stream_call, twilio_shaped
from telephony.session import CallHub
from telephony.stream import Codec, WireError, as_int, basic_password, codec, text

ENCODINGS = frozenset({"raw/slin", "audio/x-raw", "slin", "audio/x-l16", "pcm"})


def media_format(start: Message) -> Codec:
    fmt = start.get("media_format")
    fmt = fmt if isinstance(fmt, dict) else {}
    rate = as_int(fmt.get("sample_rate", 8000))
    if str(fmt.get("encoding", "raw/slin")).lower() not in ENCODINGS or rate is None:
        raise WireError(f"unsupported media format {text(fmt)[:60]}: need 16-bit PCM", 1003)
    return codec("l16le", rate)


EXOTEL = twilio_shaped(
    "exotel", "stream_sid", "sequence_number", media_format, ("call_sid", "account_sid", "from", "to"),
    "custom_parameters",
)  # fmt: skip


async def exotel_call(ws: WebSocket, hub: CallHub, query_token: str | None) -> None:
    await media_stream_call(ws, hub, EXOTEL, query_token or basic_password(ws))
