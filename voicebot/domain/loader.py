"""A whole domain folder, loaded once and cross-checked: what the dialogue engine runs on.

Each YAML file validates itself; this module checks what no single file can: that flows name slots and
responses that exist, that every template's placeholders can be filled, and that the responses the engine
itself needs are there. Mistakes surface at load time as `DomainError`s naming file, line and field,
never as a caller hearing a half-filled sentence.
"""

from __future__ import annotations

import string
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from voicebot.domain.dialogue_spec import (
    Cases,
    Flow,
    FlowsFile,
    Menu,
    ResponsesFile,
    Settings,
    Slot,
    SlotsFile,
)
from voicebot.domain.nlu_spec import FAQSpec
from voicebot.domain.yamlfile import DomainError, Loc, line_of, load_model, load_yaml

# Responses the engine says by itself (greeting, reprompts, hand-off…): every domain must word them.
BUILTIN_RESPONSES = (
    "greeting",
    "anything_else",
    "how_can_i_help",
    "goodbye",
    "transfer",
    "action_error",
    "nomatch",
    "nomatch_top",
    "noinput",
    "dtmf_hint",
    "confirm_yes_no",
    "declined",
    "start_over",
    "resume",
    "invalid_value",
    "menu_invalid",
    "corrected",
)
# Responses the engine says that a domain may word (its own words win); the engine's otherwise.
DEFAULT_RESPONSES: dict[str, list[str]] = {
    "noisy_line": ["Sorry, the line is noisy, could you say that again?"],
    "partial_number": ["I've got {partial} so far. What's the rest?"],
    "wrong_value": ["Sorry about that, let's try again."],
}
# The filler said while a slow turn is worked on (`hold`): a domain may word it, else `hold.filler` is said.
# One fixed prompt, synthesised once: no placeholders.
FILLER_RESPONSE = "one_moment"
BUILTIN_PLACEHOLDERS = frozenset({"flow_title", "partial"})
FILES = ("settings.yaml", "slots.yaml", "responses.yaml", "flows.yaml")


@dataclass
class Domain:
    path: Path
    settings: Settings
    slots: dict[str, Slot]
    responses: dict[str, list[str]]
    flows: dict[str, Flow]
    menu: Menu | None
    faq: dict[str, str]  # intent → spoken answer (faq.yaml), when the answer matcher is unsure

    def flow_for_intent(self, intent: str) -> str | None:
        for name, flow in self.flows.items():
            if intent in (flow.intents or [name]):
                return name
        return None

    def flow_intents(self) -> set[str]:
        return {i for name, flow in self.flows.items() for i in (flow.intents or [name])}


def placeholders(template: str) -> Iterator[str]:
    for _, field, _, _ in string.Formatter().parse(template):
        if field is not None:
            yield field


def _error(path: Path, loc: Loc, message: str) -> DomainError:
    line = line_of(load_yaml(path)[1], loc)
    where = f"{path}:{line}" if line else str(path)
    return DomainError(f"{where}: {'.'.join(str(p) for p in loc)}: {message}")


def _responses_named(flow: Flow) -> Iterator[tuple[Loc, str]]:
    for n, spec in enumerate(flow.slot_specs()):
        if spec.required or spec.prompt:  # optional slots are only taken when offered
            yield ("slots", n), spec.prompt_name()
    for key in ("confirm", "declined"):
        value = getattr(flow, key)
        if value is not None:
            yield (key,), value
    if isinstance(flow.success, str):
        yield ("success",), flow.success
    elif isinstance(flow.success, Cases):
        for case, name in flow.success.cases.items():
            yield ("success", "cases", case), name
        if flow.success.default:
            yield ("success", "default"), flow.success.default
    for code in flow.failure:
        failure = flow.failure_for(code)
        assert failure is not None
        yield ("failure", code), failure.say


def _check_flows(domain: Domain, flows_file: Path) -> None:
    for name, flow in domain.flows.items():
        specs = flow.slot_specs()
        for n, spec in enumerate(specs):
            if spec.slot not in domain.slots:
                raise _error(flows_file, ("flows", name, "slots", n), f"unknown slot {spec.slot!r}")
        for loc, response in _responses_named(flow):
            if response not in domain.responses:
                raise _error(flows_file, ("flows", name, *loc), f"unknown response {response!r}")
        if flow.action and "default" not in flow.failure:
            loc = ("flows", name, "failure") if flow.failure else ("flows", name, "action")
            raise _error(flows_file, loc, "a flow with an action needs failure.default (what to say)")
        if isinstance(flow.success, Cases) and flow.success.by not in flow.outputs:
            loc = ("flows", name, "success", "by")
            raise _error(flows_file, loc, f"{flow.success.by!r} is not one of the flow's outputs")
        for code in flow.failure:
            failure = flow.failure_for(code)
            if failure and failure.retry and failure.retry not in {s.slot for s in specs}:
                loc = ("flows", name, "failure", code)
                raise _error(flows_file, loc, f"retry slot {failure.retry!r} is not a slot of this flow")
    if domain.menu is not None:
        if domain.menu.prompt not in domain.responses:
            raise _error(flows_file, ("menu", "prompt"), f"unknown response {domain.menu.prompt!r}")
        for digit, option in domain.menu.options.items():
            if option.flow and option.flow not in domain.flows:
                raise _error(flows_file, ("menu", "options", digit), f"unknown flow {option.flow!r}")
            if option.say and option.say not in domain.responses:
                raise _error(flows_file, ("menu", "options", digit), f"unknown response {option.say!r}")


def _check_responses(domain: Domain, responses_file: Path, slots_file: Path) -> None:
    for name in BUILTIN_RESPONSES:
        if name not in domain.responses:
            raise DomainError(f"{responses_file}: responses.{name}: missing (the engine says it)")
    for name, slot in domain.slots.items():
        if slot.invalid and slot.invalid not in domain.responses:
            raise _error(slots_file, ("slots", name, "invalid"), f"unknown response {slot.invalid!r}")
    known = set(domain.slots) | {o for f in domain.flows.values() for o in f.outputs} | BUILTIN_PLACEHOLDERS
    for name, variants in domain.responses.items():
        for n, template in enumerate(variants):
            try:
                fields = list(placeholders(template))
            except ValueError as exc:
                raise _error(responses_file, ("responses", name, n), f"bad template: {exc}") from exc
            for field in fields:
                if field not in known:
                    loc = ("responses", name, n)
                    raise _error(responses_file, loc, f"unknown placeholder {{{field}}}")
                if name == FILLER_RESPONSE:
                    loc = ("responses", name, n)
                    raise _error(responses_file, loc, "the filler is one fixed prompt: no placeholders")


def _faq_by_intent(path: Path) -> dict[str, str]:
    faq_file = path / "faq.yaml"
    if not faq_file.is_file():
        return {}
    return {a.intent: a.answer for a in load_model(faq_file, FAQSpec).answers if a.intent}


def load_domain(path: Path) -> Domain:
    """Load and cross-check a domain folder's dialogue files (the NLU files are read by training)."""
    path = Path(path)
    if not path.is_dir():
        raise DomainError(f"{path}: not a domain folder")
    missing = [name for name in FILES[1:] if not (path / name).is_file()]
    if missing:
        raise DomainError(f"{path}: missing {', '.join(missing)} (a dialogue domain needs them)")
    settings_file = path / "settings.yaml"
    settings = load_model(settings_file, Settings) if settings_file.is_file() else Settings()
    flows = load_model(path / "flows.yaml", FlowsFile)
    domain = Domain(
        path=path,
        settings=settings,
        slots=load_model(path / "slots.yaml", SlotsFile).slots,
        responses=DEFAULT_RESPONSES | load_model(path / "responses.yaml", ResponsesFile).responses,
        flows=flows.flows,
        menu=flows.menu,
        faq=_faq_by_intent(path),
    )
    _check_flows(domain, path / "flows.yaml")
    _check_responses(domain, path / "responses.yaml", path / "slots.yaml")
    return domain


def is_dialogue_domain(path: Path) -> bool:
    return (Path(path) / "flows.yaml").is_file()
