"""Where a caller drops the line, and what must hold afterwards: no crash, no leak, no record lost.

A `Plan` is one seeded disconnect: a protocol, a point in the call (before the call is set up, just after,
mid-greeting, mid-utterance, while a back-end action hangs, mid-reply after a back-end error, or any time),
and how the line dies (`reset`: dropped at once; `vanish`: half-open, the server must notice by itself),
over any protocol of `lines` (the gateway's own three unless told; scripts/faults_gateway.py adds carriers).
The back-end points get to the action by keypad ("1" at the main question, then the order number), so they
do not depend on what ASR makes of a sentence; the utterance and any-time points speak.
`run_plan` places the call and leaves at that point; `Ledger`, `Crashes`, `usage`/`settle` and
`lost_records` measure what the issue asks: crashes, unhandled exceptions, leaked tasks and file
descriptors, and started calls without a stored record and end reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import psutil  # type: ignore[import-untyped]

from voicebot.brain import BrainFactory
from voicebot.config import VoicebotConfig
from voicebot.frames import PCM, FinalTranscript, Frame
from voicebot.pipeline import Services
from voicebot.records import CallStore
from voicebot.testing.faults.callers import PROTOCOLS, Caller, until
from voicebot.testing.faults.domain import FAIL_ORDER, HANG_ORDER, FaultGate
from voicebot.testing.faults.lines import LINES
from voicebot.testing.gateway import Gateway, running_gateway

POINTS = ("handshake", "start", "greeting", "utterance", "action", "reply", "anytime")
HOWS = ("reset", "vanish")
REACH_S = 40.0  # the most a plan waits for its point (ASR and the action timeout on two busy cores)


@dataclass(frozen=True)
class Plan:
    n: int
    protocol: str
    point: str
    how: str
    seed: int

    def label(self) -> str:
        return f"#{self.n} {self.protocol} {self.point} {self.how}"


def make_plans(
    count: int, seed: int, vanish_share: float = 0.15, protocols: Sequence[str] = PROTOCOLS
) -> list[Plan]:
    """`count` plans cycling through every protocol (of `protocols`) × point, so each is covered; order and
    details seeded."""
    rng = random.Random(seed)
    combos = [(p, q) for p in protocols for q in POINTS]
    rng.shuffle(combos)
    plans = []
    for n in range(count):
        protocol, point = combos[n % len(combos)]
        how = "vanish" if point != "handshake" and rng.random() < vanish_share else "reset"
        plans.append(Plan(n, protocol, point, how, rng.randrange(2**31)))
    return plans


@dataclass
class Outcome:
    plan: Plan
    reached: bool  # the call got to the plan's point before the line died
    call_id: str | None = None
    ended: bool = True  # the server ended the call (it left `hub.calls`)
    error: str | None = None  # the caller's own failure, if any (a harness problem, not the server's)


async def run_plan(plan: Plan, gw: Gateway, phrases: dict[str, PCM], gate: FaultGate) -> Outcome:
    """Place one call and drop it at the plan's point; wait until the server has ended it."""
    rng = random.Random(plan.seed)
    caller = LINES[plan.protocol]()
    outcome = Outcome(plan, reached=False)
    try:
        if plan.point == "handshake":
            await caller.handshake_abort(gw)
            outcome.reached = True
            return outcome
        await caller.connect(gw)
        await until(lambda: caller.call_id(gw.hub) is not None or caller.closed.is_set(), REACH_S)
        outcome.call_id = caller.call_id(gw.hub)
        outcome.reached = await _reach(plan.point, rng, caller, gw, phrases, gate, outcome.call_id)
        caller.abort() if plan.how == "reset" else caller.freeze()
        if outcome.call_id is not None:
            outcome.ended = await until(lambda: outcome.call_id not in gw.hub.calls, REACH_S)
    except Exception as exc:
        outcome.error = f"{type(exc).__name__}: {exc}"
    finally:
        await caller.close()
    return outcome


async def _reach(
    point: str,
    rng: random.Random,
    caller: Caller,
    gw: Gateway,
    phrases: dict[str, PCM],
    gate: FaultGate,
    call_id: str | None,
) -> bool:
    if point == "start":
        await asyncio.sleep(rng.uniform(0.0, 0.3))
        return True
    if point == "greeting":
        frames = rng.randint(1, 150)
        return await until(lambda: caller.bot_frames >= frames, REACH_S)
    if point == "utterance":
        first, last = caller.say(phrases[rng.choice(sorted(phrases))])
        cut = rng.randint(first + 3, last - 3)
        return await until(lambda: caller.sent >= cut, REACH_S)
    if point == "action":  # keys, not speech: "1" (track an order) at the main question, then the number
        await caller.press("1" + HANG_ORDER)
        if not await until(lambda: gate.running_in(call_id), REACH_S):
            return False
        await asyncio.sleep(rng.uniform(0.0, 1.0))  # under the 1.5 s action timeout: still hanging
        return gate.running_in(call_id)
    if point == "reply":
        await caller.press("1" + FAIL_ORDER)
        if not await until(lambda: "raise" in gate.seen(call_id), REACH_S):
            return False
        heard, more = caller.bot_frames, rng.randint(1, 120)
        return await until(lambda: caller.bot_frames >= heard + more, REACH_S)
    if point == "anytime":
        await asyncio.sleep(rng.uniform(0.0, 2.0))
        caller.say(phrases[rng.choice(sorted(phrases))])
        await asyncio.sleep(rng.uniform(0.0, 10.0))
        return True
    raise ValueError(f"unknown point {point!r}")


async def run_plans(
    plans: list[Plan], gw: Gateway, phrases: dict[str, PCM], gate: FaultGate, concurrency: int
) -> list[Outcome]:
    """Every plan, `concurrency` calls at a time."""
    slots = asyncio.Semaphore(concurrency)

    async def one(plan: Plan) -> Outcome:
        async with slots:
            return await run_plan(plan, gw, phrases, gate)

    return list(await asyncio.gather(*(one(p) for p in plans)))


# --- what must hold ----------------------------------------------------------------------------------


class Ledger:
    """A call observer noting every start and end: what the stored records are checked against."""

    def __init__(self) -> None:
        self.starts: dict[str, str] = {}  # call id → protocol
        self.ends: dict[str, str] = {}  # call id → end reason
        self.heard: dict[str, list[str]] = {}  # call id → the caller's turns as transcribed

    def on_start(self, call_id: str, protocol: str, meta: dict[str, Any]) -> None:
        self.starts[call_id] = protocol

    def on_event(self, call_id: str, frame: Frame) -> None:
        if isinstance(frame, FinalTranscript):
            self.heard.setdefault(call_id, []).append(frame.text)

    def on_end(self, call_id: str, reason: str) -> None:
        self.ends[call_id] = reason


def lost_records(store: CallStore, ledger: Ledger) -> list[str]:
    """Calls that started but have no stored record with an end reason (blocking: a thread from async)."""
    lost = []
    for call_id in ledger.starts:
        detail = store.get_call(call_id)
        if detail is None or detail.call.status != "ended" or not detail.call.end_reason:
            lost.append(call_id)
    return lost


class Crashes(logging.Handler):
    """Collects error logs and the event loop's unhandled exceptions while installed."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.errors: list[logging.LogRecord] = []
        self.unhandled: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.errors.append(record)

    @property
    def tracebacks(self) -> list[str]:
        """Errors logged with a traceback: an exception something did not expect."""
        return [f"{r.name}: {r.getMessage()}" for r in self.errors if r.exc_info]

    def count(self) -> int:
        return len(self.tracebacks) + len(self.unhandled)

    @contextlib.contextmanager
    def installed(self) -> Iterator[Crashes]:
        """Error logs (uvicorn's reach the root: `serving` leaves its logging unconfigured), exceptions
        nobody retrieved from a task or callback of the running loop, and exceptions that ended a thread."""
        loggers = [logging.getLogger()]
        loop = asyncio.get_running_loop()
        previous_loop, previous_thread = loop.get_exception_handler(), threading.excepthook

        def on_loop(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            self.unhandled.append(f"{context.get('message')} {context.get('exception')!r}")
            loop.default_exception_handler(context)

        def on_thread(args: threading.ExceptHookArgs) -> None:
            self.unhandled.append(f"thread {args.thread.name if args.thread else '?'}: {args.exc_value!r}")
            previous_thread(args)

        for logger in loggers:
            logger.addHandler(self)
        loop.set_exception_handler(on_loop)
        threading.excepthook = on_thread
        try:
            yield self
        finally:
            threading.excepthook = previous_thread
            loop.set_exception_handler(previous_loop)
            for logger in loggers:
                logger.removeHandler(self)


@dataclass(frozen=True)
class Usage:
    tasks: int
    fds: int
    threads: int
    task_names: list[str] = field(default_factory=list, compare=False)


def usage() -> Usage:
    tasks = asyncio.all_tasks()
    return Usage(len(tasks), psutil.Process().num_fds(), threading.active_count(),
                 sorted(t.get_name() for t in tasks))  # fmt: skip


async def settle(baseline: Usage, fds: bool = True, timeout: float = 20.0) -> Usage:
    """Usage once tasks (and `fds`) are back to `baseline` (sockets and tasks wind down asynchronously
    after a call), or after `timeout`: the leak is then what is left over."""

    def back() -> bool:
        now = usage()
        return now.tasks <= baseline.tasks and (not fds or now.fds <= baseline.fds)

    await until(back, timeout, 0.1)
    return usage()


# --- one run of the gateway under faults -------------------------------------------------------------


@dataclass
class Run:
    """What a fault run measured; filled in as the run winds down (see `fault_run`)."""

    gw: Gateway
    ledger: Ledger
    crashes: Crashes
    store: CallStore
    before: Usage  # before the gateway started
    up: Usage  # the gateway up, no call yet
    after_calls: Usage | None = None  # the gateway up, every call over
    after: Usage | None = None  # the gateway stopped, the store closed
    calls_left: int = -1  # calls still in the hub once the test's calls were over
    lost: list[str] = field(default_factory=list)

    def figures(self, inputs: int, **extra: Any) -> dict[str, Any]:
        """The numbers every fault reports (scripts/faults_gateway.py)."""
        return {
            "inputs": inputs,
            "calls_started": len(self.ledger.starts),
            "crashes": self.crashes.count(),
            "crash_messages": self.crashes.tracebacks + self.crashes.unhandled,
            "errors_logged": sorted({r.getMessage()[:160] for r in self.crashes.errors if not r.exc_info}),
            "leaks": self.leaks(),
            "calls_left": self.calls_left,
            "records_lost": len(self.lost),
            "end_reasons": dict(Counter(self.ledger.ends.values()).most_common()),
        } | extra

    def leaks(self) -> dict[str, int]:
        """Tasks left once the calls were over (gateway still up), and tasks and fds left after it all
        (negative: fewer than before, e.g. a descriptor something else had open at the start)."""
        assert self.after_calls is not None and self.after is not None
        return {
            "tasks_after_calls": self.after_calls.tasks - self.up.tasks,
            "tasks": self.after.tasks - self.before.tasks,
            "fds": self.after.fds - self.before.fds,
        }


@contextlib.asynccontextmanager
async def fault_run(
    services: Services,
    factory: BrainFactory,
    store: CallStore,
    config: VoicebotConfig,
    ping_s: float | None = 20.0,
) -> AsyncIterator[Run]:
    """Run the gateway (the `Ledger` and `store` observing) for the body's calls, then measure: calls left
    in the hub, leaked tasks (gateway up) and tasks and fds (all stopped), and started calls whose record
    or end reason is missing. The store is closed at the end."""
    before = usage()
    ledger, crashes = Ledger(), Crashes()
    with crashes.installed():
        async with running_gateway(config, services, factory, [ledger, store], ping_s) as gw:
            run = Run(gw, ledger, crashes, store, before, usage())
            yield run
            run.calls_left = len(gw.hub.calls)
            run.after_calls = await settle(run.up, fds=False)
        await store.flush()
        run.lost = await asyncio.to_thread(lost_records, store, ledger)
        await asyncio.to_thread(store.close)
        run.after = await settle(before)
