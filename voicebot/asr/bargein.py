"""Backchannels and barge-in: is caller speech heard while the bot speaks a reason to stop the bot?

People say "mm-hmm", "okay", "right", "yeah" while they listen, and they cough; none of that asks the bot to
stop. "Wait", "no", "stop", a question or a correction does. Cutting the bot at every VAD speech start (the
old behaviour, still there with `bargein.judge: false`) stopped it at each of them. So while the bot
speaks, a speech start is tentative (`SpeechStarted.barge_in` false: nothing is cut), and the bot is cut
with a `BargeIn` as soon as one of these holds, whichever comes first:

- the caller has spoken `bargein.max_backchannel_ms` of voiced audio: longer than a backchannel;
- a quick decode of the clip so far (`bargein.probe_ms` into it) heard a stop word ("wait", "stop"): a
  clip still being said reads as anything, so only a stop word counts there;
- a decode of the words up to a pause (the ASR stage's speculative final decode) or the final transcript
  reads as something other than a backchannel: a stop word, a question, any other words.

If the utterance ends short and its transcript is a backchannel, or nothing (a cough the recogniser's guards
reject), the bot talks on and the utterance is dropped: no turn, the brain never sees it. So is one whose
voice stopped before the bot did, though the utterance ended after (the endpointer holds "mm-hmm" open
`turn.hold_ms`: it ends on "hmm"). One still voiced after the bot finished is an ordinary turn ("Is that
right?" … "Yeah."). Every decision goes downstream as an `Interruption` frame (before its `BargeIn`) into
the turn record of the reply it was heard over.

The ASR stage (`voicebot.stages.listen`) owns one `BargeInJudge` per call and tells it what it hears; the
judge sends its frames on through the stage's `push`.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace

from voicebot.asr.base import Transcription
from voicebot.config import BargeInConfig
from voicebot.frames import (
    BargeIn,
    BotSpeaking,
    Decision,
    Frame,
    Interruption,
    InterruptionKind,
    SpeechStarted,
)

_WORD = re.compile(r"[a-z']+|\d+")
_NON_SPEECH = re.compile(r"\[[^\]]*\]|\([^)]*\)|\*[^*]*\*")  # Whisper's "[coughs]", "(laughs)", "*sigh*"
_HELD = re.compile(r"([a-z])\1{2,}")  # "mmm", "hmmm", "yeahhh": a held sound, not another word


def words_of(text: str) -> list[str]:
    """Lower-case words, sound labels dropped, held letters cut to two ("Mmm-hmmm." → mm, hmm)."""
    return _WORD.findall(_HELD.sub(r"\1\1", _NON_SPEECH.sub(" ", text.lower())))


def classify(text: str, config: BargeInConfig) -> tuple[InterruptionKind, str]:
    """What words heard over the bot are: ("noise", …) for none, ("backchannel", …) when every word is one
    of `config.backchannels` and it is no question, else ("interruption", why)."""
    words = words_of(text)
    if not words:
        return "noise", "no words"
    stop = next((w for w in words if w in config.stop_words), None)
    if stop is not None:
        return "interruption", f"stop word '{stop}'"
    if text.rstrip().endswith("?"):
        return "interruption", "a question"
    if all(w in config.backchannels for w in words):
        return "backchannel", "backchannel"
    return "interruption", "not a backchannel"


@dataclass
class Heard:
    """One tentative utterance: caller speech that started while the bot spoke, not decided yet."""

    start_t: float  # caller-audio time the speech started
    reply_id: int
    clock: tuple[float, float]  # (caller-audio time, perf_counter) of the latest audio heard
    voiced_at: float = 0.0  # perf_counter of its latest voiced audio
    speech_ms: float = 0.0
    cleared_ms: float = 0.0  # voiced audio up to a pause whose words were a backchannel or noise
    text: str = ""  # the latest words a decode heard in it (logged with a cut on length)
    done: bool = False  # decided: the bot was cut (later decodes change nothing)
    probed: bool = False

    def latency_ms(self) -> float:
        """From the speech start to now: caller audio heard since, plus wall time since the latest of it."""
        audio_t, at = self.clock
        return (audio_t - self.start_t + time.perf_counter() - at) * 1000.0


@dataclass
class BargeInJudge:
    """One call's judge. `enabled`: barge-in is on at all (`pipeline.barge_in`); `push` sends a frame
    downstream (the ASR stage's)."""

    config: BargeInConfig
    push: Callable[[Frame], Awaitable[None]]
    enabled: bool = True
    speaking: bool = False  # the bot is playing a reply (`BotSpeaking`)
    stopped_at: float = 0.0  # perf_counter when it last stopped
    reply_id: int = 0
    heard: Heard | None = None  # the tentative utterance in progress
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def judging(self) -> bool:
        return self.enabled and self.config.judge and self.speaking

    def bot(self, frame: BotSpeaking) -> None:
        if self.speaking and not frame.speaking:
            self.stopped_at = time.perf_counter()
        self.speaking, self.reply_id = frame.speaking, frame.reply_id

    async def start(self, frame: SpeechStarted) -> SpeechStarted:
        """A new utterance: the frame to send on for it (tentative while judging). With `judge` off, a
        speech start that cuts the bot is logged as such."""
        self.heard = None
        if self.judging:
            # the clock moves on with the first audio after the onset (`audio`), before any decision
            now = time.perf_counter()
            self.heard = Heard(frame.t, self.reply_id, (frame.t, now), voiced_at=now)
            return replace(frame, barge_in=False)
        if self.enabled and self.speaking and frame.barge_in:
            await self._log("stop", "speech", "speech start (bargein.judge off)", 0.0, frame.t)
        return frame

    async def passes(self, frame: BargeIn) -> bool:
        """The VAD's own `BargeIn` (a short word went on): swallowed while the utterance is judged here."""
        if self.heard is not None:
            return False
        if self.enabled and self.speaking:  # judge off, or the caller was talking before the bot began
            why = "a short word went on" + ("" if self.config.judge else " (bargein.judge off)")
            await self._log("stop", "speech", why, 0.0, frame.t)
        return True

    async def audio(self, speech_ms: float, t: float, voiced: bool) -> bool:
        """More of the utterance (`speech_ms` voiced so far, up to caller-audio time `t`; `voiced`: this
        piece): cuts the bot once it is too long for a backchannel. True when a probe decode is due now."""
        h = self.heard
        if h is None or h.done:
            return False
        h.clock, h.speech_ms = (t, time.perf_counter()), speech_ms
        if voiced:
            h.voiced_at = h.clock[1]
        if not self.speaking:
            return False
        if speech_ms - h.cleared_ms >= self.config.max_backchannel_ms:
            await self._stop(h, "speech", f"{speech_ms - h.cleared_ms:.0f} ms of speech")
            return False
        probe = self.config.probe_ms
        if probe is not None and not h.probed and speech_ms - h.cleared_ms >= probe:
            h.probed = True
            return True
        return False

    def watch(self, decode: asyncio.Future[Transcription], probe: bool) -> None:
        """A decode of the utterance so far (`probe`: of a clip still being said); judged once it is in."""
        h = self.heard
        if h is None or h.done:
            return
        task = asyncio.create_task(self._judge(h, decode, probe, h.speech_ms))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _judge(
        self, h: Heard, decode: asyncio.Future[Transcription], probe: bool, speech_ms: float
    ) -> None:
        """A decode of the first `speech_ms` of voiced audio: an interruption cuts the bot; a backchannel or
        noise up to a pause clears that much, so "[cough] … okay" is not one long utterance to the length
        rule (the endpointer holds a wordless utterance open `turn.hold_ms`, and the caller's next sound
        joins it)."""
        try:
            text = (await asyncio.shield(decode)).text
        except Exception:  # the ASR stage reports its own decode's failure; this one just cannot decide
            return
        if h is not self.heard or h.done or not self.speaking:
            return
        h.text = text or h.text
        kind, reason = classify(text, self.config)
        if kind == "interruption" and (not probe or reason.startswith("stop word")):
            await self._stop(h, kind, reason + (" (probe)" if probe else ""), text)
        elif not probe and speech_ms > h.cleared_ms:
            h.cleared_ms, h.probed = speech_ms, False  # what follows is heard afresh

    def take(self) -> Heard | None:
        """The utterance is over: its tentative state, for `settle` once its transcript is in."""
        h, self.heard = self.heard, None
        return h

    async def settle(self, h: Heard | None, text: str) -> bool:
        """The final transcript of a tentative utterance `h`: True when it is to be dropped (a backchannel
        or noise while the bot still speaks); a cut, or the record of a turn, otherwise."""
        if h is None or h.done:
            return False
        kind, reason = classify(text, self.config)
        if not self.speaking and (h.voiced_at > self.stopped_at or kind == "interruption"):
            await self._log("turn", kind, "the bot had finished", h.speech_ms, h.clock[0], h, text)
            return False
        if kind == "interruption":
            await self._stop(h, kind, reason, text)
            return False
        if not self.speaking:
            reason += " (over the bot's last words)"
        await self._log("continue", kind, reason, h.speech_ms, h.clock[0], h, text)
        return True

    async def _stop(self, h: Heard, kind: InterruptionKind, reason: str, text: str = "") -> None:
        h.done = True
        await self._log("stop", kind, reason, h.speech_ms, h.clock[0], h, text or h.text)
        await self.push(BargeIn(t=h.clock[0]))

    async def _log(
        self,
        decision: Decision,
        kind: InterruptionKind,
        reason: str,
        speech_ms: float,
        t: float,
        h: Heard | None = None,
        text: str = "",
    ) -> None:
        frame = Interruption(
            decision=decision,
            kind=kind,
            reason=reason,
            text=text,
            latency_ms=h.latency_ms() if h is not None else 0.0,
            speech_ms=speech_ms,
            t=t,
            reply_id=h.reply_id if h is not None else self.reply_id,
        )
        await self.push(frame)

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
