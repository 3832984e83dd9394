"""The operator console's test bed: a real gateway with real call records, the shop's real dialogue engine,
and real Twilio-protocol callers, on fake models (`voicebot.testing.fakes`), so whole calls with intents,
slots, back-end actions and transfers run in seconds and without a model.

`console_gateway` starts it (token, call records in SQLite, recordings kept); `ShopCaller` is a Twilio
caller that sends the token and a caller number, and says the lines of `LINES` as the fake recogniser's
tones; `place_call` plays a whole scripted call through it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voicebot.config import ConsoleConfig, VoicebotConfig
from voicebot.frames import PCM, TurnDone
from voicebot.records import CallStore
from voicebot.testing.fakes import ScriptedNLU, ToneTTS, ToneVoice, fake_services
from voicebot.testing.faults.callers import TwilioCaller, until
from voicebot.testing.faults.env import call_of, fault_config, gone
from voicebot.testing.gateway import Gateway, Recorder, running_gateway
from voicebot.testing.twilio import RATE

TOKEN = "console-test-token"
CALLER_NUMBER = "+44 7911 123456"
SHOP = Path(__file__).resolve().parents[2] / "domains" / "shop"
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


class ShopCaller(TwilioCaller):
    """A Twilio caller that sends the gateway token and its number as the stream's custom parameters."""

    async def _open(self, gw: Gateway) -> None:
        self.stream.ws = await self._connect(gw)
        await self.stream.start({"token": TOKEN, "from": CALLER_NUMBER})


@dataclass
class ConsoleBed:
    gw: Gateway
    store: CallStore
    recordings: Path
    recorder: Recorder

    async def call(self) -> tuple[ShopCaller, str]:
        """A caller on the line (hearing the greeting); returns it and the call's id."""
        caller = ShopCaller()
        await caller.connect(self.gw)
        return caller, await call_of(caller, self.gw)

    async def place_call(self, lines: Sequence[str], turns_between_s: float = 15.0) -> str:
        """A whole call: each line once the bot has answered the one before, then the caller's goodbye
        or hang-up; returns its id once its records are written."""
        caller, call_id = await self.call()
        try:
            for n, text in enumerate(lines):
                await until(lambda n=n: self.turns(call_id) > n, turns_between_s)  # type: ignore[misc]
                caller.say(line(text))
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
async def console_gateway(tmp: Path, console: dict[str, Any] | None = None) -> AsyncIterator[ConsoleBed]:
    """The gateway (token `TOKEN`, recordings kept) with the shop's dialogue engine on a scripted NLU."""
    from voicebot.dialogue.brain import DialogueFactory
    from voicebot.domain.loader import load_domain

    recordings = tmp / "recordings"
    config = fault_config(token=TOKEN, recordings_dir=recordings, idle_timeout_s=30.0)
    config = VoicebotConfig.model_validate(
        config.model_dump() | {"console": ConsoleConfig.model_validate(_console(tmp, console)).model_dump()}
    )
    flows = load_domain(SHOP).flows
    intents = {i for name, flow in flows.items() for i in flow.intents or [name]}
    nlu = ScriptedNLU(SCRIPT, intents | {"affirm", "deny", "inform", "goodbye", "contact_human_agent"})
    brains = DialogueFactory(SHOP, nlu, cache_dir=tmp, scratch=tmp / "scratch")
    services = fake_services(config, voice=VOICE, tts=ToneTTS(ms_per_char=12.0))
    store = CallStore(f"sqlite:///{tmp / 'calls.sqlite'}", recordings, tmp / "spool.jsonl")
    recorder = Recorder()
    try:
        async with running_gateway(config, services, brains, observers=[store, recorder]) as gw:
            yield ConsoleBed(gw, store, recordings, recorder)
    finally:
        store.close()
        services.close()
