"""The typed turn record: one account of each turn, built in one place as its frames pass.

A turn is one bot reply and what caused it: the greeting, a caller utterance (or typed text), a key press, a
no-input event. Its record holds the transcript (with confidence and n-best when the recogniser gives them)
and the listening context it was decoded under, what the brain understood and did, the reply, what the
caller heard of it (from the playback report, the only source of that), and when each step happened.
Records, metrics, `voicebot call --json`, `voicebot test --json` and the benchmarks all read it; nothing
else assembles one. `TurnStage`, the pipeline's last stage, builds them.

`as_json()` is the public form users' scripts read: every field name and meaning the untyped record had is
kept (transcript, asr, intent, confidence, entities, slots, action, action_result, actions, reply,
timings_ms, interrupted, played_ms…), new ones sit beside them (heard, reply_id, cause, previous_cause,
asr_confidence, nbest, listening, at_ms, and interruptions: each decision on caller speech heard over the
reply, when there was any; hold: the filler and hold audio played while a slow turn was worked on). The
README documents the schema.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from voicebot.frames import (
    Action,
    BotReply,
    BrainTimes,
    HoldReport,
    Interruption,
    ListeningContext,
    PlaybackReport,
    SpeechTimes,
    Understanding,
)

# The latency waterfall, in the order a turn goes through them (`at_ms` keys).
MILESTONES = (
    "speech_start",
    "speech_end",
    "turn_decision",
    "final_transcript",
    "nlu_done",
    "action_done",
    "first_tts_audio",
    "first_audio_sent",
)


@dataclass(frozen=True)
class TurnTimes:
    """When each step of the turn happened (`time.perf_counter()` seconds; None where it did not)."""

    speech: SpeechTimes | None = None
    brain: BrainTimes = field(default_factory=BrainTimes)
    tts_started: float | None = None
    first_tts_audio: float | None = None
    first_audio_sent: float | None = None

    def stamps(self) -> dict[str, float | None]:
        speech, brain = self.speech, self.brain
        return {
            "speech_start": speech.speech_start if speech else None,
            "speech_end": speech.speech_end if speech else None,
            "turn_decision": speech.turn_decision if speech else None,
            "final_transcript": speech.final if speech else None,
            "nlu_done": brain.nlu_done,
            "action_done": brain.action_done,
            "first_tts_audio": self.first_tts_audio,
            "first_audio_sent": self.first_audio_sent,
        }

    def at_ms(self) -> dict[str, float]:
        """The waterfall: each milestone in ms after the caller stopped speaking (or, for turns without
        speech, after the brain started on it)."""
        stamps = self.stamps()
        zero = stamps["speech_end"] if stamps["speech_end"] is not None else self.brain.started
        if zero is None:
            return {}
        return {k: round((v - zero) * 1000.0, 1) for k, v in stamps.items() if v is not None}

    def timings_ms(self) -> dict[str, float]:
        """The per-stage durations the record has always carried (endpoint, asr, asr_decode, nlu,
        dialogue_step, action, dialogue, tts_first_audio)."""
        out = self.speech.timings_ms() if self.speech is not None else {}
        brain = self.brain
        nlu = _span(brain.started, brain.nlu_done)
        action = _span(brain.action_started, brain.action_done)
        dialogue = _span(brain.started, brain.decided)
        if nlu is not None:
            out["nlu"] = nlu
        if dialogue is not None:
            out["dialogue_step"] = round(dialogue - (nlu or 0.0) - (action or 0.0), 3)
            out["dialogue"] = dialogue
        if action is not None:
            out["action"] = action
        tts = _span(self.tts_started, self.first_tts_audio)
        if tts is not None:
            out["tts_first_audio"] = round(tts, 1)
        return out


def _span(start: float | None, end: float | None) -> float | None:
    return None if start is None or end is None else round(max(end - start, 0.0) * 1000.0, 3)


@dataclass(frozen=True)
class TurnRecord:
    """One turn, typed. `previous_*`: what the caller heard of the reply before this one."""

    reply_id: int
    cause: str
    reply: str | None
    actions: tuple[Action, ...] = ()
    transcript: str | None = None
    asr: dict[str, Any] | None = None
    asr_confidence: float | None = None
    nbest: tuple[str, ...] = ()
    listening: ListeningContext | None = None
    understanding: Understanding | None = None
    heard: str = ""
    interrupted: bool = False
    played_ms: float = 0.0
    previous_heard: str | None = None
    previous_interrupted: bool | None = None
    previous_cause: str | None = None
    times: TurnTimes = field(default_factory=TurnTimes)
    hold: HoldReport | None = None  # what the caller heard while waiting for this reply (a slow turn)
    interruptions: tuple[Interruption, ...] = ()  # decisions on caller speech heard over this reply

    @classmethod
    def build(
        cls,
        reply: BotReply,
        reply_id: int,
        report: PlaybackReport | None,
        previous: PlaybackReport | None,
        previous_cause: str | None = None,
    ) -> TurnRecord:
        """The record of `reply` as played (`report`: None when it was never played), after `previous` (the
        report of the reply before, which answered a `previous_cause`)."""
        final = reply.transcript
        return cls(
            reply_id=reply_id,
            cause=reply.cause,
            reply=reply.text or None,
            actions=reply.actions,
            transcript=final.text if final is not None else None,
            asr=dict(final.details) if final is not None else None,
            asr_confidence=final.confidence if final is not None else None,
            nbest=final.nbest if final is not None else (),
            listening=final.context if final is not None else None,
            understanding=reply.understanding,
            heard=report.heard if report is not None else "",
            interrupted=report.interrupted if report is not None else False,
            played_ms=report.played_ms if report is not None else 0.0,
            previous_heard=previous.heard if previous is not None else None,
            previous_interrupted=previous.interrupted if previous is not None else None,
            previous_cause=previous_cause if previous is not None else None,
            times=TurnTimes(
                speech=final.times if final is not None else None,
                brain=reply.times,
                tts_started=report.started_at if report is not None else None,
                first_tts_audio=report.synthesized_at if report is not None else None,
                first_audio_sent=report.sent_at if report is not None else None,
            ),
        )

    @property
    def timings_ms(self) -> dict[str, float]:
        return self.times.timings_ms()

    def as_json(self) -> dict[str, Any]:
        """The public JSON form (see the module docstring); personal data was masked by the brain."""
        out: dict[str, Any] = {}
        if self.transcript is not None:
            out |= {"transcript": self.transcript, "asr": self.asr or {}}
        if self.understanding is not None:
            out |= understanding_json(self.understanding)
        out |= {
            "previous_heard": self.previous_heard,
            "previous_interrupted": self.previous_interrupted,
            "previous_cause": self.previous_cause,
            "reply": self.reply,
            "actions": [a.as_json() for a in self.actions],
            "timings_ms": self.timings_ms,
            "interrupted": self.interrupted,
            "played_ms": self.played_ms,
            "heard": self.heard,
            "reply_id": self.reply_id,
            "cause": self.cause,
            "at_ms": self.times.at_ms(),
        }
        if self.transcript is not None:
            out |= {"asr_confidence": self.asr_confidence, "nbest": list(self.nbest)}
        if self.listening is not None:
            out["listening"] = self.listening.as_json()
        if self.hold is not None:
            out["hold"] = self.hold.as_json()
        if self.interruptions:
            out["interruptions"] = [i.as_json() for i in self.interruptions]
        return out


def understanding_json(u: Understanding) -> dict[str, Any]:
    """The brain's part of the record, under the keys it always had; `extra` keys beside them."""
    out: dict[str, Any] = {}
    if u.parsed:
        out |= {
            "intent": u.intent,
            "confidence": u.confidence,
            "entities": u.entities,
            "sentiment": u.sentiment,
            "frustration": u.frustration,
            "answer_id": u.answer_id,
        }
    if u.act is not None:
        out |= {
            "flow": u.flow,
            "expecting": u.expecting,
            "slots": u.slots,
            "act": u.act,
            "action": u.action,
            "action_result": u.action_result,
        }
    if u.dtmf:
        out["dtmf"] = True
    if u.handoff_reason is not None:
        out["handoff_reason"] = u.handoff_reason
    return out | u.extra
