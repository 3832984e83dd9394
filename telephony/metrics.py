"""Prometheus metrics for the gateway, served at `/metrics` in the text exposition format 0.0.4.

`MetricsObserver` is a `CallObserver` that every app installs first in its hub, plus a refusal hook the hub
calls. Each app has its own `CollectorRegistry`, so several gateways in one process (tests) never share
counts. Labels hold only bounded values (protocols, end kinds, close codes, stage names): no call ids, no
caller data.

Metrics:
- `voicebot_active_calls{protocol}` (gauge): calls running now; `browser`, `twilio`, `audiosocket` and the
  carriers of `telephony.routes` (`telnyx`, `plivo`, `exotel`, `vonage`, `jambonz`, `freeswitch`, `genesys`).
- `voicebot_calls_total{protocol,end}` (counter): finished calls by who ended them: `bot` (goodbye),
  `caller` (hung up), `error` (a transport or protocol failure), `server` (shutdown), `transfer` (the bot
  handed the call to an agent).
- `voicebot_refused_calls_total{code}` (counter): calls not admitted, by WebSocket close code: 1008 wrong
  token, 1003 bad rate, 1001 shutting down, 1013 at `server.max_calls`.
- `voicebot_turns_total` (counter): bot turns played or cut (each `TurnDone`, the greeting included).
- `voicebot_turn_latency_seconds{stage}` (histogram, 10 ms-5 s buckets): the turn's `timings_ms` by stage:
  `endpoint` (end of speech → end detected), `asr` (end detected → transcript; `asr_decode` the model part),
  `nlu`, `dialogue_step`, `action` (back-end calls), `dialogue` (the whole brain, NLU and actions
  included), `tts_first_audio` (reply → its first audio frame sent), and `voice_to_voice` = endpoint +
  asr + dialogue + tts_first_audio: caller stops talking → bot starts. `dialogue` already holds `nlu`
  and `action`, so the sum adds those parts only when a brain reports no `dialogue` total.
- `voicebot_barge_ins_total` (counter): bot replies cut because the caller spoke (not by a hang-up).
- `voicebot_holds_total{ended}` (counter): callers put on hold by a slow turn (`voicebot.stages.hold`), by
  what ended the hold: `answer`, `barge_in`, `hang_up`, `no_answer`, `call_ended`; with
  `voicebot_hold_wait_seconds` (histogram, the turn-latency buckets): from the brain starting on the turn to
  the end of the hold. A rising rate says the back end is getting slow.
- `voicebot_stage_errors_total{stage}` (counter): `StageError`s (a stage failed on one item; the call
  went on).
- `voicebot_transfers_total` (counter): transfer actions calls ended with (one per action, as call
  records keep them).
- `voicebot_loop_lag_seconds` (histogram, 5 ms-1 s buckets): how late the event loop ran a 25 ms heartbeat,
  while the stall watcher is on (`server.stall_warn_ms`). Every call's audio is paced by that loop, so a
  lag over 20 ms is a gap over 40 ms between two bot frames, even when it is too short to be warned about.
- `voicebot_heap_bytes{kind}` (gauge, glibc only): the process's C heap at scrape time, `in_use` by live
  allocations and `free` held by malloc for reuse; a climbing `in_use` is a leak, a climbing `free` is
  fragmentation (`voicebot.memory`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from telephony.session import CallOutcome, Refusal
from voicebot.frames import BotReply, CallEnded, Frame, HoldReport, SpeechStarted, StageError, TurnDone
from voicebot.memory import heap_usage

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PROTOCOLS = (
    "browser",
    "twilio",
    "audiosocket",
    "telnyx",
    "plivo",
    "exotel",
    "vonage",
    "jambonz",
    "freeswitch",
    "genesys",
)
STAGES = ("endpoint", "asr", "asr_decode", "nlu", "dialogue_step", "action", "dialogue", "tts_first_audio")
BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)
LAG_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.04, 0.06, 0.1, 0.25, 1.0)


def voice_to_voice_ms(timings: dict[str, Any]) -> float | None:
    """Caller stops talking → bot starts answering, from a turn's timings; None for turns with no speech
    (greeting, keypad, no-input) or no audio (an empty reply)."""
    needed = ("endpoint", "asr", "tts_first_audio")
    if not all(isinstance(timings.get(k), int | float) for k in needed):
        return None
    parts = ("dialogue",) if "dialogue" in timings else ("nlu", "dialogue_step", "action")
    return sum(float(timings[k]) for k in needed) + sum(float(timings.get(k) or 0.0) for k in parts)


@dataclass
class _Live:
    """What one running call's metrics need to remember between events."""

    protocol: str
    speaking: bool = False  # a bot reply is playing
    caller_spoke: bool = False  # the caller started talking during it
    cut_pending: bool = False  # a reply was cut before any caller speech was seen: barge-in or hang-up?


class MetricsObserver:
    """Counts calls, turns, latencies and failures into its own registry (see the module docstring)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        reg = self.registry
        self.active = Gauge("voicebot_active_calls", "Calls running now", ["protocol"], registry=reg)
        self.calls = Counter(
            "voicebot_calls", "Finished calls, by who ended them", ["protocol", "end"], registry=reg
        )
        self.refused = Counter("voicebot_refused_calls", "Calls not admitted", ["code"], registry=reg)
        self.turns = Counter("voicebot_turns", "Bot turns played or cut", registry=reg)
        self.latency = Histogram(
            "voicebot_turn_latency_seconds", "Turn latency by stage", ["stage"], buckets=BUCKETS, registry=reg
        )
        self.barge_ins = Counter("voicebot_barge_ins", "Bot replies cut by caller speech", registry=reg)
        self.stage_errors = Counter("voicebot_stage_errors", "Stage failures", ["stage"], registry=reg)
        self.holds = Counter("voicebot_holds", "Callers put on hold by a slow turn", ["ended"], registry=reg)
        self.hold_wait = Histogram(
            "voicebot_hold_wait_seconds", "Brain start to end of hold", buckets=BUCKETS, registry=reg
        )
        self.transfers = Counter("voicebot_transfers", "Transfer actions calls ended with", registry=reg)
        self.loop_lag = Histogram(
            "voicebot_loop_lag_seconds", "Event-loop heartbeat lateness", buckets=LAG_BUCKETS, registry=reg
        )
        self.heap = Gauge("voicebot_heap_bytes", "C heap (glibc malloc)", ["kind"], registry=reg)
        for protocol in PROTOCOLS:  # a scrape shows 0, not nothing, before the first call
            self.active.labels(protocol)
        self._live: dict[str, _Live] = {}

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format (`CONTENT_TYPE`)."""
        heap = heap_usage()
        if heap is not None:
            self.heap.labels("in_use").set(heap.in_use)
            self.heap.labels("free").set(heap.free)
        return generate_latest(self.registry)

    def on_refusal(self, refusal: Refusal) -> None:
        self.refused.labels(str(refusal.code)).inc()

    def on_start(self, call_id: str, protocol: str, meta: dict[str, Any]) -> None:
        self._live[call_id] = _Live(protocol)
        self.active.labels(protocol).inc()

    def on_event(self, call_id: str, frame: Frame) -> None:
        live = self._live.get(call_id)
        if live is None:
            return
        if isinstance(frame, TurnDone):
            self._turn(frame.record.timings_ms)
        elif isinstance(frame, StageError):
            self.stage_errors.labels(frame.stage).inc()
        elif isinstance(frame, HoldReport):
            self.holds.labels(frame.ended).inc()
            self.hold_wait.observe(frame.waited_ms / 1000.0)
        elif isinstance(frame, CallEnded):
            self.transfers.inc(sum(a.kind == "transfer" for a in frame.actions))
        elif isinstance(frame, CallOutcome):
            ending = frame.ending
            self.calls.labels(live.protocol, "transfer" if ending.transfer else ending.by).inc()
        self._track_barge_in(live, frame)

    def on_end(self, call_id: str, reason: str) -> None:
        live = self._live.pop(call_id, None)
        if live is not None:
            self.active.labels(live.protocol).dec()

    def _turn(self, timings: dict[str, float]) -> None:
        self.turns.inc()
        for stage in STAGES:
            value = timings.get(stage)
            if isinstance(value, int | float):
                self.latency.labels(stage).observe(max(float(value), 0.0) / 1000.0)
        total = voice_to_voice_ms(timings)
        if total is not None:
            self.latency.labels("voice_to_voice").observe(total / 1000.0)

    def _track_barge_in(self, live: _Live, frame: Frame) -> None:
        """A cut reply (`TurnDone.record.interrupted`) is a barge-in only if the caller spoke; a hang-up
        cuts it too. The caller's `SpeechStarted` may reach observers just before or just after the cut
        turn, so either order counts, and a `CallEnded` right after a cut with no speech means a hang-up."""
        if isinstance(frame, BotReply) and frame.text:
            live.speaking, live.caller_spoke, live.cut_pending = True, False, False
        elif isinstance(frame, SpeechStarted):
            if live.cut_pending:
                self.barge_ins.inc()
            live.caller_spoke, live.cut_pending = live.speaking, False
        elif isinstance(frame, TurnDone):
            if frame.record.interrupted:
                if live.caller_spoke:
                    self.barge_ins.inc()
                else:
                    live.cut_pending = True
            live.speaking = live.caller_spoke = False
        elif isinstance(frame, CallEnded):
            live.cut_pending = False
