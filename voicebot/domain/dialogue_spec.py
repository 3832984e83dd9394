"""The dialogue part of a domain folder: settings, slots, responses, flows and keypad menus.

Each file is validated on its own (file, line and field in every error); `voicebot.domain.loader` then
checks the references between them (a flow naming a missing slot or response, a template with an unknown
placeholder). Defaults live here, once: a domain only writes what differs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from voicebot.domain.yamlfile import Strict

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_UNSPEAKABLE = re.compile(r"https?://|www\.|[*_#`<>]|\[.*\]\(")

SlotType = Literal["digits", "alnum", "amount", "date", "name", "place", "email", "phone", "text"]
SayAs = Literal["digits", "letters", "phone", "amount", "date", "email", "text"]
DEFAULT_SAY_AS: dict[str, SayAs] = {
    "digits": "digits",
    "alnum": "letters",
    "amount": "amount",
    "date": "date",
    "email": "email",
    "phone": "phone",
}


def _name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(f"name {value!r} must be lower_snake_case")
    return value


def _spoken(template: str) -> str:
    if _UNSPEAKABLE.search(re.sub(r"\{[a-z0-9_]*\}", "", template)):
        raise ValueError("responses are spoken: no URLs, markdown or markup")
    return template


Name = Annotated[str, AfterValidator(_name)]
Template = Annotated[str, AfterValidator(_spoken)]


# --------------------------------------------------------------------------------------- settings.yaml


class Timeouts(Strict):
    no_input_s: float = Field(7.0, gt=0, description="caller silence after the bot stops → no-input event")
    action_s: float = Field(5.0, gt=0, description="a back-end action slower than this has failed")
    digits_end_silence_ms: float = Field(
        1500.0,
        gt=0,
        description="the pause that ends the caller's turn while a digit slot is asked: people read a "
        "number in groups and pause between them",
    )


class Retries(Strict):
    """Escalation ladder per counter: reprompts, then one keypad (DTMF) fallback, then transfer."""

    no_match: int = Field(3, ge=1, le=10, description="misunderstood turns in a row before transfer")
    no_input: int = Field(3, ge=1, le=10, description="silent turns in a row before transfer")


class Handoff(Strict):
    target: str = Field("agent", description="transfer target: queue name, SIP URI or phone number")
    intents: list[Name] = Field(
        default_factory=lambda: ["contact_human_agent"], description="the caller asks for a person"
    )
    person_only: list[Name] = Field(
        default_factory=list,
        description="intents only a person can settle (a complaint): handed off at once, with the domain's "
        "`handoff_<intent>` response first where it has one",
    )
    negative_turns: int = Field(
        2, ge=0, description="transfer after this many frustrated turns in a row (0 = never)"
    )
    min_negative: float = Field(0.6, ge=0, le=1, description="a frustrated turn: negative score at least")
    min_frustration: float = Field(0.4, ge=0, le=1, description="…and frustration score at least")
    on_action_error: bool = Field(True, description="transfer after a spoken apology if the back end fails")


class Webhook(Strict):
    url: str
    timeout_s: float | None = None
    headers: dict[str, str] = Field(default_factory=dict)


class Backend(Strict):
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="passed to the domain's actions.py register(); relative "
        "`database` paths are kept under the cache directory",
    )
    webhooks: dict[Name, Webhook] = Field(default_factory=dict)


class MetaIntents(Strict):
    """Which NLU intents play the built-in conversational roles."""

    greet: str = "greet"
    goodbye: str = "goodbye"
    affirm: str = "affirm"
    deny: str = "deny"
    repeat: str = "repeat"
    inform: str = "inform"  # a bare value ("eight three oh one one two"): fills the slot being asked
    out_of_scope: str = "oos"


class Settings(Strict):
    language: str = "en"
    voice: str | None = Field(None, description="Piper voice (.onnx) for this domain; default: the server's")
    asr_hints: list[str] = Field(
        default_factory=list, description="words Whisper should expect on this line: the shop's name, towns…"
    )
    min_confidence: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="intents below this count as not understood (on top of the "
        "model's calibrated out-of-scope threshold)",
    )
    entity_rescue: float = Field(
        0.2,
        ge=0.0,
        le=1.0,
        description="an out-of-scope turn is taken as its best task intent when that "
        "has at least this probability and the turn's entities fill the task's slots ('refund … 812339')",
    )
    switch_confidence: float = Field(
        0.8, ge=0.0, le=1.0, description="another task's intent this sure, mid-task, switches topic"
    )
    timeouts: Timeouts = Field(default_factory=Timeouts)
    retries: Retries = Field(default_factory=Retries)
    handoff: Handoff = Field(default_factory=Handoff)
    backend: Backend = Field(default_factory=Backend)
    intents: MetaIntents = Field(default_factory=MetaIntents)


# ------------------------------------------------------------------------------------------ slots.yaml


class Slot(Strict):
    type: SlotType
    entity: str | None = Field(None, description="entity type that fills the slot (default: its name)")
    dtmf: bool = Field(False, description="may be typed on the keypad, ended by #")
    min_length: int | None = Field(None, ge=1, description="shortest value (characters) accepted")
    max_length: int | None = Field(None, ge=1, description="longest value; keypad entry ends by itself here")
    pattern: str | None = Field(None, description="regular expression the whole value must match")
    say_as: SayAs | None = Field(None, description="how replies speak the value (default by type)")
    invalid: Name | None = Field(None, description="response when a value fails validation")
    lookup: Name | None = Field(
        None,
        description="action answering whether a value exists (ok = it does): picks among the readings of "
        "a heard number the one the back end knows",
    )

    @field_validator("pattern")
    @classmethod
    def _regex(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"invalid regular expression: {exc}") from exc
        return pattern

    def spoken_as(self) -> SayAs:
        return self.say_as or DEFAULT_SAY_AS.get(self.type, "text")


class SlotsFile(Strict):
    slots: dict[Name, Slot] = Field(default_factory=dict)


# ------------------------------------------------------------------------------------- responses.yaml


class ResponsesFile(Strict):
    responses: dict[Name, Annotated[list[Template], Field(min_length=1)]] = Field(default_factory=dict)


# ----------------------------------------------------------------------------------------- flows.yaml


class FlowSlot(Strict):
    slot: Name
    prompt: Name | None = Field(None, description="response that asks for it (default: ask_<slot>)")
    required: bool = True

    def prompt_name(self) -> str:
        return self.prompt or f"ask_{self.slot}"


class Failure(Strict):
    say: Name
    retry: Name | None = Field(None, description="forget this slot's value and ask for it again")


class Cases(Strict):
    """Pick the success response by one output of the action (e.g. an order's status)."""

    by: Name
    cases: dict[str, Name]
    default: Name | None = None


class Flow(Strict):
    intents: list[Name] = Field(default_factory=list, description="intents that start it (default: its name)")
    title: str = Field(description="what it is for, said when returning to it: 'your refund'")
    slots: list[FlowSlot | Name] = Field(default_factory=list)
    confirm: Name | None = Field(None, description="yes/no question asked before the action")
    declined: Name | None = Field(None, description="said when the caller says no at the confirmation")
    action: Name | None = None
    outputs: list[Name] = Field(default_factory=list, description="action results replies may use")
    success: Name | Cases | None = None
    failure: dict[str, Name | Failure] = Field(
        default_factory=dict, description="by the action's error code; 'default' for any other"
    )
    then: Literal["anything_else", "hangup", "transfer"] = "anything_else"

    @model_validator(mode="after")
    def _needs_something(self) -> Flow:
        if self.action is None and self.success is None:
            raise ValueError("a flow needs an action or a success response")
        return self

    def slot_specs(self) -> list[FlowSlot]:
        return [s if isinstance(s, FlowSlot) else FlowSlot(slot=s) for s in self.slots]

    def slot_names(self) -> list[str]:
        return [s.slot for s in self.slot_specs()]

    def success_for(self, values: Mapping[str, object]) -> str | None:
        """The success response's name for the action's outputs; None when the domain has none for them."""
        if isinstance(self.success, Cases):
            return self.success.cases.get(str(values.get(self.success.by, "")), self.success.default)
        return self.success

    def failure_for(self, code: str | None) -> Failure | None:
        found = self.failure.get(code or "default", self.failure.get("default"))
        return Failure(say=found) if isinstance(found, str) else found


class MenuOption(Strict):
    flow: Name | None = None
    transfer: bool = False
    repeat: bool = False
    say: Name | None = None

    @model_validator(mode="after")
    def _one(self) -> MenuOption:
        if sum((self.flow is not None, self.transfer, self.repeat, self.say is not None)) != 1:
            raise ValueError("a menu option does exactly one of: flow, transfer, repeat, say")
        return self


class Menu(Strict):
    prompt: Name
    options: dict[Annotated[str, Field(pattern=r"^[0-9*#]$")], MenuOption]


class FlowsFile(Strict):
    flows: dict[Name, Flow] = Field(default_factory=dict)
    menu: Menu | None = Field(None, description="the keypad menu: DTMF fallback and digits at top level")
