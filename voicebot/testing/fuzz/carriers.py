"""Hypothesis strategies for hostile carrier streams: Telnyx, Plivo, Exotel (JSON with base64 audio) and
Vonage, jambonz, FreeSWITCH (a JSON opening, then binary audio).

The valid messages come from the carriers' own peers (`voicebot.testing.carriers`), so the fuzz starts
from what each carrier really sends and then breaks it the ways `cases` breaks Twilio's: fields mutated,
retyped, deleted; truncated, padded, oversized, deeply nested, binary where text is due, text where audio
is due; audio of odd and oversized lengths; events out of order (audio before the opening, a second
opening); bad DTMF and unknown marks; floods of ignored events; tokens missing, wrong or odd. A case ends
the carrier's way ("polite"): its `stop` where it has one, else the carrier closing the socket a moment
later (which is how Plivo, Vonage, jambonz and FreeSWITCH say the caller hung up); or the caller leaving at
once, or vanishing.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from hypothesis import strategies as st

from voicebot.testing.carriers import PEERS, CarrierCaller
from voicebot.testing.fuzz.cases import (
    ENDINGS,
    JSON,
    LIMIT,
    TEXT,
    TOKEN,
    Case,
    dumps,
    mutated,
    nested,
    raw_garbage,
    wire,
)

if TYPE_CHECKING:
    from voicebot.testing.gateway import Gateway

BINARY = frozenset({"vonage", "jambonz", "freeswitch", "genesys"})
IN_URL = frozenset({"genesys"})  # its token is a header the fuzz client does not send: the URL's instead
DIGITS = [*"0123456789*#ABCD", "55", "", "x", "٣", "\ud800", 5, None, [], {}]


def peer(protocol: str, token: str | None = TOKEN) -> CarrierCaller:
    """A carrier peer with fixed ids, for drawing its messages (it never connects)."""
    made = PEERS[protocol]({"customer": "fuzz"}, token)
    made.id, made.call_ref = "fuzz-stream-0001", "fuzz-call-0001"
    return made


def _tokened(protocol: str, first: str | bytes, token: Any) -> str | bytes:
    """The binary family's opening with `token` (any JSON value) where the stream carries one."""
    data = json.loads(first)
    data["token"] = token
    return dumps(data)


@st.composite
def carrier_message(draw: st.DrawFn, protocol: str, gentle: bool = False) -> str | bytes:
    """One message after the opening: valid, broken, or not a message at all; `gentle`: the kinds a stream
    mostly survives, so the fuzz reaches deep."""
    talk = peer(protocol)
    samples = draw(st.integers(1, 160))
    pcm = np.frombuffer(draw(st.binary(min_size=2 * samples, max_size=2 * samples)), "<i2").astype(np.int16)
    valid: str | bytes = draw(
        st.sampled_from(
            [
                talk.audio(pcm),
                talk.key(str(draw(st.sampled_from(DIGITS[:16])))),
                talk.echo(draw(TEXT), draw(st.booleans())) or "{}",
                talk.opening()[0],
            ]
        )
    )
    kinds = ["valid", "valid", "mutated", "mutated", "digit", "event", "audio"]
    kind = draw(st.sampled_from(kinds + ["deep", "raw", "big"] * (not gentle)))
    if kind == "valid":
        return valid
    if kind == "digit":
        data = json.loads(talk.key("5"))
        key = "digit" if "digit" in data else "dtmf"
        if isinstance(data.get("parameters"), dict):  # Genesys
            data["parameters"]["digit"] = draw(st.sampled_from(DIGITS) | JSON)
        elif isinstance(data.get("dtmf"), dict):
            data["dtmf"]["digit"] = draw(st.sampled_from(DIGITS) | JSON)
        else:
            data[key] = draw(st.sampled_from(DIGITS) | JSON)
        return dumps(data)
    if kind == "event":
        field = (
            "type" if protocol in ("jambonz", "freeswitch", "genesys") and draw(st.booleans()) else "event"
        )
        return dumps({field: draw(TEXT | JSON)})
    if kind == "audio":  # odd, empty or oversized audio, binary where JSON is due
        size = draw(st.sampled_from([0, 1, 3, 159, 321, LIMIT - 1, LIMIT + 1, LIMIT + 3000]))
        return bytes(size) if protocol in BINARY or draw(st.booleans()) else talk.audio(pcm)[:size]
    if kind == "big":
        return bytes(draw(st.integers(LIMIT + 1, 2 * LIMIT - 1)))
    if kind == "deep":
        return f'{{"event":"media",{dumps(draw(TEXT))}:{nested(draw(st.integers(1, LIMIT // 2 - 40)))}}}'
    if kind == "raw":
        garbage: str | bytes = draw(raw_garbage())
        return garbage
    if isinstance(valid, bytes):
        return valid[: draw(st.integers(0, len(valid)))]
    changed = draw(mutated(json.loads(valid)))
    return dumps(changed) if gentle else draw(wire(changed))


def carrier_case(protocol: str) -> Callable[[], st.SearchStrategy[Case]]:
    """The `Case` strategy for `protocol`."""

    @st.composite
    def case(draw: st.DrawFn) -> Case:
        token_where = draw(st.sampled_from(["stream"] * 6 + ["url", "url", "none", "wrong", "odd"]))
        if token_where in ("none", "wrong", "odd") and draw(st.booleans()):  # keep most calls admitted
            token_where = "stream"
        token: Any = {"stream": TOKEN, "wrong": TOKEN + "x"}.get(token_where)
        talk = peer(protocol, token if isinstance(token, str) else None)
        opening = talk.opening()
        if protocol in IN_URL and token_where == "stream":
            token_where = "url"
        if protocol in BINARY - IN_URL and (token_where == "odd" or token is not None):  # jambonz: metadata
            opening = [_tokened(protocol, opening[0], draw(JSON) if token_where == "odd" else token)]
        begin = draw(st.sampled_from(["valid"] * 6 + ["mutated", "mutated", "late", "none"]))
        messages: list[str | bytes] = []
        if begin == "valid":
            messages += opening
        elif begin == "mutated":
            messages += [*opening[:-1], draw(wire(draw(mutated(json.loads(opening[-1])))))]
        tail = draw(st.lists(carrier_message(protocol, gentle=True), max_size=8))
        tail += draw(st.lists(carrier_message(protocol), max_size=1))  # whatever it is, it comes last
        if begin == "late":  # audio or another event before the opening
            at = draw(st.integers(1, len(tail))) if tail else 0
            tail[at:at] = opening
        messages += tail
        if draw(st.integers(0, 9)) == 0:  # a flood of ignored events: more than the server's MAX_IGNORED
            messages += [dumps({"event": "shiny-new-event", "type": "x"})] * draw(st.integers(20, 60))
        query = f"token={TOKEN}" if token_where == "url" else ""
        stop = talk.bye()
        ending = draw(ENDINGS)
        return Case(protocol, tuple(messages), ending, query, stop or b"")

    return case


CARRIER_STRATEGIES: dict[str, Callable[[], st.SearchStrategy[Case]]] = {p: carrier_case(p) for p in PEERS}
PATHS = {protocol: kind.path for protocol, kind in PEERS.items()}


# --- good calls alongside the fuzz -------------------------------------------------------------------------


class _At:
    """Where a peer dials: what `CarrierCaller.connect` reads of a `Gateway`."""

    def __init__(self, http: str) -> None:
        self.http = http


async def good_carrier(protocol: str, http: str, pcm: Any, tally: Any, timeout_s: float) -> str | None:
    """A call of `protocol` that asks its question, hears half a second of the reply, hangs up the carrier's
    way; None when all went right (the question heard, an echo reply, the call ended as a hang-up)."""
    marker = f"good-{uuid.uuid4().hex[:12]}"
    caller = PEERS[protocol]({"customer": marker}, TOKEN)
    await caller.connect(cast("Gateway", _At(http)))  # it reads `http` only
    try:
        caller.say(pcm)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while caller.bot_frames < 25 and loop.time() < deadline and not caller.closed.is_set():
            await asyncio.sleep(0.05)
        await caller.hang_up()
    finally:
        await caller.close()
    call = next(
        (c for c, meta in tally.meta.items() if meta.get("parameters", {}).get("customer") == marker), None
    )
    for _ in range(500):
        if call is None or call in tally.ends:
            break
        await asyncio.sleep(0.01)
    heard, said = " ".join(tally.heard.get(call, [])), " ".join(tally.said.get(call, []))
    if "agent" not in heard.lower() or not said.startswith("You said"):
        return f"heard {heard!r}, replied {said!r}"
    expected = "caller hung up" if caller.bye() is not None else "caller disconnected"
    return None if tally.ends.get(call) == expected else f"ended {tally.ends.get(call)!r}"
