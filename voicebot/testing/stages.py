"""Running one stage on its own: frames in, frames out, both directions (after Pipecat's `run_test`);
and `events_until`, reading a whole call's events up to a frame of a kind.

    out = await run_stage(VADStage(Endpointer(EnergyVAD(), VADConfig())), [AudioIn(pcm, t)])
    up: list[Frame] = []
    out = await run_stage(asr_stage, [context_up, started, *audio, ended], upstream=up)

Frames are fed in order (a `(frame, Direction.UPSTREAM)` pair feeds one upstream, a number waits that many
seconds before the next item: a caller who talks over the bot a moment into its reply); then a `Barrier`
follows them, and once it comes out of the stage every frame queued before it has been dealt with (control
frames wait for the stage's work). The frames the stage sent downstream before the barrier are returned,
and what it sent upstream is added to `upstream`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from voicebot.frames import Barrier, Direction, Frame
from voicebot.pipeline import CallPipeline
from voicebot.stages.base import Stage

DONE = "run_stage: done"


async def run_stage(
    stage: Stage,
    frames: Iterable[Frame | tuple[Frame, Direction] | float],
    upstream: list[Frame] | None = None,
    timeout_s: float = 10.0,
    settle_s: float = 0.0,
) -> list[Frame]:
    """Feed `frames` to a fresh `stage`, wait for it to deal with them all, stop it; its downstream output.
    `settle_s`: wait this long after the barrier too (for frames a stage sends later on its own clock)."""
    down: list[Frame] = []
    done = asyncio.Event()

    async def collect(frame: Frame) -> None:
        if isinstance(frame, Barrier) and frame.tag == DONE:
            done.set()
        else:
            down.append(frame)

    async def collect_up(frame: Frame) -> None:
        if upstream is not None:
            upstream.append(frame)

    stage.link(downstream=collect, upstream=collect_up)
    stage.start()
    try:
        for item in frames:
            if isinstance(item, int | float):
                await asyncio.sleep(item)
                continue
            frame, direction = item if isinstance(item, tuple) else (item, Direction.DOWNSTREAM)
            await stage.put(frame, direction)
        await stage.put(Barrier(tag=DONE))
        async with asyncio.timeout(timeout_s):
            await done.wait()
        if settle_s:
            await asyncio.sleep(settle_s)
    finally:
        await stage.stop()
    return down


async def events_until(pipe: CallPipeline, kind: type[Frame], timeout_s: float = 20.0) -> list[Frame]:
    """A whole call's events up to and including the next `kind` (`TimeoutError` after `timeout_s`)."""
    seen: list[Frame] = []
    async with asyncio.timeout(timeout_s):
        while True:
            seen.append(await pipe.events.get())
            if isinstance(seen[-1], kind):
                return seen
