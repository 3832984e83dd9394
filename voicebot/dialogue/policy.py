"""The policy: given the state and one caller event, decide what to say and do next.

Order of precedence for a spoken turn: sustained frustration → hand-off; "start over"; "repeat that";
goodbye; asking for a person; then the step the bot is in (a confirmation, a slot prompt, or the open
question), where a new task's intent switches topic and a question gets its answer before the task resumes.
Misunderstandings and silences climb the same ladder: reprompt, then the keypad, then a person. A number
the bot holds can be repaired at any of those steps, and right after a look-up read it back (`repair`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from voicebot.dialogue import repair, understand
from voicebot.dialogue.actions import ActionFailed, Actions
from voicebot.dialogue.decision import Decision
from voicebot.dialogue.ladder import Ladder
from voicebot.dialogue.nlg import NLG
from voicebot.dialogue.slots import Filled, SlotReader, read_whole, valid
from voicebot.dialogue.state import DialogueState, FlowFrame
from voicebot.dialogue.understand import START_OVER
from voicebot.domain.dialogue_spec import Flow
from voicebot.domain.loader import Domain
from voicebot.nlu.model import OOS
from voicebot.nlu.parser import Parse

# The model's own out-of-scope class at least this sure: the caller asked for something the domain does not
# do (a hand-off says "out of scope"); below it, the bot misunderstood ("not understood").
SURE_OUT_OF_SCOPE = 0.5


class Policy(Ladder):
    def __init__(
        self, domain: Domain, nlg: NLG, actions: Actions, state: DialogueState, call_id: str
    ) -> None:
        self.domain, self.nlg, self.actions, self.state, self.call_id = domain, nlg, actions, state, call_id
        self.meta = domain.settings.intents
        self.reader = SlotReader(domain, actions, call_id)
        self.heard: list[str] = []  # the current turn's transcript, then the recogniser's other hypotheses
        self.out_of_scope = False  # the last caller turn was one the model was sure the domain does not cover

    # ------------------------------------------------------------------------------------ entry points

    async def on_parse(self, parse: Parse, alternatives: Sequence[str] = ()) -> Decision | None:
        """One caller turn; `alternatives` are the recogniser's other hypotheses of it. None: the turn was
        the start of a number, and the caller is still reading it out."""
        st, d = self.state, Decision()
        st.turn += 1
        st.no_input = 0
        st.dtmf_done = False
        self.heard = [parse.text, *alternatives]
        self.out_of_scope = parse.intent == OOS and parse.confidence >= SURE_OUT_OF_SCOPE
        partial = st.take_number_so_far()  # spoken or typed: keys, then "two one nine", is one number
        done, st.done = st.done, None
        intent = parse.intent if parse.confidence >= self.domain.settings.min_confidence else OOS
        if intent == OOS:
            intent = understand.rescue(self.domain, parse)
        if st.expecting in ("confirm", "anything_else"):
            intent = understand.yes_no(self.domain, parse.text, intent)
        handoff = self.domain.settings.handoff
        st.frustrated_turns = (
            st.frustrated_turns + 1 if understand.frustrated(self.domain, parse, intent) else 0
        )
        if handoff.negative_turns and st.frustrated_turns >= handoff.negative_turns:
            return self._handoff(
                d, f"caller frustrated for {st.frustrated_turns} turns in a row", "frustration"
            )
        if START_OVER.search(parse.text):
            st.reset()
            return d.say(self.nlg.render("start_over"), "start_over")
        held = repair.target(self.domain, st, done)  # a digit corrected outranks what the words resemble
        fixes = held is not None and repair.corrected(self.domain.slots[held.slot], held, parse.text)
        if intent == self.meta.repeat and not fixes:
            return d.say(st.last_reply or self.nlg.render("how_can_i_help"), "repeat")
        if intent == self.meta.goodbye and not fixes:
            return self._goodbye(d, "caller said goodbye")
        if intent in handoff.intents:
            return self._handoff(d, "caller asked for a person", "asked_for_person")
        if intent in handoff.person_only:  # a complaint: a person settles it, the bot would only deflect
            if f"handoff_{intent}" in self.domain.responses:  # "I'm sorry about that", then the transfer
                d.say(self.nlg.render(f"handoff_{intent}"))
            d.transfer_code = "out_of_scope"  # the hand-off summary's reason: the bot does not do this
            return self._transfer(d, f"{intent} needs a person")
        if held is not None and (repaired := await self._repair(parse, intent, held, d)) is not None:
            return repaired
        if st.flow is not None and st.expecting == "confirm":
            return await self._at_confirm(parse, intent, d)
        if st.flow is not None and st.expecting == "slot":
            return await self._at_slot(parse, intent, d, partial)
        return await self._open(parse, intent, d)

    async def on_noise(self) -> Decision:
        """The recogniser heard only noise: say so, and ask again what was asked (the no-match ladder)."""
        self.state.no_input = 0
        self.out_of_scope = False
        return self._no_match(Decision().say(self.nlg.render("noisy_line"), "noisy_line"))

    async def on_dtmf(self, digit: str) -> Decision | None:
        """Keypad: digit entry for the slot being asked (ended by # or its length), yes/no, or the menu."""
        st, d = self.state, Decision()
        st.no_input = 0
        self.out_of_scope = False
        if digit == "#" and st.dtmf_done:  # the habitual # after an entry that already ended by its length
            st.dtmf_done = False
            return None
        st.dtmf_done = False
        frame = st.flow
        slot = self.domain.slots.get(frame.asking or "") if frame and st.expecting == "slot" else None
        if frame is not None and slot is not None and slot.dtmf and frame.asking:
            value = st.key(digit, slot.max_length)  # a number begun by voice goes on on the keypad
            if value is None:
                return None
            if value and valid(slot, value):
                st.set_slot(frame.asking, value, 1.0, "dtmf")
                st.no_match = 0
                return await self._advance(d)
            d.say(self.nlg.render(slot.invalid or "invalid_value"), "invalid")
            return self._no_match(d)
        st.partial = ""
        if frame is not None and st.expecting == "confirm" and digit in "12":
            return await self._confirmed(d) if digit == "1" else self._declined(d)
        return await self._menu(digit, d)

    async def on_no_input(self) -> Decision:
        st, d = self.state, Decision()
        st.no_input += 1
        limit = self.domain.settings.retries.no_input
        if st.no_input >= limit:
            return self._handoff(d, f"no input {st.no_input} times", "no_input")
        if not st.asking_rest:
            d.say(self.nlg.render("noinput"), "noinput")
        return self._reprompt(d, keypad=st.no_input == limit - 1)

    # ------------------------------------------------------------------------------------- repairs

    async def _repair(self, parse: Parse, intent: str, held: repair.Target, d: Decision) -> Decision | None:
        """One digit corrected, a whole new number after a look-up or at the confirmation, or "that's wrong":
        None when the turn is none of them (it is then handled as the step the bot is in; a new task after a
        look-up too)."""
        st, slot = self.state, self.domain.slots[held.slot]
        if held.rerun is not None and intent in self.domain.flow_intents():
            return None
        value = repair.corrected(slot, held, parse.text)
        if value is None and (held.rerun is not None or st.expecting == "confirm"):  # "no, it's 457218"
            wrong = repair.ruled_out(slot, parse.text)  # "457219, not 457218": never the one ruled out
            options = await self.reader.read(held.slot, self.heard, wrong)  # "yes, 457219" is no change
            value = options[0] if options and options[0] != held.value else None
        asked = st.expecting == "slot" and held.rerun is None
        if value is None and (asked or not repair.says_wrong(self.domain, st, held, parse.text)):
            return None
        if held.rerun is not None:
            st.stack.append(FlowFrame(held.rerun))
        frame = st.flow
        assert frame is not None
        frame.confirmed = False
        st.no_match = 0
        st.forgotten.pop(held.slot, None)
        if value is None:  # wrong, and no word on which part: ask for the whole number again
            st.slots.pop(held.slot, None)
            return await self._advance(d.say(self.nlg.render("wrong_value"), "wrong_value"))
        st.set_slot(held.slot, value, parse.confidence, "speech")
        return await self._advance(d.say(self.nlg.render("corrected"), "corrected"))

    # ------------------------------------------------------------------------------------------- steps

    async def _open(self, parse: Parse, intent: str, d: Decision) -> Decision:
        st = self.state
        flow = self.domain.flow_for_intent(intent) if intent != OOS else None
        if flow is not None:
            return await self._start(flow, parse, d)
        answer = understand.answer(self.domain, parse, intent)
        if answer:
            st.no_match = 0
            d.say(answer, "answer")
            return self._anything_else(d)
        if st.expecting == "anything_else" and intent == self.meta.deny:
            return self._goodbye(d, "caller needed nothing else")
        if intent in (self.meta.affirm, self.meta.greet):
            st.expecting = None
            return d.say(self.nlg.render("how_can_i_help"), "listen")
        return self._no_match(d.say(self.nlg.render("nomatch_top"), "nomatch"), reprompt=False)

    async def _start(self, flow: str, parse: Parse | None, d: Decision) -> Decision:
        st = self.state
        if st.flow is None or st.flow.flow != flow:
            st.stack.append(FlowFrame(flow))
        st.no_match = 0
        if parse is not None:
            await self._store(parse)
        return await self._advance(d)

    async def _at_slot(self, parse: Parse, intent: str, d: Decision, partial: str) -> Decision | None:
        st = self.state
        frame = st.flow
        assert frame is not None and frame.asking is not None
        asking, slot = frame.asking, self.domain.slots[frame.asking]
        found = await self._store(parse)
        other = self.domain.flow_for_intent(intent) if intent != OOS else None
        sure = parse.confidence >= self.domain.settings.switch_confidence
        switching = other is not None and other != frame.flow and sure
        if switching and other is not None:  # a new task asked for mid-task: do it, then come back
            return await self._start(other, parse, d)
        if asking not in found.values and not switching:
            heard = repair.start_of_number(slot, parse.text)
            so_far = repair.continue_number(slot, partial, heard) if heard else ""
            whole = so_far and valid(slot, so_far)
            options = [so_far] if whole else await self.reader.read(asking, self.heard)
            value = options[0] if options else read_whole(slot, parse.text)
            if heard and not options and len(so_far) < (slot.min_length or 0):
                st.partial = so_far  # the caller paused mid-number: wait for the rest
                return None
            if value is not None and valid(slot, value):
                st.set_slot(asking, value, parse.confidence, "speech")
                found.values[asking] = value
            elif value is not None and asking not in found.invalid:
                found.invalid.append(asking)
        if any(name in self._flow(frame).slot_names() for name in found.values):
            st.no_match = 0
            if found.corrected:
                d.say(self.nlg.render("corrected"), "corrected")
            return await self._advance(d)
        answer = understand.answer(self.domain, parse, intent)
        if answer:
            return await self._advance(d.say(answer, "answer"))
        if intent == self.meta.deny:
            return self._declined(d, asked=False)
        if asking in found.invalid:
            return self._no_match(d.say(self.nlg.render(slot.invalid or "invalid_value"), "invalid"))
        return self._no_match(d.say(self.nlg.render("nomatch"), "nomatch"))

    async def _at_confirm(self, parse: Parse, intent: str, d: Decision) -> Decision:
        frame = self.state.flow
        assert frame is not None
        found = await self._store(parse)
        if any(name in self._flow(frame).slot_names() for name in found.values):
            if found.corrected:
                d.say(self.nlg.render("corrected"), "corrected")
            return await self._advance(d)
        if wrong := repair.negated(found, self.state, self._flow(frame).slot_names()):  # "no, not Leeds"
            for name in wrong:
                self.state.slots.pop(name, None)
            return await self._advance(d.say(self.nlg.render("wrong_value"), "wrong_value"))
        if intent == self.meta.affirm:
            return await self._confirmed(d)
        if intent == self.meta.deny:
            return self._declined(d)
        other = self.domain.flow_for_intent(intent) if intent != OOS else None
        if other is not None and other != frame.flow:
            return await self._start(other, parse, d)
        answer = understand.answer(self.domain, parse, intent)
        if answer:
            return await self._advance(d.say(answer, "answer"))
        return self._no_match(d.say(self.nlg.render("confirm_yes_no"), "nomatch"))

    async def _confirmed(self, d: Decision) -> Decision:
        frame = self.state.flow
        assert frame is not None
        frame.confirmed = True
        return await self._advance(d)

    def _declined(self, d: Decision, asked: bool = True) -> Decision:
        """No at the confirmation (the flow's own words), or no instead of an answer (the generic ones)."""
        frame = self.state.stack.pop()
        flow = self._flow(frame)
        name = (flow.declined if asked else None) or "declined"
        d.say(self.nlg.render(name, self.state.values()), "declined")
        return self._anything_else(d)

    # ----------------------------------------------------------------------------------- flow running

    async def _advance(self, d: Decision) -> Decision:
        """Ask for the next missing slot, then confirm, then run the action."""
        st = self.state
        frame = st.flow
        assert frame is not None
        flow = self._flow(frame)
        for spec in flow.slot_specs():
            if spec.required and spec.slot not in st.slots:
                frame.asking, st.expecting = spec.slot, "slot"
                return d.say(self.nlg.render(spec.prompt_name(), st.values()), d.act or "prompt")
        frame.asking = None
        if flow.confirm and not frame.confirmed:
            st.expecting = "confirm"
            return d.say(self.nlg.render(flow.confirm, st.values()), d.act or "confirm")
        return await self._run(st.stack.pop(), flow, d)

    async def _run(self, frame: FlowFrame, flow: Flow, d: Decision) -> Decision:
        st = self.state
        values: dict[str, object] = dict(st.values())
        d.act = "action"
        if flow.action is not None:
            d.action = flow.action
            args = {name: st.values().get(name) for name in flow.slot_names()}
            d.action_started = time.perf_counter()
            try:
                result = await self.actions.call(flow.action, args, self.call_id)
            except ActionFailed as exc:
                d.action_done = time.perf_counter()
                d.action_result = "failed"
                d.say(self.nlg.render("action_error"))
                if self.domain.settings.handoff.on_action_error:
                    return self._handoff(d, f"back end error: {exc}", "backend_error")
                return self._anything_else(d)
            d.action_done = time.perf_counter()
            values |= result.data
            d.action_result = "ok" if result.ok else (result.error or "failed")
            st.done = frame.flow  # its answer read the number back: a correction next turn runs it again
            if not result.ok:
                return await self._failed(frame, flow, result.error, values, d)
        st.no_match = 0
        d.say(self.nlg.render(flow.success_for(values) or "action_error", values))
        if flow.then == "hangup":
            return self._goodbye(d, f"{flow.title} done")
        if flow.then == "transfer":
            return self._handoff(d, f"{flow.title} needs a person", "out_of_scope")
        return await self._resume_or_anything_else(d)

    async def _failed(
        self, frame: FlowFrame, flow: Flow, error: str | None, values: dict[str, object], d: Decision
    ) -> Decision:
        failure = flow.failure_for(error)
        if failure is None:  # the loader insists on a default; a domain edited live may still lack one
            return self._anything_else(d.say(self.nlg.render("action_error")))
        d.say(self.nlg.render(failure.say, values))
        if failure.retry:
            self.state.done = None
            dropped = self.state.slots.pop(failure.retry, None)
            if dropped is not None:
                self.state.forgotten[failure.retry] = dropped.value
            frame.confirmed = False
            self.state.stack.append(frame)
            return await self._advance(d)
        return await self._resume_or_anything_else(d)

    async def _resume_or_anything_else(self, d: Decision) -> Decision:
        frame = self.state.flow
        if frame is None:
            return self._anything_else(d)
        d.say(self.nlg.render("resume", {"flow_title": self._flow(frame).title}))
        return await self._advance(d)

    # ------------------------------------------------------------------------------------------ menu

    async def _menu(self, digit: str, d: Decision) -> Decision:
        menu = self.domain.menu
        option = menu.options.get(digit) if menu is not None else None
        if option is None:
            d.say(self.nlg.render("menu_invalid"), "menu_invalid")
            if menu is not None:
                self.state.expecting = "menu"
                d.say(self.nlg.render(menu.prompt))
            return d
        self.state.no_match = 0
        if option.flow:
            self.state.stack.clear()
            d.act = "menu"
            return await self._start(option.flow, None, d)
        if option.transfer:
            return self._handoff(d, f"caller pressed {digit} for a person", "asked_for_person")
        if option.say:
            return self._anything_else(d.say(self.nlg.render(option.say), "answer"))
        assert menu is not None
        return d.say(self.nlg.render(menu.prompt), "menu")

    # -------------------------------------------------------------------------------------- helpers

    async def _store(self, parse: Parse) -> Filled:
        """Keep every slot value this turn carries (call memory: later tasks reuse them)."""
        frame = self.state.flow
        found = await self.reader.entities(
            parse, self._flow(frame).slot_names() if frame else None, self.heard
        )
        for name, value in found.values.items():
            if self.state.set_slot(name, value, parse.confidence, "speech"):
                found.corrected.append(name)
            found.filled.append(name)
        return found
