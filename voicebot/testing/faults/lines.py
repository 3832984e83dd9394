"""Every line the fault campaign can place a call over, by protocol name.

The gateway's own three come from `callers` (Asterisk AudioSocket, Twilio Media Streams, the browser
WebSocket); the seven carriers' come from `voicebot.testing.carriers` (Telnyx, Plivo, Exotel, Vonage,
jambonz, FreeSWITCH `mod_audio_fork`, Genesys AudioConnector), each written from its carrier's reference and
cited there. The carriers' peers are `Caller`s, so every fault (`abort`, `freeze`, `stop_reading`,
`handshake_abort`, keys, speech) plays over them unchanged. A module of its own because the peers are built
on `callers`, which therefore cannot import them.
"""

from __future__ import annotations

from collections.abc import Sequence

from voicebot.testing.carriers import PEERS
from voicebot.testing.faults.callers import CALLERS, Caller
from voicebot.testing.faults.callers import PROTOCOLS as BUILT_IN

LINES: dict[str, type[Caller]] = {**CALLERS, **PEERS}
PROTOCOLS = tuple(LINES)  # the gateway's own three first, then the carriers

__all__ = ["BUILT_IN", "LINES", "PROTOCOLS", "mixed_callers"]


def mixed_callers(count: int, protocols: Sequence[str] = BUILT_IN) -> list[Caller]:
    """`count` new callers, the `protocols` taken in turn."""
    return [LINES[protocols[n % len(protocols)]]() for n in range(count)]
