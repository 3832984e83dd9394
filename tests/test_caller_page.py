"""The caller page (`GET /`) completes a task in a real headless Chromium, with a fake microphone and the
keypad: the shop's real dialogue engine and call records on the fake models (voicebot.testing.console), so
a whole call runs in seconds without a model.

Chromium's fake capture device (`--use-file-for-fake-audio-capture`) plays a WAV as the microphone: the
caller's words as the fake recogniser's tone. The page shows them and the bot's answers as a chat, the
keypad types the order number as DTMF, each answered turn gets its latency, the level meter moves, and the
hang-up button ends the call. The gateway serves a second domain (echo) that the page offers and a call can
pick; a domain the gateway does not serve is refused.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest
import websockets

from voicebot.audio import write_wav
from voicebot.brain import EchoBrain
from voicebot.testing.caller_page import page_until, press_keys
from voicebot.testing.chromium import chromium_binary, open_page, shoot
from voicebot.testing.console import BEARER, TOKEN, VOICE, console_gateway, request
from voicebot.testing.speech import silence

MIC_RATE = 48_000  # what a browser's microphone usually runs at


@pytest.fixture
def chromium() -> str:
    return chromium_binary()


def microphone(folder: Path, text: str) -> Path:
    """A WAV for the fake capture device: a pause, the caller's words, then a long silence (the device
    plays the file in a loop: the words must not come round again during the test)."""
    path = folder / "caller.wav"
    words = VOICE.say(text, MIC_RATE)
    write_wav(path, np.concatenate([silence(1.5, MIC_RATE), words, silence(40.0, MIC_RATE)]), MIC_RATE)
    return path


async def test_the_caller_page_completes_a_task_with_the_microphone_and_keypad(
    chromium: str, tmp_path: Path
) -> None:
    mic = microphone(tmp_path, "where is my order")
    async with (
        console_gateway(tmp_path, more_domains={"echo": EchoBrain}) as bed,
        open_page(chromium, f"http://{bed.gw.http}/?token={TOKEN}", tmp_path, mic) as page,
    ):
        host = bed.gw.http
        state = await page_until(page, lambda s: s.get("ready"), "the page loaded", 15)
        assert state["domains"] == ["shop", "echo"] and "-" in state["keypad"]  # keys off until a call
        assert (await request(host, "/domains"))[0] == 403  # the gateway's token, like every endpoint
        status, _, body = await request(host, f"/domains?token={TOKEN}")
        assert status == 200 and json.loads(body) == {"domains": ["shop", "echo"], "default": "shop"}

        await page.evaluate('document.getElementById("talk").click()')
        state = await page_until(
            page,
            lambda s: "where is my order" in s["callers"] and any("order number" in b for b in s["bots"]),
            "the caller's words and the bot asking for the order number",
            30,
        )
        assert state["talk"] == "Hang up" and "+" in state["keypad"] and "shop" in state["status"]
        assert state["stats"]["peak"] > -40  # the meter heard the words
        await press_keys(page, "457219#")
        state = await page_until(
            page, lambda s: any("denim jacket" in b for b in s["bots"]), "the order's status", 30
        )
        assert state["keys"] == ["457219#"] and state["stats"]["dtmf"] == 7
        assert state["stats"]["partials"] > 0  # the words showed as partials before the final transcript
        await page_until(page, lambda s: len(s["latencies"]) >= 3, "each answer's latency", 10)
        await shoot(page, "caller-page.png", 1000, 640)

        await page.evaluate('document.getElementById("talk").click()')  # hang up
        state = await page_until(page, lambda s: s["stats"]["ended"], "the call ending", 10)
        assert state["stats"]["ended"] == "caller hung up" and state["talk"] == "Call"
        await bed.store.flush()
        calls = json.loads((await request(host, "/console/api/calls", headers=BEARER))[2])
        detail = await asyncio.to_thread(bed.store.get_call, calls[0]["id"])
        assert detail is not None
        assert [t.action_result for t in detail.turns if t.action == "order_status"] == ["ok"]

        # The other domain, chosen on the page: the echo brain answers.
        before = len(state["bots"])
        await page.evaluate('document.getElementById("domain").value = "echo"')
        await page.evaluate('document.getElementById("talk").click()')
        await page_until(page, lambda s: "echo" in s["status"], "a call to the echo domain", 10)
        await press_keys(page, "5")
        await page_until(
            page, lambda s: "You pressed 5." in s["bots"][before:], "the echo brain's answer to the key", 20
        )
        await page.evaluate('document.getElementById("talk").click()')

        url = f"ws://{host}/ws?rate=16000&token={TOKEN}&domain=bank"
        async with websockets.connect(url) as ws:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
        assert "no domain 'bank'" in closed.value.rcvd.reason


def test_a_call_that_names_no_served_domain_gets_the_default() -> None:
    """Only the browser's /ws checks the name (and refuses an unknown one); any other call's metadata that
    happens to carry one gets the default domain, never an error mid-call."""
    from telephony.domains import Domains, brains_for, domain_names

    class Other(EchoBrain):
        pass

    domains = Domains({"shop": EchoBrain, "other": Other})
    assert domain_names(domains) == ["shop", "other"] and domain_names(EchoBrain) == []
    assert brains_for(domains, "other") is Other and brains_for(domains, None) is EchoBrain
    assert brains_for(domains, "bank") is EchoBrain and isinstance(domains(), EchoBrain)
    assert brains_for(Other, "shop") is Other  # one domain: its brains whatever is asked


def test_serve_refuses_two_domains_of_one_name(tmp_path: Path) -> None:
    import argparse

    from voicebot.cli import UserError, _serve_brains
    from voicebot.config import VoicebotConfig

    folders = [tmp_path / "a" / "shop", tmp_path / "b" / "shop"]
    with pytest.raises(UserError, match="two --domain folders with one name"):
        _serve_brains(argparse.Namespace(domain=folders, quick=False), VoicebotConfig())
