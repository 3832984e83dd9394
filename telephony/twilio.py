"""Twilio Media Streams (`/twilio/stream`): the WebSocket of a bidirectional `<Connect><Stream>`.

Per Twilio's "Media Streams — WebSocket Messages" reference. Twilio → us, JSON text: `connected`, `start`
(streamSid, callSid, accountSid, customParameters, mediaFormat audio/x-mulaw 8000 Hz mono), `media` (20 ms
of base64 μ-law), `dtmf`, `mark` (our mark, echoed once the audio before it has played), `stop`;
sequenceNumber, chunk and timestamp are strings of integers. Us → Twilio: `media` (base64 μ-law 8 kHz),
a `mark` after each sentence (its echo says what the caller really heard: `played_ms` never reports less
than the marks echoed so far), `clear` on barge-in.

The reading, marks and bad-input rules are the Media Streams family's (`telephony.mediastream`, whose
dialect this module gives); what is Twilio's own is the transfer hook: on a transfer, the spoken notice,
then a POST of `{callSid, streamSid, target, reason}` to `server.twilio_transfer_url`, then the close.
"""

from __future__ import annotations

from fastapi import WebSocket

from telephony.mediastream import MediaStreamTransport, Message, media_stream_call, twilio_shaped
from telephony.session import CallHub, Ending
from telephony.stream import Codec, WireError, codec
from telephony.twiml import post_transfer

RATE = 8_000


def media_format(start: Message) -> Codec:
    media = start.get("mediaFormat")
    fmt = (
        [media.get(key) for key in ("encoding", "sampleRate", "channels")] if isinstance(media, dict) else []
    )
    if fmt != ["audio/x-mulaw", RATE, 1]:
        raise WireError(f"unsupported media format {media}: need audio/x-mulaw 8000 Hz mono", 1003)
    return codec("pcmu", RATE)


TWILIO = twilio_shaped(
    "twilio", "streamSid", "sequenceNumber", media_format, ("callSid", "accountSid"), "customParameters"
)


class TwilioTransport(MediaStreamTransport):
    """A Media Stream; on a transfer, the user's hook is told before the stream closes."""

    async def hang_up(self, ending: Ending) -> None:
        transfer = ending.transfer
        if transfer is not None and self.config.twilio_transfer_url:
            body: dict[str, str | None] = {"callSid": self.meta.get("callSid"), "streamSid": self.sid}
            body |= {"target": transfer.target, "reason": transfer.reason}
            self.stats["transfer_hook_ok"] = int(await post_transfer(self.config.twilio_transfer_url, body))
        await super().hang_up(ending)


async def twilio_call(ws: WebSocket, hub: CallHub, query_token: str | None) -> None:
    """Admit and run one Media Stream: wait for `start`, check its token, run the call."""
    await media_stream_call(ws, hub, TWILIO, query_token, TwilioTransport)
