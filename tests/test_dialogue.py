"""The dialogue policy on the shop domain and its real SQLite back end, fed parses directly.

Parses are the policy's input type, so building them here tests the policy alone (no model in the loop):
which step follows which, slot carry-over, corrections, topic switches, the no-match/no-input ladders,
DTMF entry, hand-off reasons and action failures. The model-in-the-loop version is the conversation suite.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from voicebot.asr.turnend import decide
from voicebot.config import TurnConfig
from voicebot.dialogue.actions import ActionResult, Actions, load_actions
from voicebot.dialogue.brain import DialogueBrain
from voicebot.dialogue.decision import Decision
from voicebot.dialogue.nlg import NLG, say_amount, say_date, say_digits, say_email, say_phone
from voicebot.dialogue.policy import Policy
from voicebot.dialogue.slots import SlotReader
from voicebot.dialogue.state import DialogueState
from voicebot.domain.loader import Domain, load_domain
from voicebot.frames import DTMFDigit, FinalTranscript
from voicebot.nlu.parser import Entity, Parse
from voicebot.testing.fakes import ScriptedNLU

SHOP = Path(__file__).resolve().parent.parent / "domains" / "shop"
TODAY = date(2026, 11, 29)


def P(
    text: str, intent: str = "oos", conf: float = 0.99, *ents: tuple[str, str, str | None], **kw: Any
) -> Parse:
    at = [max(text.find(raw), 0) for _, raw, _ in ents]  # where the tagger would have found the span
    entities = [
        Entity(type=t, raw=raw, value=v, start=k, end=k + len(raw))
        for (t, raw, v), k in zip(ents, at, strict=True)
    ]
    negative = kw.get("negative", 0.1)
    sentiment = {
        "label": "negative" if negative > 0.5 else "neutral",
        "scores": {"negative": negative, "neutral": 1 - negative, "positive": 0.0},
        "frustration": kw.get("frustration", 0.0),
        "frustrated": kw.get("frustration", 0.0) > 0.3,
    }
    return Parse(text=text, intent=intent, confidence=conf, entities=entities, sentiment=sentiment)


class Bot:
    def __init__(self, domain: Domain, actions: Actions) -> None:
        self.state = DialogueState()
        self.policy = Policy(domain, NLG(domain, TODAY), actions, self.state, "test")

    def hear(self, parse: Parse, *alternatives: str) -> Decision | None:
        """A caller turn; None when the bot waits for more (the start of a number)."""
        return asyncio.run(self.policy.on_parse(parse, alternatives))

    def say(self, parse: Parse, *alternatives: str) -> Decision:
        d = self.hear(parse, *alternatives)
        assert d is not None, "the bot said nothing"
        return d

    def keys(self, digits: str) -> list[Decision]:
        out = [asyncio.run(self.policy.on_dtmf(d)) for d in digits]
        return [d for d in out if d is not None]

    def silence(self) -> Decision:
        return asyncio.run(self.policy.on_no_input())


@pytest.fixture(scope="module")
def domain() -> Domain:
    return load_domain(SHOP)


@pytest.fixture
def bot(domain: Domain, tmp_path: Path) -> Bot:
    actions = load_actions(SHOP, {"database": str(tmp_path / "shop.sqlite"), "today": TODAY.isoformat()})
    return Bot(domain, actions)


def test_track_order_asks_then_answers_from_the_database(bot: Bot) -> None:
    d = bot.say(P("where is my order", "track_order"))
    assert d.act == "prompt" and "order number" in d.text
    d = bot.say(P("eight three oh one one two", "inform"))  # whole answer read when the tagger misses
    assert d.action == "order_status" and d.action_result == "ok"
    assert "shipped" in d.text and "8 3 0, 1 1 2" in d.text and "Tuesday the 1st of December" in d.text
    assert bot.state.expecting == "anything_else"


def test_intent_with_entity_skips_the_prompt_and_unknown_order_reasks(bot: Bot) -> None:
    d = bot.say(P("track 123456", "track_order", 0.99, ("order_id", "123456", "123456")))
    assert d.action_result == "unknown_order"
    assert "couldn't find" in d.text and "order number" in d.text  # retry: the slot is asked again
    assert bot.state.expecting == "slot" and "order_id" not in bot.state.slots


def test_cancel_confirm_yes_runs_action_and_second_cancel_says_already(bot: Bot) -> None:
    d = bot.say(P("cancel order 457219", "cancel_order", 0.99, ("order_id", "457219", "457219")))
    assert d.act == "confirm" and "4 5 7, 2 1 9" in d.text
    d = bot.say(P("yes", "affirm"))
    assert d.action == "cancel_order" and d.action_result == "ok" and "cancelled" in d.text
    d = bot.say(P("cancel it again", "cancel_order"))  # order id carried over from the call's memory
    assert d.act == "confirm"
    d = bot.say(P("yes", "affirm"))
    assert d.action_result == "already_cancelled" and "already cancelled" in d.text


def test_correction_at_confirmation_updates_and_reconfirms(bot: Bot) -> None:
    bot.say(P("cancel 830112", "cancel_order", 0.99, ("order_id", "830112", "830112")))
    d = bot.say(
        P(
            "no, it's four five seven two one nine",
            "deny",
            0.98,
            ("phone", "four five seven two one nine", None),
        )
    )
    assert d.act == "corrected" and "4 5 7, 2 1 9" in d.text and "confirm" in d.text
    assert bot.state.slots["order_id"].value == "457219"
    d = bot.say(P("no", "deny"))
    assert d.act == "declined" and "left order 4 5 7, 2 1 9" in d.text


def test_shipped_order_cannot_be_cancelled(bot: Bot) -> None:
    bot.say(P("cancel 830112", "cancel_order", 0.99, ("order_id", "830112", "830112")))
    d = bot.say(P("yes", "affirm"))
    assert d.action_result == "already_shipped" and "already shipped" in d.text


def move_to_leeds() -> Parse:
    """An address change that names the order and the city at once (the street is asked next)."""
    return P(
        "move 611420 to Leeds",
        "change_shipping_address",
        0.98,
        ("order_id", "611420", "611420"),
        ("delivery_city", "Leeds", "Leeds"),
    )


def test_multiple_entities_and_city_correction_in_address_change(bot: Bot) -> None:
    d = bot.say(move_to_leeds())
    assert d.act == "prompt" and "street" in d.text  # only the missing slot is asked
    d = bot.say(P("twelve high street", "oos", 0.9))
    assert d.act == "confirm" and "twelve high street, Leeds" in d.text
    d = bot.say(
        P(
            "actually change the city to York",
            "change_shipping_address",
            0.6,
            ("delivery_city", "York", "York"),
        )
    )
    assert "changed" in d.text and "twelve high street, York" in d.text
    d = bot.say(P("yes", "affirm"))
    assert d.action_result == "ok" and "York" in d.text


def test_topic_switch_mid_flow_then_resume(bot: Bot) -> None:
    bot.say(P("I want a refund", "get_refund"))
    assert bot.state.expecting == "slot"
    d = bot.say(P("wait where is order 830112", "track_order", 0.99, ("order_id", "830112", "830112")))
    assert d.action == "order_status" and "back to your refund" in d.text
    assert d.act == "action" and "Shall I open it" in d.text  # order id carried into the resumed refund
    d = bot.say(P("yes", "affirm"))
    assert d.action_result == "not_delivered"


def test_faq_question_mid_flow_is_answered_then_the_prompt_repeats(bot: Bot) -> None:
    bot.say(P("track my order", "track_order"))
    d = bot.say(P("how long does delivery take", "delivery_period", 0.95))
    assert "working days" in d.text and "order number" in d.text
    assert bot.state.expecting == "slot"


def test_no_match_ladder_reprompt_then_keypad_then_transfer(bot: Bot) -> None:
    bot.say(P("track my order", "track_order"))
    first = bot.say(P("blah", "oos", 0.4))
    assert first.act == "nomatch" and "order number" in first.text and "keypad" not in first.text
    second = bot.say(P("blah blah", "oos", 0.4))
    assert "keypad" in second.text
    third = bot.say(P("blah blah blah", "oos", 0.4))
    assert third.transfer and "not understood 3 times" in third.transfer


def test_dtmf_digit_entry_with_hash_and_star(bot: Bot) -> None:
    bot.say(P("track my order", "track_order"))
    assert bot.keys("12*") == []  # collecting; * clears
    decisions = bot.keys("932017")  # six digits: entry ends by itself at max_length
    assert len(decisions) == 1 and "delivered" in decisions[0].text
    assert bot.state.slots["order_id"].source == "dtmf"


def test_dtmf_menu_at_top_level_and_invalid_key(bot: Bot) -> None:
    (d,) = bot.keys("7")
    assert d.act == "menu_invalid" and "Press 1" in d.text
    (d,) = bot.keys("2")
    assert bot.state.flow is not None and bot.state.flow.flow == "cancel_order" and "order number" in d.text
    (d,) = bot.keys("0") if False else (bot.say(P("agent", "contact_human_agent")),)
    assert d.transfer == "caller asked for a person"


def test_a_complaint_is_handed_to_a_person_in_the_domains_words(domain: Domain, tmp_path: Path) -> None:
    """`handoff.person_only`: a complaint is transferred at once, mid-task too, `handoff_complaint` said
    before `transfer`; a domain without that response says its plain `transfer`."""
    actions = load_actions(SHOP, {"database": str(tmp_path / "shop.sqlite"), "today": TODAY.isoformat()})
    bot = Bot(domain, actions)
    bot.say(P("where is my order", "track_order"))
    d = bot.say(P("I want to complain", "complaint"))
    assert d.transfer == "complaint needs a person" and "customer care" in d.text
    assert bot.state.handoff_reason == d.transfer
    responses = {k: v for k, v in domain.responses.items() if k != "handoff_complaint"}
    plain = dataclasses.replace(domain, responses=responses)
    d = Bot(plain, actions).say(P("I want to complain", "complaint"))
    assert d.transfer == "complaint needs a person" and d.text == domain.responses["transfer"][0]


def test_no_input_ladder(bot: Bot) -> None:
    one = bot.silence()
    assert one.act == "noinput" and "didn't hear" in one.text
    two = bot.silence()
    assert "Press 1" in two.text  # keypad rung offers the menu
    three = bot.silence()
    assert three.transfer and "no input" in three.transfer


def test_sustained_frustration_escalates_but_one_angry_task_does_not(bot: Bot) -> None:
    d = bot.say(P("cancel my order now!", "cancel_order", 0.99, negative=0.9, frustration=0.8))
    assert not d.transfer  # a task asked angrily is still just a task
    bot.say(P("this is useless", "oos", 0.5, negative=0.9, frustration=0.7))
    d = bot.say(P("I'm so angry", "oos", 0.5, negative=0.95, frustration=0.8))
    assert d.transfer and "frustrated for 2 turns" in d.transfer


def test_repeat_start_over_goodbye(bot: Bot) -> None:
    first = bot.say(P("where is my order", "track_order"))
    bot.state.said(first.text)
    again = bot.say(P("say that again", "repeat"))
    assert again.text == first.text and again.act == "repeat"
    d = bot.say(P("let's start over", "oos", 0.3))
    assert d.act == "start_over" and bot.state.flow is None and not bot.state.slots
    d = bot.say(P("bye", "goodbye"))
    assert d.hangup == "caller said goodbye"


def test_anything_else_no_hangs_up(bot: Bot) -> None:
    bot.say(P("where is 932017", "track_order", 0.99, ("order_id", "932017", "932017")))
    d = bot.say(P("no thanks", "deny"))
    assert d.hangup and d.act == "goodbye"


def test_backend_error_apologises_and_transfers(domain: Domain) -> None:
    actions = Actions(timeout_s=0.2)

    def broken(slots: Any) -> ActionResult:
        raise RuntimeError("database is down")

    actions.register("order_status", broken)
    bot = Bot(domain, actions)
    d = bot.say(P("where is 932017", "track_order", 0.99, ("order_id", "932017", "932017")))
    assert d.action_result == "failed" and "went wrong" in d.text
    assert d.transfer and "database is down" in d.transfer


def test_hanging_backend_times_out(domain: Domain) -> None:
    import time

    def hangs(slots: Any) -> ActionResult:
        time.sleep(2)
        return ActionResult(ok=True)

    actions = Actions(timeout_s=0.2)
    actions.register("order_status", hangs)
    d = Bot(domain, actions).say(P("where is 932017", "track_order", 0.99, ("order_id", "932017", "932017")))
    assert d.transfer and "timed out" in d.transfer


@pytest.mark.parametrize(
    ("fn", "value", "spoken"),
    [
        (say_digits, "457219", "4 5 7, 2 1 9"),
        (say_digits, "52210", "5 2 2, 1 0"),
        (say_digits, "1234567", "1 2 3, 4 5 6 7"),
        (say_digits, "12345678", "1 2 3, 4 5 6, 7 8"),
        (say_digits, "457", "4 5 7"),
        (say_phone, "6175550101", "6 1 7, 5 5 5, 0 1 0 1"),
        (say_phone, "+1 617 555 0101", "+ 1, 6 1 7, 5 5 5, 0 1 0 1"),
        (say_amount, "49.99", "49 dollars and 99 cents"),
        (say_amount, "120.00", "120 dollars"),
        (say_amount, "1.05", "1 dollar and 5 cents"),
        (say_email, "maria.gonzalez@example.com", "maria dot gonzalez at example dot com"),
    ],
)
def test_values_are_written_for_the_ear(fn: Any, value: str, spoken: str) -> None:
    assert fn(value) == spoken


def test_dates_are_said_relative_to_today() -> None:
    assert say_date("2026-11-30", TODAY) == "tomorrow, Monday the 30th of November"
    assert say_date("2026-12-03", TODAY) == "Thursday the 3rd of December"
    assert say_date("not a date", TODAY) == "not a date"


def test_variants_rotate_so_a_reprompt_sounds_different(domain: Domain) -> None:
    nlg = NLG(domain)
    assert nlg.render("ask_order_id") != nlg.render("ask_order_id")


def test_unsure_no_at_anything_else_still_ends_the_call(bot: Bot) -> None:
    bot.say(P("where is 932017", "track_order", 0.99, ("order_id", "932017", "932017")))
    d = bot.say(P("No, that's all, thanks.", "oos", 0.38))
    assert d.hangup and d.act == "goodbye"


def test_hash_after_an_entry_complete_by_length_is_ignored(bot: Bot) -> None:
    bot.say(P("track my order", "track_order"))
    decisions = bot.keys("550981#")
    assert len(decisions) == 1 and "was cancelled" in decisions[0].text
    assert bot.state.expecting == "anything_else"


def test_unsure_turn_is_rescued_by_its_entities_but_not_without_them(bot: Bot) -> None:
    ranking = [("oos", 0.40), ("track_refund", 0.31), ("track_order", 0.2)]
    unsure = P("where is my refund for order 812339", "oos", 0.40, ("order_id", "812339", "812339"))
    unsure.ranking = ranking
    d = bot.say(unsure)
    assert d.action == "track_refund" and "approved" in d.text
    bare = P("where is my refund thing", "oos", 0.40)
    bare.ranking = ranking
    assert bot.say(bare).act == "nomatch"


# ------------------------------------------------------------------------ numbers: readings and repairs


def test_a_number_with_several_readings_takes_the_one_the_back_end_knows(bot: Bot) -> None:
    bot.say(P("where is my order", "track_order"))
    d = bot.say(P("five five oh nine eight eight one", "inform"))  # 509881 is likelier, 550981 exists
    assert d.action == "order_status" and d.action_result == "ok"
    assert bot.state.slots["order_id"].value == "550981" and "5 5 0, 9 8 1 was cancelled" in d.text


def test_the_other_hypotheses_are_read_and_the_existing_one_wins(bot: Bot) -> None:
    bot.say(P("where is my order", "track_order"))
    d = bot.say(P("four five seven two one eight", "inform"), "four five seven two one nine")
    assert bot.state.slots["order_id"].value == "457219" and d.action_result == "ok"


def test_a_tagged_number_still_gives_way_to_the_hypothesis_the_back_end_knows(bot: Bot) -> None:
    """The tagger marks a span of the best transcript; the number said may be in another hypothesis."""
    bot.say(P("where is my order", "track_order"))
    tagged = P("it's 830113", "inform", 0.9, ("order_id", "830113", "830113"))
    d = bot.say(tagged, "it's eight three oh one one two")
    assert bot.state.slots["order_id"].value == "830112" and d.action_result == "ok"


def test_with_no_known_reading_the_first_valid_one_is_taken(bot: Bot) -> None:
    bot.say(P("where is my order", "track_order"))
    d = bot.say(P("one two three four five six", "inform"), "one two three four five seven")
    assert d.action_result == "unknown_order" and "1 2 3, 4 5 6" in d.text


def test_look_ups_stop_at_the_first_known_reading_and_after_four(domain: Domain) -> None:
    asked: list[str] = []

    def exists(slots: Any) -> ActionResult:
        asked.append(slots["order_id"])
        return ActionResult(slots["order_id"] == "222222")

    actions = Actions()
    actions.register("order_exists", exists)
    reader = SlotReader(domain, actions, "test")
    options = ["111111", "222222", "333333"]
    assert asyncio.run(reader.pick("order_id", options)) == "222222" and asked == ["111111", "222222"]
    asked.clear()
    many = [str(n) * 6 for n in range(3, 9)]
    assert asyncio.run(reader.pick("order_id", many)) == "333333" and len(asked) == 4
    asked.clear()
    assert asyncio.run(reader.pick("order_id", ["111111"])) == "111111" and asked == []  # nothing to choose


def test_the_look_up_answers_whether_it_exists_and_nothing_else(tmp_path: Path) -> None:
    actions = load_actions(SHOP, {"database": str(tmp_path / "shop.sqlite"), "today": TODAY.isoformat()})
    known = asyncio.run(actions.call("order_exists", {"order_id": "830112"}))
    unknown = asyncio.run(actions.call("order_exists", {"order_id": "830113"}))
    assert known == ActionResult(True) and not unknown.ok and unknown.data == {}
    assert asyncio.run(actions.call("invoice_exists", {"invoice_id": "52210"})) == ActionResult(True)
    assert not asyncio.run(actions.call("invoice_exists", {"invoice_id": "52211"})).ok


def test_one_digit_corrected_at_the_confirmation(bot: Bot) -> None:
    bot.say(P("cancel 457219", "cancel_order", 0.99, ("order_id", "457219", "457219")))
    d = bot.say(P("no, the last digit is eight", "deny"))
    assert d.act == "corrected" and bot.state.slots["order_id"].value == "457218"
    assert "cancel order 4 5 7, 2 1 8?" in d.text and d.action is None
    d = bot.say(P("it's two one nine, not two one eight", "oos", 0.4))
    assert d.act == "corrected" and bot.state.slots["order_id"].value == "457219"
    d = bot.say(P("sorry, the third one is a one", "repeat", 0.8))  # the model hears "say that again"
    assert d.act == "corrected" and bot.state.slots["order_id"].value == "451219"
    assert bot.say(P("say that again", "repeat")).act == "repeat"  # no digit in it: a plain repeat


def test_a_correction_after_a_look_up_runs_it_again(bot: Bot) -> None:
    bot.say(P("where is 830112", "track_order", 0.99, ("order_id", "830112", "830112")))
    d = bot.say(P("no, the last digit is three", "deny"))
    assert d.action == "order_status" and d.action_result == "unknown_order"
    assert "8 3 0, 1 1 3" in d.text and bot.state.expecting == "slot"
    d = bot.say(P("sorry, the last one is two", "oos", 0.4))  # the number the retry dropped
    assert d.action_result == "ok" and "has shipped" in d.text


def test_a_whole_new_number_after_a_look_up_runs_it_again(bot: Bot) -> None:
    bot.say(P("where is 830112", "track_order", 0.99, ("order_id", "830112", "830112")))
    d = bot.say(P("no, it's nine three two oh one seven", "deny"))
    assert d.action == "order_status" and "was delivered" in d.text
    d = bot.say(P("no thanks", "deny"))  # the next no is no correction any more
    assert d.hangup


def test_a_whole_new_number_at_the_confirmation_replaces_the_one_read_back(bot: Bot) -> None:
    """ "No, it's …" at "Cancel order 4 5 7, 2 1 8?" is a new number, tagged or not, not a "no"."""
    bot.say(P("cancel 457218", "cancel_order", 0.99, ("order_id", "457218", "457218")))
    d = bot.say(P("no, it's four five seven two one nine", "deny"))  # the tagger marked nothing
    assert d.act == "corrected" and bot.state.slots["order_id"].value == "457219"
    assert "cancel order 4 5 7, 2 1 9?" in d.text and d.action is None
    d = bot.say(P("not nine, eight", "deny"))  # and back: one digit, old then new
    assert d.act == "corrected" and bot.state.slots["order_id"].value == "457218"
    d = bot.say(P("yes, 457218", "affirm"))  # the number read back, said again: a yes
    assert d.action == "cancel_order"


def test_not_the_number_read_back_asks_for_it_again(bot: Bot) -> None:
    """ "No, not 457218" (untagged) at the confirmation: the number is wrong, no new one was given."""
    bot.say(P("cancel 457218", "cancel_order", 0.99, ("order_id", "457218", "457218")))
    d = bot.say(P("no, not four five seven two one eight", "deny"))
    assert d.act == "wrong_value" and "order_id" not in bot.state.slots and bot.state.expecting == "slot"


@pytest.mark.parametrize(
    "said", ["830112, not 830113", "not 830113, it's 830112", "it isn't 830113 but 830112"]
)
def test_a_number_ruled_out_is_never_the_new_one(bot: Bot, said: str) -> None:
    """Both numbers in one untagged turn: the one after "not" is the wrong one, whichever exists."""
    bot.say(P("cancel 830113", "cancel_order", 0.99, ("order_id", "830113", "830113")))
    d = bot.say(P(said, "deny"))
    assert d.act == "corrected" and bot.state.slots["order_id"].value == "830112"
    bot.say(P("cancel 611420", "cancel_order", 0.99, ("order_id", "611420", "611420")))
    d = bot.say(P("no, 611421, not 611420", "deny"))  # 611420 exists, 611421 does not: still 611421
    assert d.act == "corrected" and bot.state.slots["order_id"].value == "611421"


def test_one_digit_corrected_after_the_look_up_read_it_back(bot: Bot) -> None:
    d = bot.say(P("where is 457218", "track_order", 0.99, ("order_id", "457218", "457218")))
    assert d.action_result == "unknown_order" and "4 5 7, 2 1 8" in d.text
    d = bot.say(P("no, not eight, nine", "deny"))  # old digit, then new
    assert d.action == "order_status" and d.action_result == "ok" and "4 5 7, 2 1 9" in d.text
    d = bot.say(P("no, it's nine three two oh one seven", "deny"))  # the answer read it back: a new number
    assert d.action == "order_status" and d.action_result == "ok" and "9 3 2, 0 1 7" in d.text


@pytest.mark.parametrize(
    "turn",
    [
        P(
            "Bristol, not Leeds",
            "inform",
            0.9,
            ("delivery_city", "Bristol", "Bristol"),
            ("delivery_city", "Leeds", "Leeds"),
        ),
        P(
            "no, it's Bristol not Leeds",
            "deny",
            0.9,
            ("delivery_city", "Leeds", "Leeds"),
            ("delivery_city", "Bristol", "Bristol"),
        ),
        P(
            "Bristol instead of Leeds",
            "inform",
            0.9,
            ("delivery_city", "Leeds", "Leeds"),
            ("delivery_city", "Bristol", "Bristol"),
        ),
    ],
)
def test_x_not_y_stores_x_whatever_order_the_tagger_gives(bot: Bot, turn: Parse) -> None:
    bot.say(move_to_leeds())
    assert bot.say(P("31 Mill Lane", "inform", 0.9)).act == "confirm"
    d = bot.say(turn)
    assert d.act == "corrected" and bot.state.slots["delivery_city"].value == "Bristol"
    assert "31 Mill Lane, Bristol. Is that right?" in d.text


def test_not_y_alone_drops_y_and_asks_for_it_again(bot: Bot) -> None:
    bot.say(move_to_leeds())
    bot.say(P("31 Mill Lane", "inform", 0.9))
    d = bot.say(P("no, not Leeds", "deny", 0.9, ("delivery_city", "Leeds", "Leeds")))
    assert d.act == "wrong_value" and "delivery_city" not in bot.state.slots and bot.state.expecting == "slot"
    assert bot.state.flow is not None and bot.state.flow.asking == "delivery_city"
    d = bot.say(P("Bristol", "inform", 0.9, ("delivery_city", "Bristol", "Bristol")))
    assert d.act == "confirm" and "31 Mill Lane, Bristol" in d.text


def test_a_number_said_to_be_wrong_is_never_the_reading_the_back_end_picks(
    domain: Domain, tmp_path: Path
) -> None:
    """ "830113, not 830112": 830112 exists and 830113 does not, yet the caller ruled 830112 out."""
    actions = load_actions(SHOP, {"database": str(tmp_path / "shop.sqlite"), "today": TODAY.isoformat()})
    reader = SlotReader(domain, actions, "test")
    parse = P(
        "830113, not 830112",
        "inform",
        0.9,
        ("order_id", "830113", "830113"),
        ("order_id", "830112", "830112"),
    )
    found = asyncio.run(reader.entities(parse, ["order_id"], [parse.text]))
    assert found.values == {"order_id": "830113"} and found.negated == {"order_id": "830112"}


def test_wrong_without_saying_which_part_asks_for_the_number_again(bot: Bot) -> None:
    bot.say(P("cancel 457219", "cancel_order", 0.99, ("order_id", "457219", "457219")))
    d = bot.say(P("no, that's the wrong number", "deny"))
    assert d.act == "wrong_value" and "order number" in d.text and "order_id" not in bot.state.slots
    assert bot.state.expecting == "slot"


def test_a_number_read_with_a_pause_is_one_answer(bot: Bot) -> None:
    bot.say(P("where is my order", "track_order"))
    assert bot.hear(P("four five seven", "inform")) is None and bot.state.partial == "457"
    d = bot.say(P("two one nine", "inform"))
    assert bot.state.slots["order_id"].value == "457219" and d.action_result == "ok"


@pytest.mark.parametrize(
    ("said", "keys"),
    [
        ("four five seven", "219"),  # the rest on the keypad
        ("four five seven", "457219"),  # the whole number typed again: the spoken start is not doubled
        ("four five seven two", "457219"),  # typed again, the keys long enough to be either until the 7
        ("four five seven", "21*457219"),  # * starts the entry again, the spoken start with it
    ],
)
def test_a_number_begun_by_voice_goes_on_on_the_keypad(bot: Bot, said: str, keys: str) -> None:
    bot.say(P("where is my order", "track_order"))
    assert bot.hear(P(said, "inform")) is None
    (d,) = bot.keys(keys)
    assert bot.state.slots["order_id"].value == "457219" and d.action_result == "ok"
    assert bot.state.slots["order_id"].source == "dtmf"


def test_a_spoken_start_and_keys_that_repeat_it_end_with_hash(bot: Bot) -> None:
    """ "four five seven", then 4 5 7 typed: 457457, or the number typed again? Only # says it is done."""
    bot.say(P("where is my order", "track_order"))
    bot.hear(P("four five seven", "inform"))
    assert bot.keys("457") == [] and bot.state.number_so_far() == "457"  # read as typed again so far
    assert bot.keys("219") and bot.state.slots["order_id"].value == "457219"


def test_keys_that_may_repeat_a_longer_spoken_start_wait_for_hash(bot: Bot) -> None:
    bot.say(P("where is my order", "track_order"))
    bot.hear(P("four five seven two", "inform"))
    assert bot.keys("45") == []  # 457245 is six digits, yet it may be 4 5 7 2 typed again
    (d,) = bot.keys("#")
    assert d.action_result == "unknown_order" and "4 5 7, 2 4 5" in d.text


@pytest.mark.parametrize(
    "said", ["two one nine", "four five seven two one nine", "it's four five seven two one nine"]
)
def test_a_number_begun_on_the_keypad_goes_on_by_voice(bot: Bot, said: str) -> None:
    bot.say(P("where is my order", "track_order"))
    assert bot.keys("457") == [] and bot.state.number_so_far() == "457"  # what the recogniser is told
    d = bot.say(P(said, "inform"))
    assert bot.state.slots["order_id"].value == "457219" and d.action_result == "ok"
    assert bot.state.dtmf_buffer == "" and bot.state.partial == ""


def test_silence_after_keys_asks_for_the_rest_and_the_keys_go_on(bot: Bot) -> None:
    """Typed "457", then quiet: "I've got 4 5 7 so far", not the whole question (whose answer, typed in
    full, would have been appended to the 457 already typed)."""
    bot.say(P("where is my order", "track_order"))
    assert bot.keys("457") == []
    d = bot.silence()
    assert d.act == "partial" and "got 4 5 7 so far" in d.text
    (d,) = bot.keys("219")
    assert bot.state.slots["order_id"].value == "457219" and d.action_result == "ok"


def test_silence_after_the_start_of_a_number_asks_for_the_rest(bot: Bot) -> None:
    bot.say(P("where is my order", "track_order"))
    assert bot.hear(P("four five seven", "inform")) is None
    d = bot.silence()
    assert d.act == "partial" and "got 4 5 7 so far" in d.text and "rest" in d.text
    assert bot.hear(P("two", "inform")) is None and bot.state.partial == "4572"
    d = bot.say(P("four five seven two one nine", "inform"))  # too long joined: this turn alone
    assert bot.state.slots["order_id"].value == "457219" and d.action_result == "ok"


def test_an_invalid_number_twice_offers_the_keypad(bot: Bot) -> None:
    bot.say(P("where is my order", "track_order"))
    first = bot.say(P("one two three four five six seven eight", "inform"))
    assert first.act == "invalid" and "six digits" in first.text and "keypad" not in first.text
    second = bot.say(P("one two three four five six seven eight nine", "inform"))
    assert second.act == "invalid" and "keypad" in second.text


def test_a_noisy_line_is_said_and_climbs_the_no_match_ladder(bot: Bot) -> None:
    bot.say(P("where is my order", "track_order"))
    first = asyncio.run(bot.policy.on_noise())
    assert first.act == "noisy_line" and "noisy" in first.text and "order number" in first.text
    second = asyncio.run(bot.policy.on_noise())
    assert "keypad" in second.text
    assert asyncio.run(bot.policy.on_noise()).transfer


def test_the_listening_context_carries_a_typed_start_so_the_spoken_rest_ends_the_turn(
    domain: Domain, tmp_path: Path
) -> None:
    """4 5 7 typed, then "two one nine" said: the ASR and the turn-end decision are told "457" so far, so
    the rest (or the whole number said again) ends the turn at once instead of after the digit hold."""
    actions = load_actions(SHOP, {"database": str(tmp_path / "shop.sqlite"), "today": TODAY.isoformat()})
    nlu = ScriptedNLU({"where is my order": ("track_order", {})}, intents=["inform"])
    brain = DialogueBrain(domain, nlu, actions, today=TODAY)
    asyncio.run(brain.handle(FinalTranscript(text="where is my order", t=0.0)))
    for key in "457":
        assert asyncio.run(brain.handle(DTMFDigit(digit=key))) is None
    context = brain.listening_context()
    assert context is not None and context.partial == "457"
    turn = TurnConfig()
    for rest in ("2 1 9.", "4 5 7 2 1 9."):
        assert decide(rest, context, turn, 500).pause_ms == turn.complete_ms
    assert decide("2.", context, turn, 500).reason == "number incomplete"
