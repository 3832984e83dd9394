"""The operator console's test bed: a real gateway with real call records, the shop's real dialogue engine,
and real Twilio-protocol callers, on fake models (`voicebot.testing.fakes`), so whole calls with intents,
slots, back-end actions and transfers run in seconds and without a model.

`console_gateway` starts it (token, call records in SQLite, recordings kept); `ShopCaller` is a Twilio
caller that sends the token and a caller number, and says the lines of `LINES` as the fake recogniser's
tones; `place_call` plays a whole scripted call through it. `DomainCaller` calls the caller page's way
(`/ws`), which can ask for one of the gateway's domains. `request` is a plain HTTP/1.1 request (status,
headers, body), `sse` reads the live feed, `token_session` and `login` log in (a Cookie header back).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from voicebot.brain import BrainFactory
from voicebot.config import ConsoleConfig, VoicebotConfig
from voicebot.frames import PCM, TurnDone
from voicebot.nlu.parser import Parser
from voicebot.pipeline import Services
from voicebot.records import CallStore
from voicebot.testing.fakes import ScriptedNLU, ToneTTS, ToneVoice, fake_services
from voicebot.testing.faults.callers import BrowserCaller, Caller, TwilioCaller, until
from voicebot.testing.faults.env import call_of, fault_config, gone
from voicebot.testing.gateway import Gateway, Recorder, running_gateway
from voicebot.testing.shop import SHOP
from voicebot.testing.twilio import RATE

TOKEN = "console-test-token"
CALLER_NUMBER = "+44 7911 123456"
SCRIPT: dict[str, tuple[str, dict[str, str]]] = {
    "where is my order": ("track_order", {}),
    "four five seven two one nine": ("inform", {"order_id": "457219"}),
    "i want to talk to a person": ("contact_human_agent", {}),
    "no thanks goodbye": ("goodbye", {}),
    "yes please": ("affirm", {}),
}
LINES = (*SCRIPT, "what is the meaning of life")  # the last one is out of scope
VOICE = ToneVoice(LINES)


def line(text: str, pause_s: float = 1.0) -> PCM:
    """The caller saying `text` (a tone the fake recogniser hears as it), then a pause."""
    return np.concatenate([VOICE.say(text, RATE), np.zeros(int(pause_s * RATE), np.int16)])


def users() -> list[dict[str, str]]:
    """Two console logins: sam (supervisor, password super-pass) and vera (viewer, viewer-pass)."""
    from telephony.console.auth import hash_password

    return [
        {"name": "sam", "password_hash": hash_password("super-pass", 1000), "role": "supervisor"},
        {"name": "vera", "password_hash": hash_password("viewer-pass", 1000), "role": "viewer"},
    ]


class ShopCaller(TwilioCaller):
    """A Twilio caller that sends the gateway token and its number as the stream's custom parameters."""

    async def _open(self, gw: Gateway) -> None:
        self.stream.ws = await self._connect(gw)
        await self.stream.start({"token": TOKEN, "from": CALLER_NUMBER})


class DomainCaller(BrowserCaller):
    """The browser protocol's caller (`/ws`) with the gateway token, asking for `domain`."""

    def __init__(self, domain: str) -> None:
        super().__init__()
        self.path = f"{BrowserCaller.path}&token={TOKEN}&domain={domain}"


@dataclass
class ConsoleBed:
    gw: Gateway
    store: CallStore
    recordings: Path
    recorder: Recorder
    services: Services
    say: Callable[[str], PCM] = field(default=line)  # a caller's line as audio: the fake recogniser's tones

    async def call(self, caller: Caller | None = None) -> tuple[Caller, str]:
        """A caller (a `ShopCaller` by default) on the line, hearing the greeting; returns it and the call's
        id."""
        caller = caller or ShopCaller()
        await caller.connect(self.gw)
        return caller, await call_of(caller, self.gw)

    async def place_call(
        self, lines: Sequence[str], turns_between_s: float = 15.0, caller: Caller | None = None
    ) -> str:
        """A whole call: each line once the bot has answered the one before, then the caller's goodbye
        or hang-up; returns its id once its records are written."""
        caller, call_id = await self.call(caller)
        try:
            for n, text in enumerate(lines):
                await until(lambda n=n: self.turns(call_id) > n, turns_between_s)  # type: ignore[misc]
                caller.say(self.say(text))
            await gone(call_id, self.gw)
        finally:
            await caller.close()
        await self.store.flush()
        return call_id

    def turns(self, call_id: str) -> int:
        """The call's turns answered so far (the greeting is the first)."""
        return len(self.recorder.of(call_id, TurnDone))


def _console(tmp: Path, console: dict[str, Any] | None) -> dict[str, Any]:
    """The console's settings: reviews go to `tmp`, never into the repository's domain folder."""
    return {"reviews_file": tmp / "reviewed.jsonl"} | (console or {})


@asynccontextmanager
async def console_gateway(
    tmp: Path,
    console: dict[str, Any] | None = None,
    more_domains: dict[str, BrainFactory] | None = None,
    brains: BrainFactory | None = None,
    nlu: Parser | None = None,
    services: Callable[[VoicebotConfig], Services] | None = None,
) -> AsyncIterator[ConsoleBed]:
    """The gateway (token `TOKEN`, recordings kept) with the shop's dialogue engine on a scripted NLU;
    `more_domains`: served beside the shop (the default) by name (telephony/domains.py); `brains`: these
    instead of the shop's, with `cache_dir` tmp/cache (where a domain's trained models are looked for);
    `nlu`, `services`: the shop's understanding and the models (made from the gateway's config) instead of
    the fakes (scripts/bench_console.py --real)."""
    from telephony.domains import Domains
    from voicebot.dialogue.brain import DialogueFactory
    from voicebot.domain.loader import load_domain

    recordings = tmp / "recordings"
    config = fault_config(token=TOKEN, recordings_dir=recordings, idle_timeout_s=30.0)
    config = VoicebotConfig.model_validate(
        config.model_dump() | {"console": ConsoleConfig.model_validate(_console(tmp, console)).model_dump()}
    )
    flows = load_domain(SHOP).flows
    intents = {i for name, flow in flows.items() for i in flow.intents or [name]}
    nlu = nlu or ScriptedNLU(SCRIPT, intents | {"affirm", "deny", "inform", "goodbye", "contact_human_agent"})
    if brains is None:
        shop = DialogueFactory(SHOP, nlu, cache_dir=tmp, scratch=tmp / "scratch")
        brains = Domains({"shop": shop} | more_domains) if more_domains else shop
    else:
        config.cache_dir = tmp / "cache"
    models = (
        services(config) if services else fake_services(config, voice=VOICE, tts=ToneTTS(ms_per_char=12.0))
    )
    store = CallStore(f"sqlite:///{tmp / 'calls.sqlite'}", recordings, tmp / "spool.jsonl")
    recorder = Recorder()
    try:
        async with running_gateway(config, models, brains, observers=[store, recorder]) as gw:
            yield ConsoleBed(gw, store, recordings, recorder, models)
    finally:
        store.close()
        models.close()


# --- the console's side: plain HTTP/1.1 and its Server-Sent Events --------------------------------

BEARER = {"Authorization": f"Bearer {TOKEN}"}


async def request(
    host: str, path: str, method: str = "GET", headers: dict[str, str] | None = None, body: str = ""
) -> tuple[int, dict[str, str], str]:
    """One HTTP/1.1 request: status, headers (lower-case names; Set-Cookie values joined by newlines)
    and body."""
    name, port = host.split(":")
    reader, writer = await asyncio.open_connection(name, int(port))
    headers = {"Host": host} | (headers or {})
    head = [f"{method} {path} HTTP/1.1", "Connection: close", f"Content-Length: {len(body)}"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    writer.write(("\r\n".join(head) + "\r\n\r\n" + body).encode())
    data = (await reader.read()).decode(errors="replace")  # a recording is binary
    writer.close()
    top, _, text = data.partition("\r\n\r\n")
    lines = top.split("\r\n")
    found: dict[str, str] = {}
    for item in lines[1:]:
        key, _, value = item.partition(":")
        key = key.strip().lower()
        found[key] = f"{found[key]}\n{value.strip()}" if key in found else value.strip()
    return int(lines[0].split()[1]), found, text


def cookie_of(headers: dict[str, str]) -> str:
    """The console's session cookie as a request's Cookie header."""
    cookie = next(c for c in headers["set-cookie"].split("\n") if c.startswith("vb_console="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
    return cookie.split(";")[0]


async def token_session(host: str) -> tuple[str, str]:
    """Log in with `?token=`: the session cookie and its CSRF token."""
    status, headers, _ = await request(host, f"/console?token={TOKEN}")
    assert status == 303 and headers["location"] == "/console"  # the token leaves the address bar
    cookie = cookie_of(headers)
    status, _, body = await request(host, "/console/api/me", headers={"Cookie": cookie})
    assert status == 200
    me = json.loads(body)
    assert (me["user"], me["role"]) == ("token", "supervisor") and len(me["csrf"]) > 20
    return cookie, me["csrf"]


async def sse(host: str, headers: dict[str, str], into: list[dict[str, Any]]) -> None:
    """Read the live feed's events into `into` until cancelled."""
    name, port = host.split(":")
    reader, writer = await asyncio.open_connection(name, int(port))
    head = ["GET /console/api/live HTTP/1.1", f"Host: {host}"] + [f"{k}: {v}" for k, v in headers.items()]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
    try:
        while line_ := await reader.readline():
            text = line_.decode().strip()
            if text.startswith("data: {"):  # chunked framing lines and comments are not events
                into.append(json.loads(text[6:]))
    finally:
        writer.close()


async def login(host: str, name: str, password: str) -> dict[str, str]:
    """Log in with the form: the session cookie as a Cookie header."""
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    status, headers, _ = await request(
        host, "/console/login", "POST", form, f"name={name}&password={password}"
    )
    assert status == 303
    return {"Cookie": cookie_of(headers)}
