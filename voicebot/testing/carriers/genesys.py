"""The Genesys Cloud AudioConnector peer and the signature of its connection request."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

from voicebot.audio import ulaw_encode
from voicebot.frames import PCM
from voicebot.testing.carriers.base import CarrierCaller, b64


class GenesysCaller(CarrierCaller):
    """Genesys Cloud's side of an AudioConnector session ("AudioHook Protocol Specification", version 2):
    a signed upgrade request (with `api_key` and `secret`; else the gateway token as X-API-KEY), `open` with
    its media offers, no audio before `opened`, PCMU binary frames, `ping`, `dtmf`, `playback_started` and
    `playback_completed` as its playout buffer starts and runs dry, `close` to hang up or to answer
    `disconnect`."""

    protocol = "genesys"
    path = "/genesys/audiohook"
    api_key: str | None = None
    secret: str | None = None  # base64
    conversation = ""

    def __init__(self, parameters: dict[str, str] | None = None, token: str | None = None) -> None:
        super().__init__(parameters, token)
        self.serverseq = 0
        self.conversation = self.conversation or str(uuid.uuid4())
        self.opened = asyncio.Event()
        self.disconnect: dict[str, Any] | None = None
        self._dry: asyncio.TimerHandle | None = None

    def query(self) -> str:
        return ""

    def headers(self) -> dict[str, str]:
        key = self.api_key or self.token or ""
        headers = {"Audiohook-Organization-Id": str(uuid.uuid5(uuid.NAMESPACE_DNS, "acme.example")),
                   "Audiohook-Correlation-Id": str(uuid.uuid4()), "Audiohook-Session-Id": self.id,
                   "X-API-KEY": key}  # fmt: skip
        if self.secret is None:
            return headers
        return headers | signed(headers, self.path, self.host, key, self.secret)

    host = "127.0.0.1"

    def _message(self, kind: str, **parameters: Any) -> str:
        self.sequence += 1
        return json.dumps({"version": "2", "id": self.id, "type": kind, "seq": self.sequence,
                           "serverseq": self.serverseq, "position": f"PT{self.timestamp / 1000:.2f}S",
                           "parameters": parameters})  # fmt: skip

    def opening(self) -> list[str | bytes]:
        offers = [{"type": "audio", "format": "PCMU", "channels": channels, "rate": 8000}
                  for channels in (["external", "internal"], ["external"])]  # fmt: skip
        participant = {
            "id": str(uuid.uuid4()),
            "ani": "+13175550100",
            "aniName": "Ada",
            "dnis": "+13175550199",
        }
        return [self._message("open", organizationId=str(uuid.uuid4()), conversationId=self.conversation,
                              participant=participant, media=offers, language="en-US",
                              customConfig={}, inputVariables=self.parameters)]  # fmt: skip

    async def _open(self, gw: Any) -> None:
        self.host = gw.http
        await self._connect(gw)
        await self._send_raw(self.opening()[0])
        assert self.ws is not None
        async with asyncio.timeout(20):  # no audio before `opened`
            while not self.opened.is_set():
                self.received.append(self.read(await self.ws.recv()))

    def audio(self, pcm: PCM) -> bytes:
        return ulaw_encode(pcm)

    def key(self, digit: str) -> str:
        return self._message("dtmf", digit=digit)

    def bye(self) -> str:
        return self._message("close", reason="end")

    async def say_bye(self) -> None:
        """`close`, then (as Genesys does) wait for `closed` before the socket goes."""
        await self._send_raw(self.bye())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while not self.kinds("closed") and not self.closed.is_set() and loop.time() < deadline:
            await asyncio.sleep(0.02)

    def ping(self) -> str:
        return self._message("ping", rtt="PT0.02S")

    def read(self, message: str | bytes) -> tuple[str, Any]:
        if isinstance(message, bytes):
            self._playing()
            return "media", self.seconds(message)
        data = json.loads(message)
        self.serverseq = int(data.get("seq", self.serverseq))
        kind = data.get("type")
        if kind == "opened":
            self.opened.set()
        elif kind == "event" and any(e.get("type") == "barge_in" for e in data["parameters"]["entities"]):
            self._dry_now()
            return "clear", None
        elif kind == "disconnect":
            self.disconnect = data["parameters"]
            self._later(self.bye())  # Genesys ends the session its way: close, then closed
        return str(kind), data

    def echo(self, name: str, cleared: bool) -> None:
        return None  # Genesys reports playback with playback_completed, not marks

    def _playing(self) -> None:
        """Audio arrived: playback starts (if it was idle) and runs dry when what is queued has played."""
        loop = asyncio.get_running_loop()
        if self._dry is None:
            self._later(self._message("playback_started"))
        else:
            self._dry.cancel()
        end = max(self.playout.play_end, loop.time()) + 0.02
        self._dry = loop.call_at(end, self._dry_now)

    def _dry_now(self) -> None:
        if self._dry is not None:
            self._dry.cancel()
            self._dry = None
            self._later(self._message("playback_completed"))


def signed(
    headers: dict[str, str], path: str, host: str, key: str, secret: str, now: int | None = None
) -> dict[str, str]:
    """Signature-Input and Signature for an upgrade request, as Genesys signs it (HMAC-SHA256 over the
    covered components, then the signature parameters; the key is the base64 client secret, decoded)."""
    created = int(time.time()) if now is None else now
    covered = ["@request-target", "@authority", "audiohook-organization-id", "audiohook-session-id",
               "audiohook-correlation-id", "x-api-key"]  # fmt: skip
    lower = {k.lower(): v for k, v in headers.items()} | {"@request-target": path, "@authority": host}
    params = "(" + " ".join(f'"{c}"' for c in covered) + ")"
    params += f';keyid="{key}";nonce="{uuid.uuid4().hex}";alg="hmac-sha256"'
    params += f";created={created};expires={created + 300}"
    text = "".join(f'"{c}": {lower[c]}\n' for c in covered) + f'"@signature-params": {params}'
    mac = hmac.new(base64.b64decode(secret), text.encode(), hashlib.sha256).digest()
    return {"Signature-Input": f"sig1={params}", "Signature": f"sig1=:{b64(mac)}:"}
