"""A real headless Chromium driven over the Chrome DevTools Protocol (one WebSocket, flat sessions), for the
tests of the pages the gateway serves (the caller page, the operator console).

The system package `chromium` (Makefile DEB_PACKAGES) provides the browser; `chromium_binary` skips a test
without it, except under CI=true, where a missing browser is a failure. `open_page` starts a throwaway
profile with a page open (optionally a WAV file as the microphone); `DevTools.evaluate` runs JavaScript in
it as if from a user's click; `page_until` waits for the page to show something; `screenshot` writes a
PNG of what it shows, and `shoot` does so for the README's screenshots when VOICEBOT_SCREENSHOTS names a
folder (`VOICEBOT_SCREENSHOTS=docs/img .venv/bin/pytest tests/test_console_browser.py
tests/test_caller_page.py`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import websockets

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


def chromium_binary() -> str:
    """The system Chromium; skips the test when there is none (fails it under CI=true)."""
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

    async def screenshot(self, path: Path, width: int = 1400, height: int = 900) -> None:
        """A PNG of the page at `width` x `height` CSS pixels."""
        size = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}
        await self.send("Emulation.setDeviceMetricsOverride", **size)
        shot = await self.send("Page.captureScreenshot", format="png")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))


async def page_until(
    page: DevTools, state: str, done: Callable[[dict[str, Any]], Any], what: str, timeout: float
) -> dict[str, Any]:
    """Poll the page's `state` (a JavaScript expression giving an object) until `done(state)`; on timeout,
    fail the test with what the page showed."""
    found: dict[str, Any] = {}
    try:
        async with asyncio.timeout(timeout):
            while not done(found := await page.evaluate(state)):
                await asyncio.sleep(0.2)
    except TimeoutError:
        pytest.fail(f"the page never showed {what} in {timeout:.0f} s; it showed {found}")
    return found


async def shoot(page: DevTools, name: str, width: int = 1400, height: int = 900) -> None:
    """With VOICEBOT_SCREENSHOTS=DIR, a PNG of the page as DIR/name; else nothing."""
    folder = os.environ.get("VOICEBOT_SCREENSHOTS")
    if folder:
        await page.screenshot(Path(folder) / name, width, height)


@contextlib.asynccontextmanager
async def open_page(
    binary: str, url: str, folder: Path, microphone: Path | None = None
) -> AsyncIterator[DevTools]:
    """Start Chromium (with `microphone` as its capture device, played in a loop) and `url` open; stop it
    after."""
    profile = folder / "profile"
    capture = [f"--use-file-for-fake-audio-capture={microphone}"] if microphone is not None else []
    with (folder / "chromium.log").open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            binary, *FLAGS, f"--user-data-dir={profile}", *capture, "about:blank", stdout=log, stderr=log
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
