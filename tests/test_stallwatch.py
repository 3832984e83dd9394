"""telephony.stallwatch: a blocked event loop is reported once, with its length and where it was blocked."""

from __future__ import annotations

import asyncio
import gc
import logging
import time

import pytest

from telephony.stallwatch import StallWatch


def blocking_handler(seconds: float) -> None:
    time.sleep(seconds)  # what a stall looks like to the loop: a callback that does not return


async def watched(watch: StallWatch, stall_s: float) -> None:
    watch.start()
    await asyncio.sleep(0.1)
    blocking_handler(stall_s)
    await asyncio.sleep(0.1)  # the loop is back: the watcher reports
    await watch.stop()


def test_a_stall_is_reported_with_its_length_and_stack(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="telephony.stallwatch")
    watch = StallWatch(warn_ms=100)
    asyncio.run(watched(watch, 0.3))
    assert watch.stalls == 1
    assert 250 <= watch.longest_ms < 600
    [record] = caplog.records
    assert "event loop stalled" in record.getMessage()
    assert "blocking_handler" in record.getMessage() and "time.sleep(seconds)" in record.getMessage()


def test_short_pauses_and_gc_are_told_apart(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="telephony.stallwatch")
    watch = StallWatch(warn_ms=100)

    async def run() -> None:
        watch.start()
        for _ in range(5):
            blocking_handler(0.03)  # under the threshold: not a stall worth a warning
            await asyncio.sleep(0.02)
        junk = [[i] for i in range(300_000)]
        start = time.perf_counter()
        while time.perf_counter() - start < 0.2:  # a stall spent (partly) collecting garbage
            gc.collect()
        del junk
        await asyncio.sleep(0.1)
        await watch.stop()

    asyncio.run(run())
    assert watch.stalls == 1
    message = caplog.records[0].getMessage()
    gc_ms = float(message.split("garbage collection ")[1].split(" ms")[0])
    assert gc_ms >= 100, message


def test_off_and_stop_are_clean() -> None:
    off = StallWatch(warn_ms=None)

    async def run() -> None:
        off.start()
        blocking_handler(0.2)
        await off.stop()

    asyncio.run(run())
    assert off.stalls == 0
    watch = StallWatch(warn_ms=50)
    asyncio.run(watched(watch, 0.0))
    assert watch.stalls == 0 and watch._thread is None


def test_every_heartbeat_lateness_is_heard_short_delays_included() -> None:
    lags: list[float] = []
    watch = StallWatch(warn_ms=100, on_lag=lags.append)

    async def run() -> None:
        watch.start()
        await asyncio.sleep(0.2)
        blocking_handler(0.05)  # a delay under the warning: no stall, but a late beat
        await asyncio.sleep(0.2)
        await watch.stop()

    asyncio.run(run())
    assert watch.stalls == 0
    assert len(lags) >= 10 and min(lags) >= 0.0
    late = sorted(lags)[-1]
    assert 0.02 <= late < 0.1, lags  # the 50 ms block, less what was left of the 25 ms beat (0-25 ms)
    assert sorted(lags)[len(lags) // 2] < 0.01  # an idle loop is on time
