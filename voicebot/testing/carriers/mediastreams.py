"""Peers of the Media Streams family: Telnyx, Exotel and Plivo (JSON text, base64 audio)."""

from __future__ import annotations

import json
import uuid
from typing import Any

from voicebot.audio import ulaw_encode
from voicebot.frames import PCM
from voicebot.testing.carriers.base import CarrierCaller, b64, pcm16


class TelnyxCaller(CarrierCaller):
    """Telnyx in RTP mode, PCMU 8 kHz ("Stream call media over WebSocket")."""

    protocol = "telnyx"
    path = "/telnyx/stream"

    def _message(self, event: str, **body: Any) -> str:
        self.sequence += 1
        return json.dumps(
            {"event": event, "sequence_number": str(self.sequence), **body, "stream_id": self.id}
        )

    def opening(self) -> list[str | bytes]:
        params = self.parameters | ({"token": self.token} if self.token else {})
        start = {"user_id": str(uuid.uuid4()), "call_control_id": "v3:" + self.call_ref,
                 "call_session_id": str(uuid.uuid4()), "from": "+13125550100", "to": "+13125550199",
                 "client_state": b64(b"shop"), "custom_parameters": params,
                 "media_format": {"encoding": "PCMU", "sample_rate": 8000, "channels": 1}}  # fmt: skip
        return [json.dumps({"event": "connected", "version": "1.0.0"}), self._message("start", start=start)]

    def query(self) -> str:
        return ""  # the token travels as a custom parameter

    def audio(self, pcm: PCM) -> str:
        media = {"track": "inbound", "chunk": str(self.chunk), "timestamp": str(self.timestamp),
                 "payload": b64(ulaw_encode(pcm))}  # fmt: skip
        return self._message("media", media=media)

    def key(self, digit: str) -> str:
        return self._message("dtmf", occurred_at="2026-01-01T00:00:00Z", dtmf={"digit": digit})

    def bye(self) -> str:
        return self._message("stop", stop={"user_id": "u", "call_control_id": "v3:" + self.call_ref})

    def read(self, message: str | bytes) -> tuple[str, Any]:
        return self.read_json(message, "media", "mark", lambda data: data["mark"]["name"])

    def echo(self, name: str, cleared: bool) -> str:
        return self._message("mark", mark={"name": name})


class ExotelCaller(TelnyxCaller):
    """Exotel's Voicebot applet: 16-bit PCM at 8 kHz (AgentStream "WebSocket protocol")."""

    protocol = "exotel"
    path = "/exotel/stream"
    width = 2

    def _message(self, event: str, **body: Any) -> str:
        self.sequence += 1
        return json.dumps(
            {"event": event, "sequence_number": str(self.sequence), "stream_sid": self.id, **body}
        )

    def opening(self) -> list[str | bytes]:
        params = self.parameters | ({"token": self.token} if self.token else {})
        fmt = {"encoding": "audio/x-raw", "sample_rate": "8000", "bit_rate": "16"}
        start = {"stream_sid": self.id, "call_sid": self.call_ref, "account_sid": "exotel-acct",
                 "from": "+919876543210", "to": "+918047491899", "custom_parameters": params,
                 "media_format": fmt}  # fmt: skip
        return [json.dumps({"event": "connected"}), self._message("start", start=start)]

    def audio(self, pcm: PCM) -> str:
        media = {"chunk": str(self.chunk), "timestamp": str(self.timestamp), "payload": b64(pcm16(pcm))}
        return self._message("media", media=media)

    def key(self, digit: str) -> str:
        return self._message("dtmf", dtmf={"digit": digit, "duration": "100"})

    def bye(self) -> str:
        return self._message("stop", stop={"call_sid": self.call_ref, "reason": "callended"})


class PlivoCaller(CarrierCaller):
    """Plivo's bidirectional `<Stream>`, audio/x-mulaw 8 kHz ("Stream Event Protocol")."""

    protocol = "plivo"
    path = "/plivo/stream"
    clear_returns_marks = False  # playedStream only for audio that really played

    def _message(self, event: str, **body: Any) -> str:
        self.sequence += 1
        return json.dumps({"event": event, "sequenceNumber": self.sequence, "streamId": self.id, **body})

    def query(self) -> str:
        return ""  # the token travels in extraHeaders

    def opening(self) -> list[str | bytes]:
        params = self.parameters | ({"token": self.token} if self.token else {})
        headers = ";".join(f"{k}={v}" for k, v in params.items())
        fmt = {"encoding": "audio/x-mulaw", "sampleRate": 8000}
        start = {"callId": self.call_ref, "streamId": self.id, "accountId": "MA" + "X" * 18,
                 "tracks": ["inbound"], "mediaFormat": fmt}  # fmt: skip
        self.sequence += 1
        return [json.dumps({"event": "start", "sequenceNumber": self.sequence, "start": start,
                            "extra_headers": headers})]  # fmt: skip

    def audio(self, pcm: PCM) -> str:
        media = {"track": "inbound", "timestamp": str(1_765_000_000_000 + self.timestamp),
                 "chunk": self.chunk, "payload": b64(ulaw_encode(pcm))}  # fmt: skip
        return self._message("media", media=media)

    def key(self, digit: str) -> str:
        return self._message("dtmf", dtmf={"digit": digit, "track": "inbound"})

    def read(self, message: str | bytes) -> tuple[str, Any]:
        kind, data = self.read_json(message, "playAudio", "checkpoint", lambda data: data["name"])
        if kind == "clearAudio":
            self._later(self._message("clearedAudio"))
            return "clear", None
        return kind, data

    def echo(self, name: str, cleared: bool) -> str:
        return self._message("playedStream", name=name)
