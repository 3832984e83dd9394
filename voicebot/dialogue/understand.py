"""What a caller turn means beyond its top intent, for the policy: a bare yes or no the model was unsure of,
"start over", an unsure turn its own entities back up, a frustrated turn, a FAQ answer.

Kept apart from the policy's step logic because none of it depends on where the call is.
"""

from __future__ import annotations

import re

from voicebot.dialogue.slots import from_entities
from voicebot.domain.loader import Domain
from voicebot.nlu.model import OOS
from voicebot.nlu.parser import Parse

# A bare yes or no the model was unsure of, at a yes/no question ("No, that's all, thanks.").
YES = re.compile(r"^\W*(yes|yeah|yep|yup|sure|correct|that's right|go ahead|please do|okay|ok)\b", re.I)
NO = re.compile(r"^\W*(no|nope|nah|nothing( else)?|not really)\b", re.I)
START_OVER = re.compile(r"\b(start (all )?over|start again|from the (beginning|start)|restart)\b", re.I)


def yes_no(domain: Domain, text: str, intent: str) -> str:
    """At a yes/no question, a turn starting with a bare yes or no is one, whatever the model thought."""
    if intent in domain.flow_intents():
        return intent
    meta = domain.settings.intents
    return meta.deny if NO.match(text) else meta.affirm if YES.match(text) else intent


def rescue(domain: Domain, parse: Parse) -> str:
    """The best task intent of an unsure turn, when the turn's own entities back it up."""
    best = next(((name, p) for name, p in parse.ranking if name != OOS), None)
    if best is None or best[1] < domain.settings.entity_rescue:
        return OOS
    flow = domain.flow_for_intent(best[0])
    if flow is None:
        return OOS
    found = from_entities(domain, parse, domain.flows[flow].slot_names())
    return best[0] if set(found.values) & set(domain.flows[flow].slot_names()) else OOS


def frustrated(domain: Domain, parse: Parse, intent: str) -> bool:
    """A clearly annoyed turn that is not just a task being asked for ("cancel it!" is no complaint)."""
    s, rule = parse.sentiment, domain.settings.handoff
    if not s or intent in domain.flow_intents():
        return False
    return bool(s["scores"]["negative"] >= rule.min_negative and s["frustration"] >= rule.min_frustration)


def answer(domain: Domain, parse: Parse, intent: str) -> str | None:
    """A spoken FAQ answer, for questions that are not tasks or conversational moves."""
    meta = set(domain.settings.intents.model_dump().values()) - {OOS}
    if intent in domain.flow_intents() or intent in meta:
        return None
    if parse.answer and parse.answer.get("id"):
        return str(parse.answer["text"])
    return domain.faq.get(intent)
