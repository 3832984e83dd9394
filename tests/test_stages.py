"""Stage plumbing: barge-in drops stale replies but never the barriers and hang-ups queued behind them."""

from __future__ import annotations

import asyncio

from voicebot.frames import Frame
from voicebot.nlu.tokens import merge_adjacent
from voicebot.stages.base import OrderedWork


def test_clear_drops_jobs_but_keeps_kept_ones_in_order() -> None:
    async def scenario() -> list[str]:
        ran: list[str] = []
        reported: list[Frame] = []

        async def report(frame: Frame) -> None:
            reported.append(frame)

        work = OrderedWork("t", report)

        def job(name: str):  # type: ignore[no-untyped-def]
            async def run() -> None:
                ran.append(name)

            return run

        work.submit(job("reply1"))
        work.submit(job("barrier"), keep=True)
        work.submit(job("reply2"))
        work.submit(job("hangup"), keep=True)
        assert work.clear() == 2
        work.start()
        await asyncio.sleep(0.05)
        await work.stop()
        assert not reported
        return ran

    assert asyncio.run(scenario()) == ["barrier", "hangup"]


def test_back_to_back_spans_of_one_type_merge() -> None:
    spans = [("order_id", 3, 4), ("order_id", 4, 5), ("city", 6, 7), ("city", 8, 9)]
    assert merge_adjacent(spans) == [("order_id", 3, 5), ("city", 6, 7), ("city", 8, 9)]
    words = ["where's", "my", "order", "830", ",", "112", "?", "in", "Leeds", "and", "York"]
    spans = [("order_id", 3, 4), ("order_id", 5, 6), ("city", 8, 9), ("city", 10, 11)]
    assert merge_adjacent(spans, words) == [("order_id", 3, 6), ("city", 8, 9), ("city", 10, 11)]
