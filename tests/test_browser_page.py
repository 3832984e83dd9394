"""The browser page (`GET /`) in a real headless Chromium: microphone → /ws → ASR → reply → speaker.

Chromium's fake capture device plays a WAV of a caller (made by the real TTS) as the microphone, and the
test drives the page over the Chrome DevTools Protocol (one WebSocket, flat sessions): press Talk, watch
the DOM for the transcript and the bot's reply, and read `window.voicebotStats` for the reply audio the
page played. The system package `chromium` (Makefile DEB_PACKAGES) provides the browser; without it the
test skips, except under CI=true, where a missing browser is a failure.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from voicebot.audio import write_wav
from voicebot.config import ServerConfig, VoicebotConfig
from voicebot.pipeline import Services
from voicebot.testing.caller_page import page_until
from voicebot.testing.chromium import chromium_binary, open_page
from voicebot.testing.gateway import running_gateway
from voicebot.testing.speech import silence

CALLER_RATE = 48_000  # what a browser's microphone usually runs at


@pytest.fixture
def chromium() -> str:
    return chromium_binary()


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
        open_page(chromium, f"http://{gw.http}/", tmp_path, microphone) as page,
    ):
        await page_until(page, lambda s: s.get("ready"), "the page loaded", 15)
        await page.evaluate('document.getElementById("talk").click()')
        state = await page_until(
            page,
            lambda s: (
                s["bots"]
                and s["bots"][-1].startswith("You said")
                and {"agent", "human"} & set(s["callers"][-1].lower().split())
            ),
            "the caller's words and the bot's echo",
            40,
        )
        assert "connected at" in state["status"] and state["talk"] == "Hang up"
        assert state["domains"] == [""]  # the echo brain: no domain to choose
        assert state["stats"]["peak"] > -40  # the level meter heard the caller
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
