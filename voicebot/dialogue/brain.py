"""`DialogueBrain`: the domain's dialogue engine behind the pipeline's `Brain` protocol.

Per caller event: NLU parse (off the event loop), policy decision, spoken reply, and a turn record
(intent, slots, action and its result, what the caller heard of the previous reply) with personal data
masked. `DialogueFactory` loads the domain, the NLU and the back end once and makes one brain per call.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from datetime import date
from pathlib import Path
from typing import Any

from voicebot.brain import BrainInput
from voicebot.dialogue.actions import Actions, load_actions
from voicebot.dialogue.nlg import NLG, fixed_phrases
from voicebot.dialogue.policy import Decision, Policy
from voicebot.dialogue.state import DialogueState, HistoryTurn
from voicebot.domain.loader import Domain, load_domain
from voicebot.domain.yamlfile import DomainError, line_of, load_yaml
from voicebot.frames import Action, BotReply, BotStopped, DTMFDigit, FinalTranscript, HangUp, NoInput
from voicebot.nlu.brain import turn_fields
from voicebot.nlu.parser import NLU, Parse
from voicebot.pii import mask_mapping, mask_text

log = logging.getLogger("voicebot.dialogue")


class DialogueBrain:
    def __init__(
        self,
        domain: Domain,
        nlu: NLU,
        actions: Actions,
        call_id: str | None = None,
        today: date | None = None,
    ) -> None:
        self.domain, self.nlu, self.today = domain, nlu, today
        self.call_id = call_id or uuid.uuid4().hex  # 32 hex digits: never mistaken for a phone number
        self.no_input_s: float | None = domain.settings.timeouts.no_input_s
        self.asr_prompt: str | None = ", ".join(domain.settings.asr_hints) or None
        self.state = DialogueState()
        self.nlg = NLG(domain, today)
        self.policy = Policy(domain, self.nlg, actions, self.state, self.call_id)

    def greeting(self) -> BotReply | None:
        text = self.nlg.render("greeting")
        self.state.said(text)
        return BotReply(text=text, turn={"act": "greeting"})

    def fixed_phrases(self) -> list[str]:
        return fixed_phrases(self.domain)

    async def handle(self, event: BrainInput) -> BotReply | None:
        if isinstance(event, BotStopped):
            self.state.heard(event.text, event.heard, event.interrupted)
            return None
        if isinstance(event, HangUp):
            self.state.ended = event.reason
            return None
        previous = self._previous()
        started = time.perf_counter()
        parse: Parse | None = None
        timings: dict[str, float] = {}
        if isinstance(event, FinalTranscript):
            if not event.text.strip():
                return None  # a cough or a click: nothing to answer, the no-input clock keeps running
            parse = await asyncio.to_thread(self.nlu.parse, event.text, self.today)
            timings["nlu"] = _ms(started)
            started = time.perf_counter()
            decision = await self.policy.on_parse(parse)
        elif isinstance(event, DTMFDigit):
            found = await self.policy.on_dtmf(event.digit)
            if found is None:
                return None  # still collecting digits
            decision = found
        elif isinstance(event, NoInput):
            decision = await self.policy.on_no_input()
        else:  # pragma: no cover - the protocol's union is exhaustive
            return None
        timings["dialogue_step"] = round(_ms(started) - decision.action_ms, 3)  # state + policy + NLG
        if decision.action:
            timings["action"] = round(decision.action_ms, 3)
        return self._reply(decision, parse, previous, event, timings)

    def _previous(self) -> dict[str, Any]:
        last = self.state.last_bot()
        if last is None:
            return {"previous_heard": None, "previous_interrupted": None}
        return {"previous_heard": last.heard, "previous_interrupted": last.interrupted}

    def _reply(
        self,
        decision: Decision,
        parse: Parse | None,
        previous: dict[str, Any],
        event: BrainInput,
        timings: dict[str, float],
    ) -> BotReply:
        st = self.state
        if parse is not None:
            st.history.append(_caller_turn(parse))
        text = decision.text
        st.said(text)
        frame = st.flow
        turn: dict[str, Any] = turn_fields(parse) if parse is not None else {}
        turn |= {
            "flow": frame.flow if frame else None,
            "expecting": st.expecting,
            "slots": mask_mapping(st.values()),
            "act": decision.act,
            "action": decision.action,
            "action_result": decision.action_result,
            **previous,
        }
        if isinstance(event, DTMFDigit):
            turn["dtmf"] = True
        if parse is not None:
            turn["entities"] = mask_mapping(turn.get("entities") or {})
        actions: list[Action] = []
        if decision.transfer:
            target = self.domain.settings.handoff.target
            actions.append(Action("transfer", target=target, reason=decision.transfer))
            turn["handoff_reason"] = decision.transfer
        if decision.hangup:
            actions.append(Action("hangup", reason=decision.hangup))
        log.info(
            "call %s turn %d: %s → %s (%s)",
            self.call_id,
            st.turn,
            turn.get("intent"),
            decision.act,
            mask_text(text),
        )
        return BotReply(text=text, actions=tuple(actions), turn=turn, timings_ms=timings)


def _caller_turn(parse: Parse) -> HistoryTurn:
    return HistoryTurn(role="caller", text=parse.text, intent=parse.intent)


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000.0, 3)


class DialogueFactory:
    """Loads a domain once; each call gets a fresh brain. `scratch` gives each call its own back-end copy."""

    def __init__(
        self,
        domain_dir: Path,
        nlu: NLU,
        cache_dir: Path,
        scratch: Path | None = None,
        today: date | None = None,
    ) -> None:
        self.domain = load_domain(domain_dir)
        self.nlu, self.today, self.scratch = nlu, today, scratch
        self.options = dict(self.domain.settings.backend.options)
        database = self.options.get("database")
        if database is not None and not Path(str(database)).is_absolute():
            self.options["database"] = str(cache_dir / "domains" / Path(domain_dir).resolve().name / database)
        self._calls = 0
        self._check_intents()
        self.actions = self._actions(self.options)
        self._check_actions(self.actions)

    def _actions(self, options: dict[str, Any]) -> Actions:
        settings = self.domain.settings
        if self.today is not None:
            options = options | {"today": self.today.isoformat()}
        webhooks = {name: hook.model_dump() for name, hook in settings.backend.webhooks.items()}
        return load_actions(self.domain.path, options, webhooks, timeout_s=settings.timeouts.action_s)

    def _check_intents(self) -> None:
        known = set(self.nlu.labels.intents)
        flows_file = self.domain.path / "flows.yaml"
        for name, flow in self.domain.flows.items():
            for n, intent in enumerate(flow.intents or [name]):
                if intent not in known:
                    line = line_of(load_yaml(flows_file)[1], ("flows", name, "intents", n))
                    raise DomainError(
                        f"{flows_file}:{line}: flows.{name}.intents: the NLU model has no intent {intent!r} "
                        "(retrain with `voicebot train`?)"
                    )

    def _check_actions(self, actions: Actions) -> None:
        flows_file = self.domain.path / "flows.yaml"
        for name, flow in self.domain.flows.items():
            if flow.action and flow.action not in actions.names():
                line = line_of(load_yaml(flows_file)[1], ("flows", name, "action"))
                raise DomainError(
                    f"{flows_file}:{line}: flows.{name}.action: no action {flow.action!r} "
                    "(register it in the domain's actions.py or as a webhook in settings.yaml)"
                )

    def __call__(self) -> DialogueBrain:
        self._calls += 1
        actions = self.actions
        if self.scratch is not None and "database" in self.options:
            database = self.scratch / f"call-{self._calls}-{uuid.uuid4().hex[:6]}.sqlite"
            actions = self._actions(self.options | {"database": str(database)})
        return DialogueBrain(self.domain, self.nlu, actions, today=self.today)
