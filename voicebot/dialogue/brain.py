"""`DialogueBrain`: the domain's dialogue engine behind the pipeline's `Brain` protocol.

Per caller event: NLU parse (off the event loop), policy decision, spoken reply, and what it understood for
the turn record (intent, slots, action and its result) with personal data masked. Before each caller turn
it says what it listens for: the slot it asked for (its type and length), a yes/no answer, a menu choice or
anything, with the domain's ASR hints as the prompt; while it asks for a number, a longer pause ends the
turn, and a number read with a pause in it is held as `partial` until the rest comes (no reply meanwhile).
A transcript the recogniser rejected as noise gets "the line is noisy" instead of silence.
`DialogueFactory` loads the domain, the NLU and the back end once and makes one brain per call.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

from voicebot.brain import BrainInput
from voicebot.dialogue.actions import Actions, load_actions
from voicebot.dialogue.decision import Decision
from voicebot.dialogue.nlg import NLG, fixed_phrases
from voicebot.dialogue.policy import Policy
from voicebot.dialogue.state import DialogueState, HistoryTurn
from voicebot.domain.loader import FILLER_RESPONSE, Domain, load_domain
from voicebot.domain.yamlfile import DomainError, line_of, load_yaml
from voicebot.frames import (
    Action,
    BotReply,
    BrainTimes,
    DTMFDigit,
    Expected,
    FinalTranscript,
    HangUp,
    ListeningContext,
    NoInput,
    PlaybackReport,
    Understanding,
)
from voicebot.nlu.brain import understood
from voicebot.nlu.parser import Parse, Parser
from voicebot.pii import mask_mapping, mask_text

log = logging.getLogger("voicebot.dialogue")
EXPECTED: dict[str, Expected] = {"confirm": "yes_no", "anything_else": "yes_no", "menu": "choice"}


class DialogueBrain:
    def __init__(
        self,
        domain: Domain,
        nlu: Parser,
        actions: Actions,
        call_id: str | None = None,
        today: date | None = None,
    ) -> None:
        self.domain, self.nlu, self.today = domain, nlu, today
        self.call_id = call_id or uuid.uuid4().hex  # 32 hex digits: never mistaken for a phone number
        self.no_input_s: float | None = domain.settings.timeouts.no_input_s
        self.asr_prompt: str | None = ", ".join(domain.settings.asr_hints) or None  # the domain's vocabulary
        self.state = DialogueState()
        self.nlg = NLG(domain, today)
        self.policy = Policy(domain, self.nlg, actions, self.state, self.call_id)

    def greeting(self) -> BotReply | None:
        text = self.nlg.render("greeting")
        self.state.said(text)
        return BotReply(text=text, understanding=Understanding(act="greeting"))

    def fixed_phrases(self) -> list[str]:
        return fixed_phrases(self.domain)

    def filler(self) -> str | None:
        """The domain's `one_moment` response (its first variant: one fixed prompt, synthesised once), said
        while a slow turn is worked on; None: the engine's `hold.filler`."""
        variants = self.domain.responses.get(FILLER_RESPONSE)
        return variants[0] if variants else None

    def listening_context(self) -> ListeningContext | None:
        st = self.state
        asking = st.flow.asking if st.flow is not None else None
        slot = self.domain.slots.get(asking or "") if st.expecting == "slot" else None
        if slot is not None:
            digits = slot.type == "digits"
            return ListeningContext(
                expected="slot",
                slot=asking,
                slot_type=slot.type,
                min_length=slot.min_length,
                max_length=slot.max_length,
                prompt=self.asr_prompt,
                end_silence_ms=self.domain.settings.timeouts.digits_end_silence_ms if digits else None,
                partial=st.number_so_far() or None,
            )
        return ListeningContext(expected=EXPECTED.get(st.expecting or "", "free"), prompt=self.asr_prompt)

    async def handle(self, event: BrainInput) -> BotReply | None:
        if isinstance(event, PlaybackReport):
            self.state.heard(event.text, event.heard, event.interrupted)
            return None
        if isinstance(event, HangUp):
            self.state.ended = event.reason
            return None
        parse: Parse | None = None
        times = BrainTimes()
        if isinstance(event, FinalTranscript) and not event.text.strip():
            if event.details.get("rejected") != "noise":
                return None  # a cough or a click: nothing to answer, the no-input clock keeps running
            decision = await self.policy.on_noise()
        elif isinstance(event, FinalTranscript):
            parse = await asyncio.to_thread(self.nlu.parse, event.text, self.today)
            times = BrainTimes(nlu_done=time.perf_counter())
            said = await self.policy.on_parse(parse, alternatives=event.nbest)
            if said is None:  # the start of a number: the caller goes on after the pause
                self.state.history.append(_caller_turn(parse))
                return None
            decision = said
        elif isinstance(event, DTMFDigit):
            found = await self.policy.on_dtmf(event.digit)
            if found is None:
                return None  # still collecting digits
            decision = found
        elif isinstance(event, NoInput):
            decision = await self.policy.on_no_input()
        else:  # pragma: no cover - the protocol's union is exhaustive
            return None
        times = replace(times, action_started=decision.action_started, action_done=decision.action_done)
        return self._reply(decision, parse, event, times)

    def _reply(
        self, decision: Decision, parse: Parse | None, event: BrainInput, times: BrainTimes
    ) -> BotReply:
        st = self.state
        if parse is not None:
            st.history.append(_caller_turn(parse))
        text = decision.text
        st.said(text)
        frame = st.flow
        base = (
            understood(parse, mask_mapping(parse.entity_values())) if parse is not None else Understanding()
        )
        turn = replace(
            base,
            flow=frame.flow if frame else None,
            expecting=st.expecting,
            slots=mask_mapping(st.values()),
            act=decision.act,
            action=decision.action,
            action_result=decision.action_result,
            dtmf=isinstance(event, DTMFDigit),
            handoff_reason=decision.transfer or None,
        )
        actions: list[Action] = []
        if decision.transfer:
            target = self.domain.settings.handoff.target
            actions.append(Action("transfer", target, decision.transfer, decision.transfer_code))
        if decision.hangup:
            actions.append(Action("hangup", reason=decision.hangup))
        log.info(
            "call %s turn %d: %s → %s (%s)", self.call_id, st.turn, turn.intent, decision.act, mask_text(text)
        )
        return BotReply(text=text, actions=tuple(actions), understanding=turn, times=times)


def _caller_turn(parse: Parse) -> HistoryTurn:
    return HistoryTurn(role="caller", text=parse.text, intent=parse.intent)


class DialogueFactory:
    """Loads a domain once; each call gets a fresh brain. `scratch` gives each call its own back-end copy."""

    def __init__(
        self,
        domain_dir: Path,
        nlu: Parser,
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
        named = [("flows.yaml", ("flows", n, "action"), f.action) for n, f in self.domain.flows.items()]
        named += [("slots.yaml", ("slots", n, "lookup"), s.lookup) for n, s in self.domain.slots.items()]
        for file, loc, action in named:
            if action and action not in actions.names():
                path = self.domain.path / file
                line = line_of(load_yaml(path)[1], loc)
                raise DomainError(
                    f"{path}:{line}: {'.'.join(loc)}: no action {action!r} "
                    "(register it in the domain's actions.py or as a webhook in settings.yaml)"
                )

    def __call__(self) -> DialogueBrain:
        self._calls += 1
        actions = self.actions
        if self.scratch is not None and "database" in self.options:
            database = self.scratch / f"call-{self._calls}-{uuid.uuid4().hex[:6]}.sqlite"
            actions = self._actions(self.options | {"database": str(database)})
        return DialogueBrain(self.domain, self.nlu, actions, today=self.today)
