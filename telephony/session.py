"""The call-session core that every wire protocol shares.

A protocol module (browser `/ws`, Twilio Media Streams, Asterisk AudioSocket) only translates its wire
format: it implements `Transport` — an `AudioSink` for the bot's voice, a `receive` loop that feeds caller
input into its `Call`, `on_event` for the pipeline events it shows, and `finish` to put its line down.
Everything else lives here once: who may call (token, capacity, per-source limit, shutdown), the limits every
call lives under (message rate, length, a dead line: `telephony.limits`), one `CallPipeline` and one brain
per call, how a call ends and why, and the `CallObserver`s that keep call records.
"""

from __future__ import annotations

import asyncio
import hmac
import inspect
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from telephony.domains import brains_for, served_domain
from telephony.limits import LimitExceeded, MessageLimit
from telephony.logs import CALL_ID
from telephony.recording import AudioTap, CallRecorder, RecordingSink, TappedSink
from voicebot.brain import BrainFactory
from voicebot.config import ServerConfig
from voicebot.frames import PCM, Action, BotReply, CallEnded, Frame
from voicebot.handoff import HandoffSummary
from voicebot.pipeline import CallPipeline, Services
from voicebot.playback import AudioSink

log = logging.getLogger(__name__)

DTMF_DIGITS = frozenset("0123456789*#ABCD")  # the 16 DTMF keys (ITU-T Q.23)
FINISH_LIMIT_S = 15.0  # safety net over a transport's own bounded `finish` (mark wait, transfer hook)
Party = Literal["bot", "caller", "error", "server"]


@dataclass(frozen=True)
class Refusal:
    """Why a call was not admitted; `code` is the WebSocket close code (RFC 6455 §7.4)."""

    code: int
    reason: str


@dataclass(frozen=True)
class Ending:
    """How a call ended: `by` whom, why, the bot's final actions, and a WebSocket close code to use;
    `handoff`: a transfer's summary, for the protocols that can carry it on the line."""

    reason: str
    by: Party
    actions: tuple[Action, ...] = ()
    code: int = 1000
    handoff: HandoffSummary | None = None

    @property
    def transfer(self) -> Action | None:
        return next((a for a in self.actions if a.kind == "transfer"), None)

    def describe(self) -> str:
        """The one-line reason call records get; a transfer names its target."""
        transfer = self.transfer
        if transfer is not None:
            return f"transfer to {transfer.target or 'an agent'}: {self.reason}"
        return self.reason


@dataclass(frozen=True)
class WireStats(Frame):
    """Per-call transport counters (frames, gaps, bad messages, marks), given to observers before `on_end`."""

    protocol: str
    stats: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class CallOutcome(Frame):
    """How the call ended, given to observers just before `on_end`, whose reason alone does not say who
    ended it (metrics count calls by that)."""

    ending: Ending


class CallObserver(Protocol):
    """Call records: told when a call starts, of every event, and how it ended.

    Methods may be plain or `async def`; they are called (and awaited) in order on the call's event path,
    so they must not block: queue slow I/O elsewhere. Exceptions are logged and never reach the call.
    Optional hooks some observers have: `save_audio` (the call's two tracks) and `on_refusal(Refusal)`
    (a call not admitted; plain, not async).
    """

    def on_start(self, call_id: str, protocol: str, meta: dict[str, Any]) -> Awaitable[None] | None: ...

    def on_event(self, call_id: str, frame: Frame) -> Awaitable[None] | None: ...

    def on_end(self, call_id: str, reason: str) -> Awaitable[None] | None: ...


class NullObserver:
    """The default observer: keeps nothing."""

    def on_start(self, call_id: str, protocol: str, meta: dict[str, Any]) -> None:
        pass

    def on_event(self, call_id: str, frame: Frame) -> None:
        pass

    def on_end(self, call_id: str, reason: str) -> None:
        pass


class Transport(AudioSink, Protocol):
    """One protocol's side of one call; as the pipeline's `AudioSink` (`voicebot.playback`) it plays the
    bot's audio out and says how much of it the caller has heard."""

    protocol: str
    stats: dict[str, float]

    async def receive(self, call: Call) -> Ending:
        """Feed caller input into `call` until the caller leaves or breaks the protocol."""
        ...

    async def on_event(self, frame: Frame) -> None:
        """A pipeline event (transcript, reply, ...); show it if the protocol can. Must not raise."""
        ...

    async def finish(self, ending: Ending) -> None:
        """Put the line down the protocol's way (close, hang-up frame), bounded in time. Must not raise."""
        ...


class CallHub:
    """Server-wide state: admission, the running calls, observers, and draining on shutdown."""

    def __init__(
        self,
        config: ServerConfig,
        brain_factory: BrainFactory,
        observers: Sequence[CallObserver] = (),
        services: Services | None = None,
    ) -> None:
        self.config = config
        self.brain_factory = brain_factory
        self.observers: list[CallObserver] = list(observers)
        self.services = services
        self.calls: dict[str, Call] = {}
        self.accepting = True

    def refusal(
        self,
        token: str | None,
        *,
        check_token: bool = True,
        extra: Refusal | None = None,
        source: str | None = None,
    ) -> Refusal | None:
        """Why a new call may not start (token, then `extra` protocol checks, then capacity, then the
        per-source limit when a `source` address is given), or None.

        A refusal is final: callers close the line with it, so observers' `on_refusal` hear of it here.
        """
        refusal = self._refusal(token, check_token, extra, source)
        hooks = [getattr(o, "on_refusal", None) for o in self.observers] if refusal is not None else []
        for hook in filter(None, hooks):
            try:
                hook(refusal)
            except Exception:
                log.exception("call observer on_refusal failed")
        return refusal

    def _refusal(
        self, token: str | None, check_token: bool, extra: Refusal | None, source: str | None
    ) -> Refusal | None:
        expected = self.config.token
        given = (token or "").encode(errors="replace")  # a caller's JSON escapes can make lone surrogates
        if check_token and expected and not hmac.compare_digest(given, expected.encode()):
            return Refusal(1008, "missing or wrong token")
        if extra is not None:
            return extra
        if not self.accepting:
            return Refusal(1001, "server shutting down, try again later")
        if len(self.calls) >= self.config.max_calls:
            return Refusal(1013, "too many calls, try again later")
        per_source = self.config.max_calls_per_source
        if source is not None and sum(c.source == source for c in self.calls.values()) >= per_source:
            return Refusal(1008, f"too many calls from {source} (limit {per_source})")
        return None

    def open(
        self,
        transport: Transport,
        channel_rate: int,
        meta: dict[str, Any] | None = None,
        source: str | None = None,
    ) -> Call:
        """Register a call admitted by `refusal` (no await in between, so capacity holds)."""
        if self.services is None:
            raise RuntimeError("the gateway has not loaded its models yet")
        call = Call(self, transport, channel_rate, dict(meta or {}), source)
        self.calls[call.id] = call
        return call

    def handoff_of(self, call_id: str) -> HandoffSummary | None:
        """The summary an observer made of the call's transfer (`telephony.handoff`), if any."""
        finders = (getattr(o, "handoff_of", None) for o in self.observers)
        return next(filter(None, (find(call_id) for find in finders if find is not None)), None)

    async def observe(self, method: str, call_id: str, *args: Any) -> None:
        for observer in self.observers:
            if not hasattr(observer, method):  # optional hooks (save_audio) only some observers have
                continue
            try:
                result = getattr(observer, method)(call_id, *args)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("call observer %s.%s failed", type(observer).__name__, method)

    async def drain(self, timeout: float, abort: Callable[[], bool] = lambda: False) -> None:
        """Stop admitting calls, give running ones `timeout` seconds, then end the rest."""
        self.accepting = False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if self.calls:
            log.info("draining %d call(s) for up to %.0f s", len(self.calls), timeout)
        while self.calls and loop.time() < deadline and not abort():
            await asyncio.sleep(0.05)
        for call in list(self.calls.values()):
            call.end("server shutting down")
        deadline = loop.time() + self.config.hangup_grace_s + FINISH_LIMIT_S
        while self.calls and loop.time() < deadline and not abort():
            await asyncio.sleep(0.05)


class Call:
    """One live call: its pipeline and brain, the tasks that feed and watch them, and how it ended."""

    def __init__(
        self,
        hub: CallHub,
        transport: Transport,
        channel_rate: int,
        meta: dict[str, Any],
        source: str | None = None,
    ) -> None:
        assert hub.services is not None
        self.hub = hub
        self.id = uuid.uuid4().hex
        self.transport = transport
        self.meta = meta
        self.source = source
        self.started = self.last_input = time.monotonic()
        self._messages = MessageLimit(hub.config.max_messages_per_s, self.started)
        keep = hub.config.recordings_dir is not None
        self.recorder = CallRecorder(channel_rate) if keep else None
        sink = RecordingSink(transport, self.recorder) if self.recorder else transport
        self.taps: list[AudioTap] = []  # who hears the call's audio as it passes (the console's listen-in)
        partials = getattr(transport, "shows_partials", False)  # only the browser page shows them
        tapped = TappedSink(sink, self.taps)
        domain = served_domain(hub.brain_factory, meta.get("domain"))  # the one it asked for, or the default
        if domain is not None:
            meta["domain"] = domain  # recorded: the console learns from the call into this domain's data
        brain = brains_for(hub.brain_factory, domain)()
        self.pipe = CallPipeline(hub.services, brain, tapped, channel_rate, True, partials)
        self._stop = asyncio.Event()
        self._stop_reason = "server shutting down"
        self._stop_actions: tuple[Action, ...] = ()
        self._fallback: asyncio.TimerHandle | None = None  # an operator's transfer, should its notice be lost

    def inbound(self) -> None:
        """Every message a transport reads passes here first: the dead-line clock restarts, and a flood
        raises `LimitExceeded`, which ends the call (see `_read`)."""
        self.last_input = now = time.monotonic()
        self._messages.check(now)

    async def caller_audio(self, pcm: PCM) -> None:
        """Caller audio in, at the call's channel rate."""
        if self.recorder is not None:
            self.recorder.caller(pcm)
        for tap in self.taps:
            tap.caller(pcm)
        await self.pipe.caller_audio(pcm)

    async def send_dtmf(self, digit: str) -> None:
        await self.pipe.send_dtmf(digit)

    async def hangup(self, reason: str) -> None:
        """The caller hung up but the line stays open (browser control message): the pipeline says bye."""
        await self.pipe.hangup(reason)

    async def note(self, frame: Frame) -> None:
        """A transport-level event (`WireStats`, `CallOutcome`) for the call's observers only."""
        await self.hub.observe("on_event", self.id, frame)

    def end(self, reason: str, actions: tuple[Action, ...] = ()) -> None:
        """Ask the call to end from the server side (shutdown; `actions`: a transfer the line should do)."""
        self._stop_reason, self._stop_actions = reason, actions
        self._stop.set()

    async def transfer(self, target: str, reason: str, notice: str, fallback_s: float = 20.0) -> None:
        """An operator hands the call to a person: the bot is cut and says `notice` (uncuttable), then the
        call ends as a bot's own transfer does; should the notice be lost, it ends so after `fallback_s`."""
        action = Action("transfer", target=target, reason=reason, code="operator")
        await self.pipe.speak.interrupt()
        await self.pipe.speak.put(BotReply(notice, (action,), interruptible=False, cause="event"))
        if self._fallback is None:
            self._fallback = asyncio.get_running_loop().call_later(fallback_s, self.end, reason, (action,))

    async def run(self) -> Ending:
        """Run the call to its end; returns how it ended. Never raises for the call's own failures.

        `CALL_ID` is set throughout, so every log line of the call (its tasks copy it) names the call.
        """
        call_id = CALL_ID.set(self.id)
        try:
            return await self._run()
        finally:
            CALL_ID.reset(call_id)

    async def _run(self) -> Ending:
        await self.hub.observe("on_start", self.id, self.transport.protocol, self.meta)
        ending = Ending("call failed to start", "error", code=1011)
        tasks: list[asyncio.Task[Any]] = []
        try:
            await self.pipe.start()
            events = asyncio.create_task(self._pump(), name=f"call-{self.id}-events")
            reader = asyncio.create_task(self._read(), name=f"call-{self.id}-reader")
            watch = asyncio.create_task(self._watch(), name=f"call-{self.id}-watch")
            stop = asyncio.create_task(self._stop.wait())
            tasks = [events, reader, watch, stop]
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if events.done():
                ending = events.result()
            else:
                ending = next((t.result() for t in (reader, watch) if t.done()), None) or Ending(
                    self._stop_reason, "server", self._stop_actions, code=1001
                )
                await self._wind_down(ending.reason, events)
        except asyncio.CancelledError:  # the server is going down without a drain (a second Ctrl-C)
            ending = Ending("call cancelled: server stopping", "server", code=1001)
            raise
        except Exception:
            log.exception("%s call %s failed", self.transport.protocol, self.id)
        finally:
            try:  # the reader still runs meanwhile: Twilio's final mark echo comes in through it
                await asyncio.wait_for(self.transport.finish(ending), FINISH_LIMIT_S)
            except Exception:
                log.exception("%s call %s: finishing failed", self.transport.protocol, self.id)
            for task in tasks:
                task.cancel()
            if self._fallback is not None:
                self._fallback.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.pipe.close()
            self.hub.calls.pop(self.id, None)
            await self.note(WireStats(protocol=self.transport.protocol, stats=dict(self.transport.stats)))
            await self.note(CallOutcome(ending))
            if self.recorder is not None:
                await self.hub.observe("save_audio", self.id, *self.recorder.tracks(), self.recorder.rate)
            await self.hub.observe("on_end", self.id, ending.describe())
            log.info(
                "%s call %s ended by %s: %s", self.transport.protocol, self.id, ending.by, ending.describe()
            )
        return ending

    async def _pump(self) -> Ending:
        """Pipeline events to observers and the transport, until the pipeline says the call is over."""
        while True:
            frame = await self.pipe.events.get()
            await self.hub.observe("on_event", self.id, frame)
            try:
                await self.transport.on_event(frame)
            except Exception:
                log.exception("%s call %s: event not delivered", self.transport.protocol, self.id)
            if isinstance(frame, CallEnded):
                by: Party = "bot" if frame.actions else "caller"
                return Ending(frame.reason, by, frame.actions, handoff=self.hub.handoff_of(self.id))

    async def _read(self) -> Ending:
        try:
            return await self.transport.receive(self)
        except LimitExceeded as exc:
            log.warning("%s call %s: %s", self.transport.protocol, self.id, exc)
            return Ending(f"limit exceeded: {exc}", "error", code=1008)
        except Exception as exc:  # a transport bug ends this call only
            log.exception("%s call %s: receive failed", self.transport.protocol, self.id)
            return Ending(f"internal error: {type(exc).__name__}", "error", code=1011)

    async def _watch(self) -> Ending:
        """The call's clocks: its length (`max_call_s`) and a line with nothing coming in (`idle_timeout_s`,
        e.g. a half-open TCP connection that will never send a FIN)."""
        config = self.hub.config
        while True:
            now = time.monotonic()
            if now - self.started >= config.max_call_s:
                return Ending(f"call length limit reached ({config.max_call_s:g} s)", "server", code=1008)
            if now - self.last_input >= config.idle_timeout_s:
                return Ending(f"line dead: nothing from the caller for {config.idle_timeout_s:g} s", "error")
            next_check = min(self.started + config.max_call_s, self.last_input + config.idle_timeout_s)
            await asyncio.sleep(min(1.0, max(0.01, next_check - now)))

    async def _wind_down(self, reason: str, events: asyncio.Task[Ending]) -> None:
        """The line is gone or going: let the brain hear the hang-up and observers see `CallEnded`."""
        await self.pipe.hangup(reason)
        try:
            await asyncio.wait_for(asyncio.shield(events), self.hub.config.hangup_grace_s)
        except TimeoutError:
            log.warning("%s call %s: pipeline did not end in time", self.transport.protocol, self.id)
