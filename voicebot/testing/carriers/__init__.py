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

import contextlib
from collections.abc import AsyncIterator

from voicebot.brain import BrainFactory, EchoBrain
from voicebot.config import VoicebotConfig
from voicebot.testing.carriers.base import CarrierCaller, Playout, b64, pcm16
from voicebot.testing.carriers.binary import FreeSwitchCaller, JambonzCaller, VonageCaller
from voicebot.testing.carriers.genesys import GenesysCaller, signed
from voicebot.testing.carriers.mediastreams import ExotelCaller, PlivoCaller, TelnyxCaller
from voicebot.testing.fakes import ToneTTS, ToneVoice, fake_services
from voicebot.testing.gateway import Gateway, Recorder, running_gateway

__all__ = [
    "PEERS", "CarrierCaller", "ExotelCaller", "FreeSwitchCaller", "GenesysCaller", "JambonzCaller", "Playout",
    "PlivoCaller", "TelnyxCaller", "VonageCaller", "b64", "fake_gateway", "pcm16", "signed",
]  # fmt: skip

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
