"""Listening grammars: what the dialogue's listening context changes in how one utterance is decoded."""

from __future__ import annotations

from voicebot.frames import ListeningContext
from voicebot.nlu.grammar import GRAMMARS, YES_NO, listening_plan

HINTS = "Acme Shop, Leeds"


def test_a_free_turn_keeps_the_domain_prompt_and_one_hypothesis() -> None:
    prompt, hints = listening_plan(ListeningContext(prompt=HINTS, hotwords=("Zyntra",)), 3)
    assert prompt == "Acme Shop, Leeds Zyntra" and hints.hypotheses == 1 and hints.fits is None
    assert listening_plan(None, 3) == (None, listening_plan(None, 1)[1])


def test_a_yes_no_question_adds_its_example_answer_but_no_beam() -> None:
    prompt, hints = listening_plan(ListeningContext(expected="yes_no", prompt=HINTS), 3)
    assert prompt == f"{HINTS} {YES_NO.prompt}" and hints.hypotheses == 1


def test_a_digit_slot_drops_the_domain_words_and_gets_a_beam_and_a_grammar() -> None:
    context = ListeningContext(
        expected="slot", slot="order_id", slot_type="digits", min_length=6, max_length=6, prompt=HINTS
    )
    prompt, hints = listening_plan(context, 3)
    assert prompt == GRAMMARS["digits"].prompt and hints.hypotheses == 3
    assert hints.fits is not None and "nine" in hints.vocabulary
    assert hints.fits("it's 4 5 7, 2 1 9") and hints.fits("for five seven to one nine")
    assert not hints.fits("4 5 7") and not hints.fits("I want to speak to someone")


def test_the_rest_of_a_number_read_with_a_pause_fits() -> None:
    context = ListeningContext(
        expected="slot", slot="order_id", slot_type="digits", min_length=6, max_length=6, partial="457"
    )
    fits = listening_plan(context, 3)[1].fits
    assert fits is not None and fits("two one nine") and fits("4 5 7 2 1 9") and not fits("2 1 9 8 7 6 5 4")


def test_other_slot_types_get_a_beam_but_no_constrained_decode() -> None:
    context = ListeningContext(expected="slot", slot="refund_amount", slot_type="amount", prompt=HINTS)
    prompt, hints = listening_plan(context, 3)
    assert prompt == GRAMMARS["amount"].prompt and hints.hypotheses == 3 and not hints.vocabulary
    unknown = ListeningContext(expected="slot", slot="street", slot_type="text", prompt=HINTS)
    assert listening_plan(unknown, 3) == (HINTS, listening_plan(None, 1)[1])
