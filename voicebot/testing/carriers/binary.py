"""Peers of the binary audio family: Vonage, jambonz and FreeSWITCH (a JSON opening, then binary PCM)."""

from __future__ import annotations

import json
import uuid
from typing import Any

from voicebot.frames import PCM
from voicebot.testing.carriers.base import CarrierCaller, b64, pcm16


class VonageCaller(CarrierCaller):
    """Vonage's websocket endpoint, audio/l16;rate=8000 ("WebSockets in the Vonage Voice API")."""

    protocol = "vonage"
    path = "/vonage/socket"
    width = 2
    clear_returns_marks = False  # pending notifies are dropped with the audio

    def query(self) -> str:
        return ""  # the token travels in the endpoint's headers

    def opening(self) -> list[str | bytes]:
        headers = self.parameters | ({"token": self.token} if self.token else {})
        return [json.dumps({"event": "websocket:connected", "content-type": "audio/l16;rate=8000"} | headers)]

    def audio(self, pcm: PCM) -> bytes:
        return pcm16(pcm)

    def key(self, digit: str) -> str:
        return json.dumps({"event": "websocket:dtmf", "digit": digit, "duration": 260})

    def read(self, message: str | bytes) -> tuple[str, Any]:
        if isinstance(message, bytes):
            return "media", self.seconds(message)
        return self.control(json.loads(message))

    def control(self, data: dict[str, Any]) -> tuple[str, Any]:
        """A text message from the app (the binary ones are audio)."""
        action = data.get("action")
        if action == "notify":
            return "mark", data["payload"]["name"]
        if action == "clear":
            self._later(json.dumps({"event": "websocket:cleared"}))
            return "clear", None
        return str(action), data

    def echo(self, name: str, cleared: bool) -> str:
        return json.dumps({"event": "websocket:notify", "payload": {"name": name}})


class JambonzCaller(VonageCaller):
    """jambonz `listen` with `bidirectionalAudio.streaming`, `passDtmf`, `wsAuth`, 8 kHz mono."""

    protocol = "jambonz"
    path = "/jambonz/listen"
    clear_returns_marks = True  # as {"event": "cleared"}
    subprotocols: tuple[str, ...] = ("audio.jambonz.org",)

    def opening(self) -> list[str | bytes]:
        attributes = {"callSid": self.call_ref, "direction": "inbound", "from": "+15085550100",
                      "to": "+15085550199", "callId": str(uuid.uuid4()), "accountSid": str(uuid.uuid4()),
                      "applicationSid": str(uuid.uuid4()), "sampleRate": 8000, "mixType": "mono"}  # fmt: skip
        return [json.dumps(attributes | self.parameters)]

    def headers(self) -> dict[str, str]:
        if not self.token:
            return {}
        return {"Authorization": "Basic " + b64(f"jambonz:{self.token}".encode())}

    def key(self, digit: str) -> str:
        return json.dumps({"event": "dtmf", "dtmf": digit, "duration": "250"})

    def control(self, data: dict[str, Any]) -> tuple[str, Any]:
        kind = data.get("type")
        if kind == "mark":
            return "mark", data["data"]["name"]
        if kind == "killAudio":
            return "clear", None
        if kind == "disconnect":
            self.playout.hush()  # the listen verb is over: nothing more is played
        return str(kind), data

    def echo(self, name: str, cleared: bool) -> str:
        event = "cleared" if cleared else "playout"
        return json.dumps({"type": "mark", "data": {"name": name, "event": event}})


class FreeSwitchCaller(JambonzCaller):
    """FreeSWITCH `uuid_audio_fork … mono 8k bot <metadata> true true 8000`; keys by `send_text`."""

    protocol = "freeswitch"
    path = "/freeswitch/fork"
    marks = False  # mod_audio_fork reports no playback
    subprotocols = ()

    def headers(self) -> dict[str, str]:
        return {}

    def opening(self) -> list[str | bytes]:
        metadata = {"uuid": self.call_ref, "caller": "1000", "destination": "5000"} | self.parameters
        return [json.dumps(metadata | ({"token": self.token} if self.token else {}))]
