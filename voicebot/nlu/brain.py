"""A brain that understands but does not yet hold a dialogue: the NLU plugged into the live pipeline.

Each final transcript is parsed (intent, entities, sentiment, FAQ answer) and the parse goes into the turn
record. It answers FAQ questions, hands over when asked for a person, says goodbye, and otherwise says what it
understood — enough to hear the fine-tuned NLU on a real phone line before the dialogue engine lands.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voicebot.brain import BrainInput, EchoBrain
from voicebot.frames import Action, BotReply, BrainTimes, FinalTranscript, Understanding
from voicebot.nlu.model import OOS
from voicebot.nlu.parser import Parse, Parser

HUMAN = {"contact_human_agent", "contact_customer_service"}


def understood(parse: Parse, entities: dict[str, Any] | None = None) -> Understanding:
    """The parse as the turn record carries it (`voicebot call --json`, call records); `entities` replaces
    the parse's own values (masked ones)."""
    return Understanding(
        intent=parse.intent,
        confidence=round(parse.confidence, 4),
        entities=parse.entity_values() if entities is None else entities,
        sentiment=parse.sentiment["label"] if parse.sentiment else None,
        frustration=parse.sentiment["frustration"] if parse.sentiment else None,
        answer_id=parse.answer["id"] if parse.answer else None,
    )


class UnderstandingBrain(EchoBrain):
    def __init__(self, nlu: Parser) -> None:
        super().__init__()
        self.nlu = nlu

    def greeting(self) -> BotReply | None:
        return BotReply(text="Hello, you are talking to an automated assistant. How can I help you today?")

    async def handle(self, event: BrainInput) -> BotReply | None:
        if not isinstance(event, FinalTranscript) or not event.text:
            return await super().handle(event)
        parse = await asyncio.to_thread(self.nlu.parse, event.text)
        times = BrainTimes(nlu_done=time.perf_counter())
        turn = understood(parse)
        actions: tuple[Action, ...] = ()
        if parse.intent == "goodbye":
            text, actions = (
                "Thank you for calling. Goodbye.",
                (Action("hangup", reason="caller said goodbye"),),
            )
        elif parse.intent in HUMAN:
            text = "Of course. I am transferring you to a member of our team now."
            actions = (Action("transfer", target="agent", reason="caller asked for a person"),)
        elif parse.answer and parse.answer.get("id"):
            text = str(parse.answer["text"])
        elif parse.intent == OOS:
            text = "Sorry, I can only help with orders, deliveries, refunds, invoices and your account."
        else:
            found = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in turn.entities.items() if v)
            text = f"I understood that you want to {parse.intent.replace('_', ' ')}" + (
                f", with {found}." if found else "."
            )
        return BotReply(text=text, actions=actions, understanding=turn, times=times)


@dataclass(frozen=True)
class DomainFolder:
    """Where a domain's files are (what the console's learning asks a factory's `domain` for)."""

    path: Path


class UnderstandingFactory:
    """Brains of an NLU-only domain (no flows.yaml), all on one model; like the dialogue engine's factory,
    it names its `domain` and `nlu`, so the operator console can review its turns and retrain its model."""

    def __init__(self, domain_dir: Path, nlu: Parser) -> None:
        self.domain, self.nlu = DomainFolder(Path(domain_dir)), nlu

    def __call__(self) -> UnderstandingBrain:
        return UnderstandingBrain(self.nlu)
