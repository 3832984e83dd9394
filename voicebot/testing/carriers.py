"""The carriers' side of their media WebSockets, written from each one's published reference (the same ones
`telephony/<carrier>.py` cites): the callers of the carrier tests, the fuzz campaign's good calls and the
latency table.

Each peer is a `Caller` (voicebot.testing.faults.callers): it streams 20 ms of 8 kHz audio in real time,
presses keys, counts the bot's audio frames, and can drop the line every way a real one fails. What is the
carrier's own: the opening messages, how audio, keys and the hang-up are framed, and its playout buffer
(`Playout`): the bot's audio plays in order in real time, a mark comes back once the audio before it has
played, and a clear drops what is queued, returning pending marks the carrier's way (Twilio's family at
once, Plivo and Vonage never, jambonz as `cleared`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import websockets

from voicebot.audio import ulaw_encode
from voicebot.brain import BrainFactory, EchoBrain
from voicebot.config import VoicebotConfig
from voicebot.frames import PCM
from voicebot.testing.fakes import ToneTTS, ToneVoice, fake_services
from voicebot.testing.faults.callers import GONE, _WebSocketCaller
from voicebot.testing.gateway import Gateway, Recorder, running_gateway
from voicebot.testing.twilio import RATE

Echo = Callable[[str, bool], Any]  # (mark name, cleared) → the message that returns it, or None


class Playout:
    """A carrier's playout buffer, on the event loop's clock."""

    def __init__(self, echo: Callable[[str, bool], None]) -> None:
        self.echo = echo
        self.play_end = float("-inf")  # loop time when the audio received so far has played
        self.pending: dict[str, asyncio.TimerHandle] = {}
        self.marks_echoed: list[str] = []
        self.clears = 0

    def audio(self, seconds: float) -> None:
        now = asyncio.get_running_loop().time()
        self.play_end = max(self.play_end, now) + seconds

    def mark(self, name: str) -> None:
        loop = asyncio.get_running_loop()
        self.pending[name] = loop.call_at(max(self.play_end, loop.time()), self._played, name)

    def clear(self, returns: bool) -> None:
        """Drop the queued audio; pending marks come back now (`returns`) or never."""
        self.clears += 1
        for name in list(self.pending):
            self.pending.pop(name).cancel()
            if returns:
                self._send(name, True)
        self.play_end = asyncio.get_running_loop().time()

    def hush(self) -> None:
        for handle in self.pending.values():
            handle.cancel()
        self.pending.clear()

    def _played(self, name: str) -> None:
        for earlier in list(self.pending):  # marks come back in order
            self.pending.pop(earlier).cancel()
            self._send(earlier, False)
            if earlier == name:
                return

    def _send(self, name: str, cleared: bool) -> None:
        self.marks_echoed.append(name)
        self.echo(name, cleared)


class CarrierCaller(_WebSocketCaller):
    """A carrier peer; subclasses give the wire (`opening`, `audio`, `key`, `bye`, `read`)."""

    clear_returns_marks = True
    marks = True  # the protocol reports playback
    width = 1  # bytes per 8 kHz sample on the wire: μ-law 1, PCM 2

    def __init__(self, parameters: dict[str, str] | None = None, token: str | None = None) -> None:
        super().__init__()
        self.id = str(uuid.uuid4())
        self.call_ref = "call-" + uuid.uuid4().hex
        self.parameters = dict(parameters or {})
        self.token = token
        self.sequence = self.chunk = 0
        self.timestamp = 0
        self.received: list[Any] = []  # every message from the app, parsed
        self.playout = Playout(self._echo)
        self.tasks: set[asyncio.Task[None]] = set()
        self.hung_up = False

    # --- the carrier's wire ---

    def opening(self) -> list[str | bytes]:
        raise NotImplementedError

    def audio(self, pcm: PCM) -> str | bytes:
        raise NotImplementedError

    def key(self, digit: str) -> str:
        raise NotImplementedError

    def bye(self) -> str | None:
        """The hang-up message (None: the line just closes)."""
        return None

    async def say_bye(self) -> None:
        message = self.bye()
        if message is not None:
            await self._send_raw(message)

    def read_json(
        self, message: str | bytes, media: str, mark: str, name: Callable[[dict[str, Any]], str]
    ) -> tuple[str, Any]:
        """A JSON `event` message: `media` (base64 audio in media.payload), `mark` (its `name`), or other."""
        data = json.loads(message)
        event = data.get("event")
        if event == media:
            return "media", self.seconds(base64.b64decode(data["media"]["payload"]))
        if event == mark:
            return "mark", name(data)
        return str(event), data

    def read(self, message: str | bytes) -> tuple[str, Any]:
        """What an app message is: ("media", seconds), ("mark", name), ("clear", None), or (kind, data)."""
        raise NotImplementedError

    def echo(self, name: str, cleared: bool) -> str | None:
        """The message that returns mark `name`."""
        raise NotImplementedError

    # --- the Caller's part ---

    def query(self) -> str:
        return f"?token={self.token}" if self.token else ""

    async def _open(self, gw: Any) -> None:
        self.path = self.path.split("?")[0] + self.query()
        await self._connect(gw)
        for message in self.opening():
            await self._send_raw(message)

    async def _send_raw(self, message: str | bytes) -> None:
        assert self.ws is not None
        with contextlib.suppress(websockets.ConnectionClosed):
            await self.ws.send(message)

    async def _send(self, pcm: PCM) -> None:
        self.chunk += 1
        await self._send_raw(self.audio(pcm))
        self.timestamp += len(pcm) * 1000 // RATE

    async def _key(self, key: str) -> None:
        await self._send_raw(self.key(key))

    async def _receive(self) -> None:
        assert self.ws is not None
        async for message in self.ws:
            kind, data = self.read(message)
            self.received.append((kind, data))
            if kind == "media":
                self.bot_frames += 1
                self.playout.audio(data)
            elif kind == "mark":
                self.playout.mark(data)
            elif kind == "clear":
                self.playout.clear(self.clear_returns_marks)

    async def hang_up(self) -> None:
        """The caller hangs up: the carrier's hang-up message, then the line closes."""
        self.hung_up = True
        await self.say_bye()
        self._quiet()
        assert self.ws is not None
        with contextlib.suppress(*GONE):
            await self.ws.close()
        self.closed.set()

    def _quiet(self) -> None:
        super()._quiet()
        self.playout.hush()

    def _echo(self, name: str, cleared: bool) -> None:
        message = self.echo(name, cleared)
        if message is not None:
            self._later(message)

    def _later(self, message: str) -> None:
        """Send `message` soon (from a synchronous callback: a playout timer, a read)."""
        task = asyncio.ensure_future(self._send_raw(message))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def handshake_abort(self, gw: Any) -> None:
        """The first opening message, then gone before the call is set up."""
        await self._connect(gw)
        await self._send_raw(self.opening()[0])
        self._drop()

    def kinds(self, kind: str) -> list[Any]:
        return [data for k, data in self.received if k == kind]

    def seconds(self, payload: bytes) -> float:
        return len(payload) / self.width / RATE


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def pcm16(pcm: PCM, order: str = "<") -> bytes:
    return pcm.astype(f"{order}i2").tobytes()


# --- the Media Streams family ----------------------------------------------------------------------------


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


# --- the binary audio family -----------------------------------------------------------------------------


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


# --- Genesys Cloud AudioConnector ---------------------------------------------------------------------------


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


PEERS: dict[str, type[CarrierCaller]] = {
    "telnyx": TelnyxCaller,
    "plivo": PlivoCaller,
    "exotel": ExotelCaller,
    "vonage": VonageCaller,
    "jambonz": JambonzCaller,
    "freeswitch": FreeSwitchCaller,
    "genesys": GenesysCaller,
}


@contextlib.asynccontextmanager
async def fake_gateway(
    config: VoicebotConfig, brain_factory: BrainFactory = EchoBrain, voice: ToneVoice | None = None
) -> AsyncIterator[tuple[Gateway, Recorder]]:
    """The real gateway on model-free fakes (`voice`: the callers' tone voice), with a `Recorder`."""
    services = fake_services(config, voice=voice, tts=ToneTTS(ms_per_char=20.0))
    recorder = Recorder()
    try:
        async with running_gateway(config, services, brain_factory, [recorder]) as gw:
            yield gw, recorder
    finally:
        services.close()
