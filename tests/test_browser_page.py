"""The browser page (`GET /`) in a real headless Chromium: microphone → /ws → ASR → reply → speaker.

Chromium's fake capture device plays a WAV of a caller (made by the real TTS) as the microphone, and the
test drives the page over the Chrome DevTools Protocol (one WebSocket, flat sessions): press Talk, watch
the DOM for the transcript and the bot's reply, and read `window.voicebotStats` for the reply audio the
page played. The system package `chromium` (Makefile DEB_PACKAGES) provides the browser; without it the
test skips, except under CI=true, where a missing browser is a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import websockets

from voicebot.audio import write_wav
from voicebot.config import ServerConfig, VoicebotConfig
from voicebot.pipeline import Services
from voicebot.testing.gateway import running_gateway
from voicebot.testing.speech import silence

CALLER_RATE = 48_000  # what a browser's microphone usually runs at
CHROMIUM_NAMES = ("chromium", "chromium-browser")  # Debian's binary; Ubuntu's older name
FLAGS = (
    "--headless=new",
    "--no-sandbox",  # root in a container has no user namespaces for the sandbox
    "--no-first-run",
    "--disable-gpu",
    "--use-fake-ui-for-media-stream",  # grant the microphone without a prompt
    "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    "--remote-debugging-port=0",  # a free port, written to DevToolsActivePort in the profile
)


@pytest.fixture
def chromium() -> str:
    binary = next(filter(None, map(shutil.which, CHROMIUM_NAMES)), None)
    if binary is None:
        reason = "Chromium not installed (Debian: apt-get install chromium, or `make install`)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return binary


class DevTools:
    """One page of a headless Chromium over the DevTools protocol: commands, and JavaScript evaluation."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.session: str | None = None

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one command (to the page once attached) and wait for its answer, skipping events."""
        number = next(self.ids)
        message: dict[str, Any] = {"id": number, "method": method, "params": params}
        if self.session is not None:
            message["sessionId"] = self.session
        await self.ws.send(json.dumps(message))
        while (answer := json.loads(await self.ws.recv())).get("id") != number:
            pass
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        result: dict[str, Any] = answer["result"]
        return result

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page, run as if from a user's click."""
        result = await self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True, userGesture=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")


@contextlib.asynccontextmanager
async def open_page(binary: str, url: str, microphone: Path, folder: Path) -> AsyncIterator[DevTools]:
    """Start Chromium with `microphone` as its capture device and `url` open; stop it after."""
    profile = folder / "profile"
    with (folder / "chromium.log").open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            binary,
            *FLAGS,
            f"--user-data-dir={profile}",
            f"--use-file-for-fake-audio-capture={microphone}",  # played in a loop
            "about:blank",
            stdout=log,
            stderr=log,
        )
    try:
        port_file = profile / "DevToolsActivePort"
        async with asyncio.timeout(30):
            while len(lines := (port_file.read_text().split() if port_file.exists() else [])) < 2:
                if process.returncode is not None:
                    raise RuntimeError(
                        f"Chromium exited with {process.returncode}: see {folder}/chromium.log"
                    )
                await asyncio.sleep(0.1)
        async with websockets.connect(f"ws://127.0.0.1:{lines[0]}{lines[1]}", max_size=None) as ws:
            tools = DevTools(ws)
            target = await tools.send("Target.createTarget", url=url)
            attached = await tools.send("Target.attachToTarget", targetId=target["targetId"], flatten=True)
            tools.session = attached["sessionId"]
            yield tools
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 5)
            except TimeoutError:
                process.kill()
                await process.wait()


PAGE_STATE = """(() => {
  const text = id => (document.getElementById(id) || {}).textContent || "";
  return {
    ready: document.readyState === "complete" && typeof window.voicebotStats === "object",
    status: text("status"), transcript: text("transcript"), reply: text("reply"), log: text("log"),
    stats: window.voicebotStats || null,
  };
})()"""  # while about:blank is still loading, the page's elements are not there yet


async def page_until(
    page: DevTools, done: Callable[[dict[str, Any]], Any], what: str, timeout: float
) -> dict[str, Any]:
    """Poll the page's state until `done(state)`; on timeout, fail with what the page showed."""
    state: dict[str, Any] = {}
    try:
        async with asyncio.timeout(timeout):
            while not done(state := await page.evaluate(PAGE_STATE)):
                await asyncio.sleep(0.2)
    except TimeoutError:
        pytest.fail(f"the page never showed {what} in {timeout:.0f} s; it showed {state}")
    return state


async def test_browser_page_talks_to_the_bot(chromium: str, services: Services, tmp_path: Path) -> None:
    spoken = services.tts.synthesize_at("Can I speak to a human agent please?", CALLER_RATE)
    microphone = tmp_path / "caller.wav"
    # Silence after the words long enough for the reply to play before the loop says them again.
    write_wav(
        microphone,
        np.concatenate([silence(1.0, CALLER_RATE), spoken, silence(4.0, CALLER_RATE)]),
        CALLER_RATE,
    )
    config = VoicebotConfig(server=ServerConfig(audiosocket_port=None, drain_s=1))
    async with (
        running_gateway(config, services) as gw,
        open_page(chromium, f"http://{gw.http}/", microphone, tmp_path) as page,
    ):
        await page_until(page, lambda s: s.get("ready"), "the page loaded", 15)
        await page.evaluate('document.getElementById("talk").click()')
        state = await page_until(
            page,
            lambda s: (
                s["reply"].startswith("You said")
                and {"agent", "human"} & set(s["transcript"].lower().split())
            ),
            "the caller's words and the bot's echo",
            40,
        )
        assert "connected at" in state["status"]
        assert state["stats"]["audioFrames"] > 0 and state["stats"]["turns"] >= 1
        heard = state["stats"]["audioFrames"]
        state = await page_until(
            page, lambda s: s["stats"]["audioFrames"] >= heard + 10, "the reply's audio", 10
        )  # 10 frames of 20 ms after the reply event: the reply itself is playing
        stats = state["stats"]
        assert stats["bytes"] == stats["audioFrames"] * stats["rate"] // 50 * 2  # 20 ms of PCM16 each
        await page.evaluate('document.getElementById("talk").click()')  # hang up
        state = await page_until(page, lambda s: s["stats"]["ended"], "the call ending", 10)
        assert state["stats"]["ended"] == "caller hung up"
