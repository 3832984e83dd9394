"""Learning from calls: an operator's reviewed correction (written as the console writes it) reaches the
domain's training examples; in the console (headless Chromium), a correction then "Retrain" runs the real
`voicebot train` on a tiny domain, swaps the result into the live model only when it scores at least as well
on held-out data, and shows both scores."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from models.first_start import best_model, current_models, full_training_running, model_score, served_model
from models.train_domain import gather, model_dir
from telephony.console.retrain import LiveModel, Retrain
from telephony.console.review import Reviews, check_review
from tests.tiny import HOURS, INTENTS, tiny_domain
from voicebot.domain.reviewed import reviewed_path


def review(
    domain: Path, turn: int, intent: str, example: str, heard: str, known: tuple[str, ...] = ()
) -> None:
    """One operator's correction, checked and written as the console's review route does (`known`: the
    intents the serving model knew then)."""
    verdict, intent, example = check_review("corrected", intent, example, known or tuple(INTENTS))
    turn_record = {"index": turn, "transcript": heard, "intent": "greet", "confidence": 0.41}
    Reviews(reviewed_path(domain)).add("call-1", turn_record, "sam", verdict, intent, example)


def test_a_reviewed_correction_reaches_the_training_examples(tmp_path: Path) -> None:
    domain = tiny_domain(tmp_path / "tiny")
    cache = tmp_path / "cache"
    _, _, train, valid = gather(domain)
    before = model_dir(domain, cache, first=True)

    review(domain, 3, "greet", "wear is my [seven seven](order_id)", "wear is my seven seven")
    review(domain, 3, "track_order", "wear is my [seven seven](order_id)", "wear is my seven seven")
    Reviews(reviewed_path(domain)).add_faq(
        "call-1",
        {"index": 5, "transcript": "what time do you open"},
        "sam",
        "hours",
        None,
        "what time do you open",
    )
    _, faq, train2, valid2 = gather(domain)
    taken = [e for e in train2 if e.text == "wear is my seven seven"]
    assert len(taken) == 1  # the latest review of the turn wins: track_order, not greet
    assert taken[0].intent == "track_order"
    assert taken[0].tokens == ["wear", "is", "my", "seven", "seven"]
    assert taken[0].tags == ["O", "O", "O", "B-order_id", "I-order_id"]
    assert taken[0].source.endswith("reviewed.jsonl:track_order")
    assert len(train2) == len(train) + 1 and valid2 == valid  # training only: the held-out split stays
    assert faq.answers[0].questions == [*HOURS, "what time do you open"]
    after = model_dir(domain, cache, first=True)
    assert after != before  # new training data, a new model directory: `voicebot train` trains again

    review(domain, 4, "cancel_order", "cancel it", "cancel it", ("cancel_order",))  # an intent renamed since
    review(domain, 6, "greet", "hello [you](person)", "hello you")  # no slot of this domain
    with (reviewed_path(domain)).open("a") as out:
        out.write("{not json\n")  # a hand edit gone wrong
    _, _, train3, valid3 = gather(domain)
    assert train3 == train2 and valid3 == valid  # left out, never a new label


def test_a_review_alone_never_makes_a_worse_model_serve(tmp_path: Path) -> None:
    """After a restart too: the models of the data without the reviews stay candidates, all scored on the
    same held-out split, so a model trained with them serves only once it scores at least as well."""
    domain, cache = tiny_domain(tmp_path / "tiny"), tmp_path / "cache"

    def finished(path: Path, validation: float) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        (path / "metrics.json").write_text(json.dumps({"validation": validation}))
        return path

    before = finished(model_dir(domain, cache, first=True), 0.9)
    review(domain, 3, "track_order", "wear is my [seven seven](order_id)", "wear is my seven seven")
    assert (
        model_dir(domain, cache, first=True, reviews=False) == before != model_dir(domain, cache, first=True)
    )
    assert served_model(domain, cache) == before  # a restart serves at once: no training for a review
    assert best_model(current_models(domain, cache)) is None  # `voicebot train` (fresh) will train one
    after = finished(model_dir(domain, cache, first=True), 0.85)
    assert served_model(domain, cache) == before  # scores worse with the reviews: not served
    assert best_model(current_models(domain, cache)) == after  # what a retrain offers (and shows)
    finished(after, 0.9)
    assert served_model(domain, cache) == after  # as good: the model that learnt from the reviews


CONSOLE_STATE = """(() => {
  const swapped = document.querySelector("#retrain-scores [data-swapped]");
  return {
    ready: !!(window.consoleState || {}).ready,
    callLoaded: (document.getElementById("call-turns") || {dataset: {}}).dataset.loaded || null,
    saved: Object.fromEntries([...document.querySelectorAll("form.review")].map(
      f => [f.dataset.index, f.dataset.saved])),
    retrain: (document.getElementById("retrain") || {hidden: true}).hidden === false,
    swapped: swapped ? swapped.dataset.swapped : null,
    scores: (document.getElementById("retrain-scores") || {}).textContent || "",
  };
})()"""


@pytest.mark.models
async def test_an_operator_corrects_a_turn_retrains_and_sees_both_scores(tmp_path: Path) -> None:
    """In the console (headless Chromium): a caller's turn corrected into the domain's reviewed.jsonl, then
    "Retrain" runs the real `voicebot train` on it (a tiny domain) and shows the held-out scores before and
    after, and whether the new model now serves."""
    from models.train_domain import train_domain
    from models.train_first import FirstModelConfig
    from tests.tiny import tiny_encoder
    from voicebot.nlu.brain import UnderstandingFactory
    from voicebot.nlu.parser import NLU
    from voicebot.nlu.swap import SwappableNLU
    from voicebot.testing.chromium import chromium_binary, open_page, page_until, shoot
    from voicebot.testing.console import BEARER, TOKEN, console_gateway, line, request

    binary = chromium_binary()
    domain = tiny_domain(tmp_path / "tiny", tiny_encoder(tmp_path / "encoder", layers=2))
    cache = tmp_path / "cache"  # the gateway's cache_dir in console_gateway(brains=…)
    serving, _ = train_domain(domain, cache, progress=False, first=FirstModelConfig())
    old = old_score(serving)
    live = SwappableNLU(NLU(serving), serving, old)
    brains = UnderstandingFactory(domain, live)
    async with console_gateway(tmp_path, {"reviews_file": None}, brains=brains) as bed:
        caller, call_id = await bed.call()
        try:
            await until_turns(bed, call_id, 1)
            caller.say(line("where is my order"))
            await until_turns(bed, call_id, 2)
        finally:
            await caller.close()
        await bed.store.flush()

        async with open_page(binary, f"http://{bed.gw.http}/console?token={TOKEN}", tmp_path) as page:

            async def until(done: Any, what: str, timeout: float = 20) -> dict[str, Any]:
                return await page_until(page, CONSOLE_STATE, done, what, timeout)

            await until(lambda s: s["ready"], "the console")
            await page.evaluate(f'location.hash = "#/call/{call_id}"')
            state = await until(lambda s: s["callLoaded"] == call_id and s["retrain"], "the call's page")
            await page.evaluate("""(() => {
                const f = document.querySelector('#call-turns form.review[data-index="1"]');
                f.elements.intent.value = "track_order";
                f.elements.example.value = "wear is my [seven seven](order_id)";
                f.requestSubmit(); })()""")
            await until(lambda s: s["saved"].get("1") == "corrected", "the correction saved")
            assert json.loads(reviewed_path(domain).read_text())["intent"] == "track_order"

            await page.evaluate('document.getElementById("retrain").click()')
            state = await until(lambda s: s["swapped"] is not None, "the retrain's scores", 240)
            assert all(word in state["scores"] for word in ("held-out", "before", "after"))
            assert f"{100 * old:.1f} %" in state["scores"]
            assert (state["swapped"] == "true") == (live.source != serving)  # the page says what happened
            await shoot(page, "console-learn.png", 1400, 900)

        status = json.loads((await request(bed.gw.http, "/console/api/retrain", headers=BEARER))[2])
        assert status["returncode"] == 0 and status["command"][:3] == ["nice", "-n", "10"]
        decision = status["decision"]
        trained = Path(decision["after"]["model"])  # the first model, or the full one if it finished already
        assert trained in (model_dir(domain, cache, first=True), model_dir(domain, cache))
        assert trained.parent == serving.parent and trained != serving  # trained on the review: a new model
        assert decision["before"] == {"model": str(serving), "score": old}
        assert decision["after"]["score"] == model_score(trained) is not None
        assert decision["swapped"] == (decision["after"]["score"] >= old)
        assert live.source == (trained if decision["swapped"] else serving)
        assert status["serving"] == {"model": str(live.source), "score": live.score}

    # A serving model that scores better than anything the retrain made is kept (the decision alone).
    proud = SwappableNLU(NLU(serving), serving, 1.01)
    kept = Retrain._decide(LiveModel(domain, cache, proud, NLU))
    assert kept["swapped"] is False and proud.source == serving and kept["before"]["score"] == 1.01
    await background_training_done(domain, cache)


def old_score(model: Path) -> float:
    score = model_score(model)
    assert score is not None
    return score


async def until_turns(bed: Any, call_id: str, turns: int) -> None:
    """Until the call has answered `turns` turns (the greeting is the first)."""
    async with asyncio.timeout(20):
        while bed.turns(call_id) < turns:
            await asyncio.sleep(0.05)


async def background_training_done(domain: Path, cache: Path) -> None:
    """`voicebot train` started the full fine-tune in the background: let it end before the folder goes."""
    for _ in range(600):
        if (model_dir(domain, cache) / "metrics.json").is_file() and not full_training_running(domain, cache):
            return
        await asyncio.sleep(0.1)
