"""The policy's ladder and exits: a misunderstanding or a silence climbs reprompt → keypad → a person; every
turn that ends a conversation (goodbye, a hand-off with its reason code, a transfer) ends it here.

A base class of `Policy` (voicebot/dialogue/policy.py), which holds the state, the domain and the NLG these
read, so the policy's turn logic and the ways out of it stay apart."""

from __future__ import annotations

from voicebot.dialogue.decision import Decision
from voicebot.dialogue.nlg import NLG
from voicebot.dialogue.state import DialogueState, FlowFrame
from voicebot.domain.dialogue_spec import Flow
from voicebot.domain.loader import Domain


class Ladder:
    domain: Domain
    nlg: NLG
    state: DialogueState
    out_of_scope: bool  # the last caller turn was one the model was sure the domain does not cover

    def _no_match(self, d: Decision, reprompt: bool = True) -> Decision:
        st = self.state
        st.no_match += 1
        limit = self.domain.settings.retries.no_match
        if st.no_match >= limit:
            why = "out_of_scope" if self.out_of_scope else "not_understood"
            return self._handoff(d, f"caller not understood {st.no_match} times", why)
        keypad = st.no_match == limit - 1
        return self._reprompt(d, keypad) if reprompt or keypad else d

    def _reprompt(self, d: Decision, keypad: bool) -> Decision:
        """Say again what the bot is waiting for; on the keypad rung, say how to use the keypad."""
        st = self.state
        frame = st.flow
        if st.expecting == "slot" and frame is not None and frame.asking:
            spec = next(s for s in self._flow(frame).slot_specs() if s.slot == frame.asking)
            if st.asking_rest:
                so_far = {"partial": st.number_so_far()}  # typed or said: the caller goes on either way
                d.say(self.nlg.render("partial_number", so_far), d.act or "partial")
            else:
                d.say(self.nlg.render(spec.prompt_name(), st.values()))
            if keypad and self.domain.slots[frame.asking].dtmf:
                d.say(self.nlg.render("dtmf_hint"))
            return d
        if st.expecting == "confirm" and frame is not None:
            return d.say(self.nlg.render(self._flow(frame).confirm or "confirm_yes_no", st.values()))
        if keypad and self.domain.menu is not None:
            st.expecting = "menu"
            return d.say(self.nlg.render(self.domain.menu.prompt))
        if st.expecting == "anything_else":
            return d.say(self.nlg.render("anything_else"))
        return d.say(self.nlg.render("how_can_i_help"))

    def _anything_else(self, d: Decision) -> Decision:
        self.state.expecting = "anything_else"
        return d.say(self.nlg.render("anything_else"))

    def _goodbye(self, d: Decision, reason: str) -> Decision:
        self.state.expecting = None
        d.hangup = reason
        return d.say(self.nlg.render("goodbye"), "goodbye")

    def _handoff(self, d: Decision, reason: str, code: str) -> Decision:
        """A transfer with its reason as a code for the hand-off summary (`voicebot.handoff.REASONS`); the
        caller hears why first, where the domain words a `handoff_<code>` response."""
        d.transfer_code = code
        if f"handoff_{code}" in self.domain.responses:
            d.say(self.nlg.render(f"handoff_{code}"))
        return self._transfer(d, reason)

    def _transfer(self, d: Decision, reason: str) -> Decision:
        self.state.handoff_reason = d.transfer = reason
        self.state.expecting = None
        return d.say(self.nlg.render("transfer"), "transfer")

    def _flow(self, frame: FlowFrame) -> Flow:
        return self.domain.flows[frame.flow]
