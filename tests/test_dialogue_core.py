"""The shop's real dialogue engine on a scripted NLU: what it listens for before each caller turn, and the
turn records it fills (no model: the fast tier)."""

from __future__ import annotations

from pathlib import Path

from voicebot.dialogue.brain import DialogueFactory
from voicebot.frames import FinalTranscript, PlaybackReport
from voicebot.testing.fakes import ScriptedNLU

SHOP = Path(__file__).resolve().parent.parent / "domains" / "shop"
SCRIPT = {
    "where is my order": ("track_order", {}),
    "four five seven two one nine": ("inform", {"order_id": "457219"}),
    "yes please": ("affirm", {}),
    "cancel my order": ("cancel_order", {}),
}


def factory(tmp_path: Path) -> DialogueFactory:
    from voicebot.domain.loader import load_domain

    flows = load_domain(SHOP).flows
    intents = {i for name, flow in flows.items() for i in flow.intents or [name]}
    nlu = ScriptedNLU(SCRIPT, intents | {"affirm", "deny", "inform", "goodbye"})
    return DialogueFactory(SHOP, nlu, cache_dir=tmp_path, scratch=tmp_path / "scratch")


async def test_the_dialogue_says_what_it_listens_for(tmp_path: Path) -> None:
    brain = factory(tmp_path)()
    brain.greeting()
    first = brain.listening_context()
    assert first is not None and first.expected == "free" and first.prompt == "Acme Shop, Leeds, invoice"
    reply = await brain.handle(FinalTranscript(text="where is my order", t=1.0))
    assert (
        reply is not None and reply.understanding is not None and reply.understanding.intent == "track_order"
    )
    asking = brain.listening_context()
    assert asking is not None and (asking.expected, asking.slot, asking.slot_type) == (
        "slot",
        "order_id",
        "digits",
    )
    assert (asking.min_length, asking.max_length) == (6, 6)
    assert asking.end_silence_ms == 1500 and asking.partial is None  # a number is read in groups


async def test_the_start_of_a_number_gets_no_reply_and_is_listened_for_as_partial(tmp_path: Path) -> None:
    brain = factory(tmp_path)()
    brain.greeting()
    await brain.handle(FinalTranscript(text="where is my order", t=1.0))
    assert await brain.handle(FinalTranscript(text="four five seven", t=2.0)) is None
    context = brain.listening_context()
    assert context is not None and context.partial == "457" and context.as_json()["partial"] == "457"
    reply = await brain.handle(FinalTranscript(text="two one nine", t=3.0))
    assert reply is not None and reply.understanding is not None
    assert (
        reply.understanding.slots == {"order_id": "457219"} and reply.understanding.action == "order_status"
    )


async def test_the_recognisers_other_hypotheses_reach_the_slot_reader(tmp_path: Path) -> None:
    brain = factory(tmp_path)()
    brain.greeting()
    await brain.handle(FinalTranscript(text="where is my order", t=1.0))
    heard = FinalTranscript(text="eight three oh one one three", t=2.0, nbest=("eight three oh one one two",))
    reply = await brain.handle(heard)  # 830113 is no order, 830112 is
    assert reply is not None and reply.understanding is not None
    assert reply.understanding.slots == {"order_id": "830112"} and "has shipped" in reply.text


async def test_a_transcript_rejected_as_noise_is_answered_and_other_empty_ones_are_not(
    tmp_path: Path,
) -> None:
    brain = factory(tmp_path)()
    brain.greeting()
    await brain.handle(FinalTranscript(text="where is my order", t=1.0))
    assert await brain.handle(FinalTranscript(text="", t=2.0, details={"rejected": "silence"})) is None
    assert await brain.handle(FinalTranscript(text="  ", t=2.5)) is None
    reply = await brain.handle(FinalTranscript(text="", t=3.0, details={"rejected": "noise"}))
    assert reply is not None and reply.understanding is not None
    assert reply.text.startswith("Sorry, the line is noisy") and "order number" in reply.text
    assert reply.understanding.act == "noisy_line" and reply.understanding.expecting == "slot"


async def test_a_confirmation_is_listened_for_as_yes_or_no(tmp_path: Path) -> None:
    brain = factory(tmp_path)()
    brain.greeting()
    await brain.handle(FinalTranscript(text="cancel my order", t=1.0))
    reply = await brain.handle(FinalTranscript(text="four five seven two one nine", t=2.0))
    assert reply is not None and reply.understanding is not None
    assert reply.understanding.slots == {"order_id": "457219"} and reply.understanding.act == "confirm"
    context = brain.listening_context()
    assert context is not None and context.expected == "yes_no" and context.slot is None


async def test_the_dialogue_history_takes_what_was_heard_from_the_report(tmp_path: Path) -> None:
    brain = factory(tmp_path)()
    greeting = brain.greeting()
    assert greeting is not None
    cut = PlaybackReport(reply_id=1, text=greeting.text, played_ms=700.0, interrupted=True, heard="Hello,")
    assert await brain.handle(cut) is None
    [said] = [t for t in brain.state.history if t.role == "bot"]
    assert said.text == greeting.text and said.heard == "Hello," and said.interrupted
