"""Learning from calls, the console's routes: a supervisor's review of a turn into the reviewed training
file, the reviews read back, and retraining with the live swap (the file: `review`; the run: `retrain`)."""

from __future__ import annotations

import asyncio
import json
from functools import partial
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from telephony.console.auth import Auth, Session, refused
from telephony.console.records import Records
from telephony.console.retrain import LiveModel, Retrain
from telephony.console.review import Reviews, check_faq, check_review
from telephony.session import CallHub
from telephony.twiml import BodyTooLarge, read_body
from voicebot.config import VoicebotConfig
from voicebot.domain.nlu_spec import load_nlu_spec
from voicebot.domain.reviewed import reviewed_examples, reviewed_faq
from voicebot.nlu.parser import Parser
from voicebot.nlu.swap import SwappableNLU
from voicebot.records.views import get_call

BODY_BYTES = 4096


def learning_routes(
    router: APIRouter, auth: Auth, records: Records, config: VoicebotConfig, hub: CallHub
) -> None:
    """Add the review and retrain routes to the console's router."""
    reviews = Reviews(reviews_path(config, hub), known_intents(hub), known_answers(hub))
    retrain_hook = Retrain(config.console.retrain_command, reviews.path, live_model(config, hub))

    @router.get("/api/reviews")
    async def review_list(request: Request) -> Response:
        async def answer(_: Session) -> Response:
            found = await asyncio.to_thread(reviews.read)
            return JSONResponse({"file": str(reviews.path), "known_intents": reviews.known_intents,
                                 "known_answers": reviews.known_answers, "faq": reviewed_faq(found),
                                 "reviews": found[::-1], "examples": reviewed_examples(found),
                                 "retrain": retrain_hook.status()})  # fmt: skip

        return await auth.guarded(request, answer)

    @router.post("/api/calls/{call_id}/turns/{index}/review")
    async def review(request: Request, call_id: str, index: int) -> Response:
        async def answer(s: Session) -> Response:
            try:
                body = json.loads(await read_body(request, BODY_BYTES))
            except (BodyTooLarge, json.JSONDecodeError) as exc:
                raise ValueError(f"a JSON body of at most {BODY_BYTES} bytes, please") from exc
            example = str(body.get("example") or "")
            if body.get("verdict") == "faq":  # the words are a question for an FAQ answer
                faq = check_faq(str(body.get("faq")), body.get("answer"), example, reviews.known_answers)
                write = partial(reviews.add_faq, answer_id=faq[0], answer=faq[1], question=faq[2])
            else:
                verdict, intent, example = check_review(
                    str(body.get("verdict")), str(body.get("intent")), example, reviews.known_intents
                )
                write = partial(reviews.add, verdict=verdict, intent=intent, example=example)
            detail = await records.read(lambda e: get_call(e, call_id))
            turn = next((t for t in detail.turns if t.index == index), None) if detail is not None else None
            if turn is None or turn.transcript is None:
                return refused(404, "no such caller turn")
            data = {"index": turn.index, "transcript": turn.transcript, "intent": turn.intent,
                    "confidence": turn.confidence}  # fmt: skip
            return JSONResponse(await asyncio.to_thread(write, call_id, data, s.user))

        return await auth.change(request, answer)

    @router.get("/api/retrain")
    async def retrain_status(request: Request) -> Response:
        async def answer(_: Session) -> Response:
            return JSONResponse(retrain_hook.status())

        return await auth.guarded(request, answer)

    @router.post("/api/retrain")
    async def retrain(request: Request) -> Response:
        async def answer(_: Session) -> Response:
            retrain_hook.start()
            return JSONResponse(retrain_hook.status())

        return await auth.change(request, answer)


def live_model(config: VoicebotConfig, hub: CallHub) -> LiveModel | None:
    """The serving domain and its swappable model (`voicebot serve --domain`), or None (echo, fakes)."""
    nlu = getattr(hub.brain_factory, "nlu", None)
    domain = getattr(getattr(hub.brain_factory, "domain", None), "path", None)
    if not isinstance(nlu, SwappableNLU) or domain is None:
        return None

    def load(path: Path) -> Parser:
        from voicebot.nlu.parser import NLU

        return NLU(path, threads=config.nlu.threads, int8=config.nlu.int8)

    return LiveModel(Path(domain), config.cache_dir, nlu, load)


def reviews_path(config: VoicebotConfig, hub: CallHub) -> Path:
    """`console.reviews_file`, else reviewed.jsonl beside the domain the gateway answers with (the
    dialogue engine's factory knows it), else in the cache dir."""
    if config.console.reviews_file is not None:
        return config.console.reviews_file
    domain = getattr(getattr(hub.brain_factory, "domain", None), "path", None)
    return Path(domain if domain is not None else config.cache_dir) / "reviewed.jsonl"


def known_answers(hub: CallHub) -> list[str]:
    """The ids of the domain's FAQ answers (empty without a domain)."""
    domain = getattr(getattr(hub.brain_factory, "domain", None), "path", None)
    if domain is None or not (Path(domain) / "faq.yaml").is_file():
        return []
    return sorted(a.id for a in load_nlu_spec(Path(domain))[1].answers)


def known_intents(hub: CallHub) -> list[str]:
    """The intents the running model knows (empty without a dialogue engine: any name is taken)."""
    labels = getattr(getattr(hub.brain_factory, "nlu", None), "labels", None)
    return sorted(getattr(labels, "intents", None) or [])
