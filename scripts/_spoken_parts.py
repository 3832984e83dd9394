"""The measurements of `bench_spoken.py`, one function each, all through the library's own code paths.

"before" is how the bot heard a slot answer until the listening context existed: one greedy decode with
the domain's hint words as the prompt, then the strict digit reader of free text. "after" is the path a call
takes now: the dialogue's `ListeningContext` turned into a prompt, a short beam and a constrained fallback
(`voicebot.nlu.grammar`), then the dialogue itself choosing among the hypotheses (validity, back-end
lookup). Both hear the same audio.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.voices import Voice
from voicebot.asr.base import judge, unclear
from voicebot.audio import resample, to_float
from voicebot.convtest.results import ConversationResult
from voicebot.convtest.runner import run_conversation
from voicebot.convtest.spec import Conversation, Expect, Step
from voicebot.dialogue.brain import DialogueBrain, DialogueFactory
from voicebot.frames import PCM, FinalTranscript, ListeningContext
from voicebot.line import PRESETS, LineConfig, simulate
from voicebot.nlu.digits import digit_candidates
from voicebot.nlu.grammar import listening_plan
from voicebot.nlu.normalise import spoken_digits
from voicebot.pipeline import Services
from voicebot.transcribe import utterances
from voicebot.tts import split_sentences

DIGIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TEMPLATES = ["{}", "it's {}", "my order number is {}", "yeah it's {}", "the number is {}", "um {}", "uh, {}"]
OUTCOME_KEYS = ("act", "action", "action_result", "transfer", "hangup", "silent")


def spoken_number(digits: str, rng: random.Random, pauses: bool = True) -> str:
    """How a caller reads a number: digit by digit, 'oh' for zero, sometimes 'double', and (`pauses`)
    sometimes in groups of three with a comma pause."""
    words, i = [], 0
    while i < len(digits):
        d = digits[i]
        if i + 1 < len(digits) and digits[i + 1] == d and rng.random() < 0.5:
            words.append(f"double {DIGIT_WORDS[int(d)]}")
            i += 2
        else:
            words.append("oh" if d == "0" and rng.random() < 0.6 else DIGIT_WORDS[int(d)])
            i += 1
        if pauses and i == 3 and len(digits) >= 6 and rng.random() < 0.4:
            words[-1] += ","
    return " ".join(words)


def heard(voice: Voice, text: str, line: LineConfig, seed: int = 0) -> PCM:
    """`text` said by `voice`, over `line` at 8 kHz, as 16 kHz PCM for the recogniser."""
    pcm = np.concatenate([voice.speak(s, 8_000) for s in split_sentences(text)])
    pcm = np.concatenate([np.zeros(2_400, np.int16), pcm, np.zeros(4_000, np.int16)])
    return resample(simulate(pcm, 8_000, line.model_copy(update={"seed": seed})), 8_000, 16_000)


def shop_ids(factory: DialogueFactory) -> dict[str, list[str]]:
    """The order and invoice numbers in the shop's back end (callers call about their own)."""
    factory()  # opening the back end seeds its database
    with sqlite3.connect(str(factory.options["database"])) as db:
        orders = [r[0] for r in db.execute("SELECT order_id FROM orders ORDER BY order_id")]
        invoices = [str(r[0]) for r in db.execute("SELECT invoice_id FROM invoices ORDER BY invoice_id")]
    return {"order_id": orders, "invoice_id": invoices}


@dataclass
class NumberRow:
    voice: str
    line: str
    slot: str
    digits: str
    said: str
    before_text: str
    before: str | None
    after_text: str
    after_nbest: list[str]
    after: str | None
    plain_ms: float
    planned_ms: float
    choose_ms: float
    constrained: bool
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__ | {
            "before_ok": self.before == self.digits,
            "after_ok": self.after == self.digits,
        }


ASK = {"order_id": "I'd like to track my order", "invoice_id": "I have a question about an invoice"}


async def _ask(brain: DialogueBrain, slot: str) -> ListeningContext:
    brain.greeting()
    await brain.handle(FinalTranscript(text=ASK[slot], t=0.0))
    context = brain.listening_context()
    if context is None or context.slot != slot:
        raise RuntimeError(f"the dialogue did not ask for {slot} after {ASK[slot]!r}: {context}")
    return context


def number_answers(
    services: Services, factory: DialogueFactory, voice: Voice, line: str, ids: dict[str, list[str]],
    per_slot: dict[str, int], seed: int,
) -> list[NumberRow]:  # fmt: skip
    """Callers answer "what's your order/invoice number?" with one of the shop's numbers; the slot value
    the dialogue stores is compared with the number said, before and after."""
    rng = random.Random(f"{seed}-{voice.name}-{line}")
    asr, config = services.asr, services.config.asr
    rows = []
    for slot, n in per_slot.items():
        for k in range(n):
            digits = rng.choice(ids[slot])
            said = rng.choice(TEMPLATES).format(spoken_number(digits, rng))
            audio = to_float(heard(voice, said, PRESETS[line], seed=k))
            brain = factory()
            context = asyncio.run(_ask(brain, slot))
            plain = judge(asr.transcribe(audio, context.prompt), config)
            before = spoken_digits(plain.text) if plain.text else None
            prompt, hints = listening_plan(context, config.slot_hypotheses)
            result = unclear(asr.transcribe(audio, prompt, hints), 1000.0, config)
            final = FinalTranscript(
                text=result.text, t=1.0, details=result.as_dict(), nbest=tuple(result.alternatives),
                context=context,
            )  # fmt: skip
            started = time.perf_counter()
            asyncio.run(brain.handle(final))
            choose_ms = (time.perf_counter() - started) * 1000
            rows.append(
                NumberRow(
                    voice.name, line, slot, digits, said, plain.text,
                    before if before and len(before) == len(digits) else None,
                    result.text, list(result.alternatives), brain.state.values().get(slot),
                    plain.decode_ms, result.decode_ms, choose_ms, result.constrained,
                )
            )  # fmt: skip
    return rows


def digit_strings(services: Services, voice: Voice, line: str, n: int, seed: int) -> list[dict[str, Any]]:
    """Digit strings of 4-10 digits read as the answer to "what's the number?" (no back end to check):
    exact when the first reading of the right length is the number said."""
    rng = random.Random(f"digits-{seed}-{voice.name}-{line}")
    asr, config = services.asr, services.config.asr
    out = []
    for k in range(n):
        length = rng.randint(4, 10)
        digits = "".join(rng.choice("0123456789") for _ in range(length))
        said = rng.choice([*TEMPLATES[:2], "the number is {}"]).format(spoken_number(digits, rng))
        audio = to_float(heard(voice, said, PRESETS[line], seed=100 + k))
        plain = judge(asr.transcribe(audio, None), config)
        context = ListeningContext(
            expected="slot", slot="digits", slot_type="digits", min_length=length, max_length=length
        )
        prompt, hints = listening_plan(context, config.slot_hypotheses)
        result = asr.transcribe(audio, prompt, hints)
        fitting = [
            c for t in [result.text, *result.alternatives] for c in digit_candidates(t, length, length)
        ]
        after = next((c for c in fitting if len(c) == length), None)
        out.append(
            {
                "voice": voice.name, "line": line, "digits": digits, "said": said,
                "before_text": plain.text, "before_ok": spoken_digits(plain.text) == digits,
                "after_text": result.text, "after_nbest": result.alternatives, "after": after,
                "after_ok": after == digits,
            }
        )  # fmt: skip
    return out


def noise_only(services: Services, lines: Sequence[str], seeds: int) -> list[dict[str, Any]]:
    """Noise-only calls (5 s of a line's background noise and nothing said): the words the VAD + ASR path
    of a call would pass on, and what the recogniser alone writes when handed the whole clip."""
    from voicebot.vad import SileroVAD

    vad, config = SileroVAD(), services.config
    rows = []
    for line in lines:
        for seed in range(seeds):
            pcm = resample(
                simulate(np.zeros(40_000, np.int16), 8_000, PRESETS[line].model_copy(update={"seed": seed})),
                8_000,
                16_000,
            )
            words_call = []
            noisy = 0
            for utt in utterances(pcm, vad, config):
                tr = unclear(services.asr.transcribe(to_float(utt.audio)), utt.speech_ms, config.asr)
                noisy += tr.rejected == "noise"
                words_call += tr.text.split()
            alone = services.asr.transcribe(to_float(pcm))
            rows.append(
                {
                    "line": line, "seed": seed, "call_words": len(words_call),
                    "call_text": " ".join(words_call), "noisy_line_replies": noisy,
                    "asr_only_words": len(alone.text.split()), "asr_only_text": alone.text,
                    "asr_only_raw": alone.raw_text, "asr_only_guard": alone.rejected,
                }
            )  # fmt: skip
    return rows


def spoken_suite(specs: list[Conversation], voice: Voice, line: str, folder: Path) -> list[Conversation]:
    """Every text conversation with each caller line said by `voice` (raw 8 kHz; the runner applies the
    line); expectations on the outcome only: a transcript writing "22" for "twenty two" is no failed task."""
    from voicebot.audio import write_wav

    out = []
    for spec in specs:
        if any(s.audio for s in spec.steps) or not any(s.caller for s in spec.steps):
            continue
        steps = []
        for n, step in enumerate(spec.steps):
            expect = Expect(
                **{k: v for k, v in step.expect.model_dump(exclude_unset=True).items() if k in OUTCOME_KEYS}
            )
            if step.caller and step.barge_in_after_ms is None:
                path = folder / f"{voice.name}-{abs(hash(spec.name)) % 10**8}-{n}.wav"
                pcm = np.concatenate([voice.speak(s, 8_000) for s in split_sentences(step.caller)])
                write_wav(path, pcm, 8_000)
                steps.append(Step(audio=str(path), expect=expect))
            else:
                steps.append(step.model_copy(update={"expect": expect}))
        out.append(spec.model_copy(update={"steps": steps, "name": f"{spec.name} [{voice.name}, {line}]"}))
    return out


async def run_tasks(
    services: Services, factory: DialogueFactory, specs: list[Conversation], line: str
) -> list[ConversationResult]:
    return [await run_conversation(services, factory, spec, 8_000, PRESETS[line]) for spec in specs]
