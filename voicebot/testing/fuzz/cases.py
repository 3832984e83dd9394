"""Hypothesis strategies for hostile gateway input: one drawn `Case` is one fuzz call.

Three protocols: Twilio Media Streams JSON (`/twilio/stream`), Asterisk AudioSocket byte streams (TCP) and
browser `/ws` traffic (binary PCM16 plus JSON controls). Most cases open with a valid prefix (a proper
`start`, the UUID frame, an accepted URL) so the fuzz gets past each parser's first check; the tail mixes
valid messages with mutated, mis-typed, truncated, oversized, deeply nested, non-Unicode and out-of-order
ones. A case ends the protocol's own way (`stop`, a hang-up frame, `{"type": "hangup"}`: "polite"), or by
the client leaving ("close") or vanishing ("drop"), so even a tolerated oddity ends in a known close.
Audio is kept short (about 100 ms per case) so the fuzz exercises parsers, not speech recognition.
"""

from __future__ import annotations

import base64
import copy
import json
import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as with_seed
from hypothesis import strategies as st

LIMIT = 4096  # server.max_message_bytes of the fuzzed gateway (small: oversize inputs stay cheap)
TOKEN = "fuzz-token"
SID = "MZ" + "f" * 32
Protocol = str  # "twilio", "audiosocket", "browser", and the carriers of `voicebot.testing.fuzz.carriers`
Ending = Literal["polite", "close", "drop"]
ENDINGS: st.SearchStrategy[Ending] = st.sampled_from(["polite"] * 6 + ["close", "drop"])
T = TypeVar("T")


@dataclass(frozen=True)
class Case:
    """One fuzz call: `messages` are WebSocket messages (or raw TCP chunks for AudioSocket), sent in order;
    a polite ending then sends `stop` and waits for the server to close."""

    protocol: Protocol
    messages: tuple[str | bytes, ...]
    ending: Ending
    query: str = ""
    stop: str | bytes = b""

    def describe(self, width: int = 100) -> str:
        """Short enough for a failure report, enough to replay by hand."""
        shown = [repr(m[:width]) + (f"…({len(m)})" if len(m) > width else "") for m in self.messages[:12]]
        more = f" +{len(self.messages) - 12} more" if len(self.messages) > 12 else ""
        return f"{self.protocol}?{self.query} [{', '.join(shown)}{more}] {self.ending}"


# --- values ----------------------------------------------------------------------------------------------

EDGE: list[Any] = [
    None, True, False, 0, -1, 1, 8000, "8000", 8000.0, 16000, 2, 2**63, -(2**63), 10**30, 1e308,
    float("inf"), float("-inf"), float("nan"), "", " ", "\x00", "\ud800", "\udfff\ud800", "∞", "🙂",
    "null", "{}", "[]", [], {}, [[]], {"": {}}, "A" * 70, "9" * 5000, "end-of-call", SID, "inbound",
]  # fmt: skip
TEXT = st.text(st.characters(exclude_categories=()), max_size=30) | st.sampled_from(
    ["start", "media", "stop", "mark", "dtmf", "connected", "clear", "hangup", "audio/x-mulaw", SID, "\ud800"]
)
SCALAR = st.none() | st.booleans() | st.integers() | st.floats() | TEXT | st.sampled_from(EDGE)
JSON = st.recursive(
    SCALAR, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(TEXT, kids, max_size=4), max_leaves=10
)


def dumps(value: Any, ascii_only: bool = True) -> str:
    """JSON text as a client would send it; non-ASCII only when it can be sent as UTF-8."""
    text = json.dumps(value, ensure_ascii=ascii_only)
    try:
        text.encode()
    except UnicodeEncodeError:
        return json.dumps(value)
    return text


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@st.composite
def mutated(draw: st.DrawFn, message: dict[str, Any]) -> Any:
    """`message` with one field anywhere replaced, deleted or added, or the whole thing retyped."""
    data = copy.deepcopy(message)
    paths: list[list[str]] = []

    def walk(node: dict[str, Any], path: list[str]) -> None:
        for key, value in node.items():
            paths.append([*path, key])
            if isinstance(value, dict):
                walk(value, [*path, key])

    walk(data, [])
    op = draw(st.sampled_from(["set", "set", "set", "delete", "add", "retype"]))
    if op == "retype" or not paths:
        return draw(JSON)
    *parents, key = draw(st.sampled_from(paths))
    node = data
    for part in parents:
        node = node[part]
    if op == "delete":
        del node[key]
    elif op == "add":
        node[draw(TEXT)] = draw(JSON)
    else:
        node[key] = draw(JSON | st.sampled_from(EDGE))
    return data


@st.composite
def wire(draw: st.DrawFn, value: Any) -> str | bytes:
    """How a JSON message goes on the wire: mostly intact, sometimes truncated, padded, binary, oversized."""
    text = dumps(value, draw(st.booleans()))
    how = draw(st.sampled_from(["json"] * 8 + ["cut", "tail", "binary", "oversize"]))
    if how == "cut":
        return text[: draw(st.integers(0, max(0, len(text) - 1)))]
    if how == "tail":
        return text + draw(st.text(max_size=20))
    if how == "binary":
        return text.encode()
    if how == "oversize" and isinstance(value, dict):
        return dumps({**value, "pad": "x" * draw(st.integers(max(0, LIMIT - len(text)), LIMIT + 2000))})
    return text


def raw_garbage() -> st.SearchStrategy[str | bytes]:
    """Not JSON objects at all: text, bytes, other JSON values, deep nesting (the parser's recursion)."""
    return st.one_of(
        st.text(max_size=60),
        st.binary(max_size=200),
        JSON.map(dumps),
        st.integers(1, LIMIT // 2 - 1).map(nested),
        st.integers(1, LIMIT // 5 - 1).map(lambda d: "{" + '"a":{' * d + "}" * (d + 1)),
        st.integers(LIMIT + 1, 3 * LIMIT).map(lambda n: "x" * n),
    )


# --- Twilio Media Streams --------------------------------------------------------------------------------


def start_message(sid: str = SID, token: Any = TOKEN) -> dict[str, Any]:
    media_format = {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
    start = {
        "streamSid": sid, "accountSid": "AC" + "1" * 32, "callSid": "CA" + "2" * 32, "tracks": ["inbound"],
        "customParameters": {} if token is None else {"token": token}, "mediaFormat": media_format,
    }  # fmt: skip
    return {"event": "start", "sequenceNumber": "1", "start": start, "streamSid": sid}


def same_stream(start: Any) -> Any:
    """A `start` in the tail never names another valid stream: the case's closing `stop` must reach the
    stream that is open (the first `start`)."""
    inner = start.get("start") if isinstance(start, dict) else None
    for holder in (start, inner):
        if isinstance(holder, dict) and isinstance(holder.get("streamSid"), str) and holder["streamSid"]:
            holder["streamSid"] = SID
    return start


def stream_of(start: Any) -> str:
    """The stream a (mutated) first `start` opens, per Twilio's message layout, for the closing `stop`."""
    if not isinstance(start, dict) or start.get("event") != "start":
        return SID
    inner = start.get("start")
    sid = start.get("streamSid") or (inner.get("streamSid") if isinstance(inner, dict) else None)
    return sid if isinstance(sid, str) and sid else SID


def twilio_stop(sid: str = SID) -> str:
    return json.dumps({"event": "stop", "sequenceNumber": "99999", "streamSid": sid, "stop": {}})


@st.composite
def twilio_media(draw: st.DrawFn) -> dict[str, Any]:
    """A valid 20 ms (or shorter) media message with plausible counters."""
    payload = draw(st.binary(min_size=1, max_size=160))
    stamp, n = draw(st.integers(0, 10_000)), draw(st.integers(1, 1000))
    media = {"track": "inbound", "chunk": str(n), "timestamp": str(stamp), "payload": _b64(payload)}
    return {"event": "media", "sequenceNumber": str(n + 1), "streamSid": SID, "media": media}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


BAD_BASE64 = ["not base64!", "AAA", "A", "====", "AA==AA==", "%%%", "QUJD\n", "QUJD" * 2000, "", "🙂"]


@st.composite
def twilio_message(draw: st.DrawFn, gentle: bool = False) -> str | bytes:
    """One message after `start`: valid, mutated in any field, for another stream, or no message at all;
    `gentle`: the kinds a stream mostly survives (intact JSON objects), so the fuzz reaches deep."""
    valid = draw(
        st.one_of(
            twilio_media(),
            st.sampled_from(sorted("0123456789*#ABCD")).map(
                lambda d: {"event": "dtmf", "streamSid": SID, "dtmf": {"track": "inbound_track", "digit": d}}
            ),
            TEXT.map(lambda name: {"event": "mark", "streamSid": SID, "mark": {"name": name}}),
            st.just({"event": "connected", "protocol": "Call", "version": "1.0.0"}),
            st.just(start_message()),
        )
    )
    kinds = ["valid", "mutated", "mutated", "payload", "sid", "event"] + ["deep", "raw"] * (not gentle)
    kind = draw(st.sampled_from(kinds))
    if kind == "valid":
        return dumps(valid) if gentle else draw(wire(valid))
    if kind == "payload":
        media = draw(twilio_media())
        media["media"]["payload"] = draw(st.sampled_from(BAD_BASE64) | JSON)
        return dumps(media)
    if kind == "sid" and valid["event"] != "start":  # another stream's message: ignored
        return dumps({**valid, "streamSid": draw(JSON | st.just(SID[:-1] + "0"))})
    if kind == "event":
        return dumps({**valid, "event": draw(TEXT | st.sampled_from(EDGE))})
    if kind == "deep":  # valid envelope, a deeply nested value inside
        field = draw(st.sampled_from(["media", "dtmf", "mark", "streamSid", "sequenceNumber", "start"]))
        depth = draw(st.integers(1, LIMIT // 2 - 40))
        return f'{{"event":"{valid["event"]}","streamSid":"{SID}","{field}":{nested(depth)}}}'
    if kind == "raw":
        garbage: str | bytes = draw(raw_garbage())
        return garbage
    changed = same_stream(draw(mutated(valid)))
    return dumps(changed) if gentle else draw(wire(changed))


@st.composite
def twilio_case(draw: st.DrawFn) -> Case:
    """`connected`? `start` (valid, bad, or missing), then a tail of fuzzed messages, maybe a flood."""
    messages: list[str | bytes] = []
    if draw(st.booleans()):
        messages.append(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
    token_where = draw(st.sampled_from(["start"] * 6 + ["url", "url", "none", "wrong", "odd"]))
    if token_where in ("none", "wrong", "odd") and draw(st.booleans()):  # keep most calls admitted
        token_where = "start"
    token: Any = {"start": TOKEN, "wrong": TOKEN + "x"}.get(token_where)
    start = start_message(token=draw(JSON) if token_where == "odd" else token)
    begin = draw(st.sampled_from(["start"] * 6 + ["mutated", "mutated", "late", "none"]))
    sid = SID
    if begin == "start":
        messages.append(dumps(start))
    elif begin == "mutated":
        start = draw(mutated(start))
        sid = stream_of(start)
        messages.append(draw(wire(start)))
    tail = draw(st.lists(twilio_message(gentle=True), max_size=8))
    tail += draw(st.lists(twilio_message(), max_size=1))  # whatever it is, it comes last
    if begin == "late":  # media or another event before `start`
        tail.insert(draw(st.integers(1, len(tail))) if tail else 0, dumps(start))
    messages += tail
    if draw(st.integers(0, 9)) == 0:  # a flood of ignored events: more than the server's MAX_IGNORED
        flood = {"event": "shiny-new-event", "streamSid": SID}
        messages += [json.dumps(flood)] * draw(st.integers(20, 60))
    query = {"url": f"token={TOKEN}", "none": ""}.get(token_where, "")
    return Case("twilio", tuple(messages), draw(ENDINGS), query, twilio_stop(sid))


# --- Asterisk AudioSocket --------------------------------------------------------------------------------

HANGUP, UUID, DTMF, AUDIO, ERROR = 0x00, 0x01, 0x03, 0x10, 0xFF
AUDIO_KINDS = range(0x10, 0x19)
KNOWN = {HANGUP, UUID, DTMF, ERROR, *AUDIO_KINDS}


def frame(kind: int, payload: bytes = b"") -> bytes:
    return struct.pack(">BH", kind, len(payload)) + payload


def header(kind: int, size: int) -> bytes:
    return struct.pack(">BH", kind, size)


def _pcm(max_bytes: int = 640) -> st.SearchStrategy[bytes]:
    """Whole 16-bit samples, at most 20 ms at 16 kHz."""
    return st.integers(1, max_bytes // 2).flatmap(lambda n: st.binary(min_size=2 * n, max_size=2 * n))


@st.composite
def audiosocket_frame(draw: st.DrawFn, gentle: bool = False) -> bytes:
    """One frame (or a piece of one) as Asterisk never should, or sometimes would, send it; `gentle`: only
    frames a call survives (audio of any rate and length, DTMF of any byte, a repeated UUID)."""
    kinds = ["audio"] * 4 + ["dtmf", "uuid"]
    kinds += [] if gentle else ["error", "hangup", "unknown", "length", "big", "cut"]
    kind = draw(st.sampled_from(kinds))
    if kind == "audio":
        return frame(draw(st.sampled_from(AUDIO_KINDS)), draw(_pcm()))
    if kind == "dtmf":
        return frame(DTMF, draw(st.sampled_from([b"5", b"#", b"D"]) | st.binary(min_size=1, max_size=1)))
    if kind == "error":
        return frame(ERROR, draw(st.sampled_from([b"", b"\x01", b"\x02", b"\x04"]) | st.binary(max_size=1)))
    if kind == "uuid":
        return frame(UUID, uuid.UUID(int=draw(st.integers(0, 2**128 - 1))).bytes)
    if kind == "hangup":
        return frame(HANGUP, draw(st.binary(max_size=8)))
    if kind == "unknown":
        return frame(draw(st.integers(0, 255).filter(lambda k: k not in KNOWN)), draw(st.binary(max_size=40)))
    if kind == "length":  # a known kind with a length it must not have
        k = draw(st.sampled_from([UUID, DTMF, ERROR, AUDIO, 0x12, 0x18]))
        size = draw(st.integers(0, 64).filter(lambda n: not _fits(k, n)))
        return frame(k, bytes(size))
    if kind == "big":  # a length over the limit, with some of its payload
        return header(draw(st.sampled_from(sorted(KNOWN))), draw(st.integers(LIMIT + 1, 65535))) + bytes(
            draw(st.integers(0, 600))
        )
    data = frame(draw(st.sampled_from(sorted(KNOWN))), draw(_pcm()))  # cut short: the rest never comes
    return data[: draw(st.integers(1, len(data) - 1))]


def _fits(kind: int, size: int) -> bool:
    return {UUID: size == 16, DTMF: size == 1, ERROR: size <= 1}.get(kind, size > 0 and size % 2 == 0)


@st.composite
def audiosocket_case(draw: st.DrawFn) -> Case:
    """The UUID frame first (usually), then a tail of fuzzed frames and raw bytes, in arbitrary chunks."""
    first = draw(st.sampled_from(["uuid"] * 7 + ["frame", "short uuid", "none"]))
    stream = b""
    if first == "uuid":
        stream += frame(UUID, uuid.UUID(int=draw(st.integers(0, 2**128 - 1))).bytes)
    elif first == "frame":
        stream += draw(audiosocket_frame())
    elif first == "short uuid":
        stream += frame(UUID, draw(st.binary(max_size=40).filter(lambda b: len(b) != 16)))
    for _ in range(draw(st.integers(0, 8))):
        stream += draw(audiosocket_frame(gentle=True))
    if draw(st.booleans()):  # then one more, hostile or not
        stream += draw(audiosocket_frame() | st.binary(max_size=40))
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=4)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True) if b > a]
    return Case("audiosocket", tuple(chunks), draw(ENDINGS), stop=frame(HANGUP))


# --- browser /ws -----------------------------------------------------------------------------------------

BROWSER_HANGUP = json.dumps({"type": "hangup"})


@st.composite
def browser_message(draw: st.DrawFn) -> str | bytes:
    """Binary audio of any length, and text that is or is not a control message."""
    kind = draw(st.sampled_from(["pcm", "pcm", "odd", "big", "empty", "control", "mutated", "raw"]))
    if kind == "pcm":
        return draw(_pcm())
    if kind == "odd":
        return draw(st.binary(min_size=1, max_size=LIMIT).filter(lambda b: len(b) % 2 == 1))
    if kind == "big":
        return bytes(draw(st.integers(LIMIT + 1, LIMIT + 3000)))
    if kind == "empty":
        return b"" if draw(st.booleans()) else ""
    if kind == "control":
        digit = draw(st.sampled_from(["5", "#", "A", 5, "55", "", "x", None, "٣", "\ud800"]) | JSON)
        return dumps({"type": "dtmf", "digit": digit})
    if kind == "mutated":
        valid = draw(st.sampled_from([{"type": "dtmf", "digit": "7"}, {"type": "hangup"}]))
        return draw(wire(draw(mutated(valid))))
    garbage: str | bytes = draw(raw_garbage())
    return garbage


@st.composite
def browser_case(draw: st.DrawFn) -> Case:
    """A `/ws` URL (rate and token in or out of range) and a tail of fuzzed messages."""
    rates = [8000, 16000, 16000, 16000, 22050, 24000, 44100, 48000, 11025, None]
    rate = draw(st.sampled_from(rates))
    if rate is None:  # out of range, mostly
        rate = draw(st.integers(-(2**63), 2**63))
    bad_token = draw(st.sampled_from(["", "&token=nope", "&token=%F0%9F%99%82"]))
    token = bad_token if draw(st.sampled_from([True] + [False] * 9)) else f"&token={TOKEN}"
    messages = tuple(draw(st.lists(browser_message(), max_size=8)))
    return Case("browser", messages, draw(ENDINGS), f"rate={rate}{token}", BROWSER_HANGUP)


STRATEGIES: dict[Protocol, Callable[[], st.SearchStrategy[Case]]] = {
    "twilio": twilio_case,
    "audiosocket": audiosocket_case,
    "browser": browser_case,
}


def generate(strategy: st.SearchStrategy[T], count: int, seed: int | None = None) -> list[T]:
    """`count` examples drawn by Hypothesis (derandomized unless `seed`), generation phase only: the
    checking happens against the live server afterwards, not inside Hypothesis."""
    drawn: list[T] = []

    @settings(
        max_examples=count,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        derandomize=seed is None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(example: T) -> None:
        drawn.append(example)

    if seed is not None:
        collect = with_seed(seed)(collect)
    collect()
    return drawn
