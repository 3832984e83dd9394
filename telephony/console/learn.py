"""Learning from calls, the console's routes: a supervisor's review of a turn into the reviewed training
file, the reviews read back, and retraining with the live swap (the file: `review`; the run: `retrain`).

Each domain the gateway serves (`voicebot serve --domain A --domain B`, telephony/domains.py) learns on its
own: a call's record names the domain that answered it (`meta.domain`), its turns' reviews go to that
domain's reviewed file, checked against that domain's model, and "retrain" (`?domain=NAME`) trains and
swaps that domain's model."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from telephony.console.auth import Auth, Session, refused
from telephony.console.records import Records
from telephony.console.retrain import LiveModel, Retrain
from telephony.console.review import Reviews, check_faq, check_review
from telephony.domains import brains_for, domain_names
from telephony.session import CallHub
from telephony.twiml import BodyTooLarge, read_body
from voicebot.brain import BrainFactory
from voicebot.config import VoicebotConfig
from voicebot.domain.nlu_spec import load_nlu_spec
from voicebot.domain.reviewed import reviewed_examples, reviewed_faq
from voicebot.nlu.parser import Parser
from voicebot.nlu.swap import SwappableNLU
from voicebot.records.views import CallDetail, get_call

BODY_BYTES = 4096


@dataclass
class Learner:
    """One served domain's learning: its reviewed file (with the intents and FAQ answers its model knows)
    and its retrain."""

    name: str | None  # the domain's name (None: a gateway without a domain, e.g. the echo brain)
    reviews: Reviews
    retrain: Retrain


def learners(config: VoicebotConfig, hub: CallHub) -> dict[str | None, Learner]:
    """A learner for each domain the gateway serves (the default first), or one without a domain."""
    names: list[str | None] = list(domain_names(hub.brain_factory)) or [None]
    several = len(names) > 1
    found: dict[str | None, Learner] = {}
    for name in names:
        factory = brains_for(hub.brain_factory, name)
        reviews = Reviews(reviews_path(config, factory, name if several else None),
                          known_intents(factory), known_answers(factory))  # fmt: skip
        found[name] = Learner(name, reviews, Retrain(config.console.retrain_command, reviews.path,
                                                     live_model(config, factory)))  # fmt: skip
    return found


def learning_routes(
    router: APIRouter, auth: Auth, records: Records, config: VoicebotConfig, hub: CallHub
) -> Callable[[CallDetail], str | None]:
    """Add the review and retrain routes to the console's router; returns the domain whose learning a
    call's turns go to (the call page asks for that domain's reviews and retrain)."""
    by_name = learners(config, hub)
    default = next(iter(by_name.values()))

    def named(request: Request) -> Learner:
        """The learner of `?domain=NAME` (the default domain without one)."""
        name = request.query_params.get("domain") or None
        if name is None:
            return default
        if name not in by_name:
            raise ValueError(f"this gateway serves no domain {name!r}")
        return by_name[name]

    def of_call(detail: CallDetail) -> Learner:
        """The learner of the domain that answered the call (its record's `meta.domain`; a call recorded
        before domains were, the default's)."""
        name = detail.meta.get("domain") if default.name is not None else None
        if name is None or (name not in by_name and len(by_name) == 1):
            return default  # a single-domain gateway learns for its one domain, whatever it is called now
        if name not in by_name:
            raise ValueError(f"the call was answered by domain {name!r}, which this gateway does not serve")
        return by_name[name]

    @router.get("/api/reviews")
    async def review_list(request: Request) -> Response:
        async def answer(_: Session) -> Response:
            learner = named(request)
            reviews = learner.reviews
            found = await asyncio.to_thread(reviews.read)
            return JSONResponse({"domain": learner.name, "domains": list(filter(None, by_name)),
                                 "file": str(reviews.path), "known_intents": reviews.known_intents,
                                 "known_answers": reviews.known_answers, "faq": reviewed_faq(found),
                                 "reviews": found[::-1], "examples": reviewed_examples(found),
                                 "retrain": learner.retrain.status()})  # fmt: skip

        return await auth.guarded(request, answer)

    @router.post("/api/calls/{call_id}/turns/{index}/review")
    async def review(request: Request, call_id: str, index: int) -> Response:
        async def answer(s: Session) -> Response:
            try:
                body = json.loads(await read_body(request, BODY_BYTES))
            except (BodyTooLarge, json.JSONDecodeError) as exc:
                raise ValueError(f"a JSON body of at most {BODY_BYTES} bytes, please") from exc
            detail = await records.read(lambda e: get_call(e, call_id))
            turn = next((t for t in detail.turns if t.index == index), None) if detail is not None else None
            if detail is None or turn is None or turn.transcript is None:
                return refused(404, "no such caller turn")
            reviews = of_call(detail).reviews
            example = str(body.get("example") or "")
            if body.get("verdict") == "faq":  # the words are a question for an FAQ answer
                faq = check_faq(str(body.get("faq")), body.get("answer"), example, reviews.known_answers)
                write = partial(reviews.add_faq, answer_id=faq[0], answer=faq[1], question=faq[2])
            else:
                verdict, intent, example = check_review(
                    str(body.get("verdict")), str(body.get("intent")), example, reviews.known_intents
                )
                write = partial(reviews.add, verdict=verdict, intent=intent, example=example)
            data = {"index": turn.index, "transcript": turn.transcript, "intent": turn.intent,
                    "confidence": turn.confidence}  # fmt: skip
            return JSONResponse(await asyncio.to_thread(write, call_id, data, s.user))

        return await auth.change(request, answer)

    @router.get("/api/retrain")
    async def retrain_status(request: Request) -> Response:
        async def answer(_: Session) -> Response:
            return JSONResponse(named(request).retrain.status())

        return await auth.guarded(request, answer)

    @router.post("/api/retrain")
    async def retrain(request: Request) -> Response:
        async def answer(_: Session) -> Response:
            hook = named(request).retrain
            hook.start()
            return JSONResponse(hook.status())

        return await auth.change(request, answer)

    def domain_of(detail: CallDetail) -> str | None:
        try:
            return of_call(detail).name
        except ValueError:
            return None

    return domain_of


def _domain_dir(factory: BrainFactory) -> Path | None:
    """A brain factory's domain folder (the dialogue engine's and the NLU-only factory name it)."""
    path = getattr(getattr(factory, "domain", None), "path", None)
    return Path(path) if path is not None else None


def live_model(config: VoicebotConfig, factory: BrainFactory) -> LiveModel | None:
    """The domain's folder and swappable model (`voicebot serve --domain`), or None (echo, fakes)."""
    nlu = getattr(factory, "nlu", None)
    domain = _domain_dir(factory)
    if not isinstance(nlu, SwappableNLU) or domain is None:
        return None

    def load(path: Path) -> Parser:
        from voicebot.nlu.parser import NLU

        return NLU(path, threads=config.nlu.threads, int8=config.nlu.int8)

    return LiveModel(domain, config.cache_dir, nlu, load)


def reviews_path(config: VoicebotConfig, factory: BrainFactory, several: str | None = None) -> Path:
    """`console.reviews_file` (on a gateway of several domains, with the domain's name added to the file's:
    `reviewed-bank.jsonl`), else reviewed.jsonl beside the domain (the file `voicebot train` reads), else
    in the cache dir. `several`: the domain's name when the gateway serves more than one."""
    configured = config.console.reviews_file
    if configured is not None:
        return (
            configured.with_name(f"{configured.stem}-{several}{configured.suffix}") if several else configured
        )
    domain = _domain_dir(factory)
    return (domain if domain is not None else config.cache_dir) / "reviewed.jsonl"


def known_answers(factory: BrainFactory) -> list[str]:
    """The ids of the domain's FAQ answers (empty without a domain)."""
    domain = _domain_dir(factory)
    if domain is None or not (domain / "faq.yaml").is_file():
        return []
    return sorted(a.id for a in load_nlu_spec(domain)[1].answers)


def known_intents(factory: BrainFactory) -> list[str]:
    """The intents the domain's running model knows (empty without a dialogue engine: any name is taken)."""
    labels = getattr(getattr(factory, "nlu", None), "labels", None)
    return sorted(getattr(labels, "intents", None) or [])
