"""The operator console in a real headless Chromium, against real calls: an operator logs in with the form,
watches a Twilio-protocol call appear and its transcript grow, listens in, transfers another call to a
person with the button, filters the history, opens the finished call and plays its recording, corrects a
turn into the reviewed training file, reads the dashboard and the transferred call's hand-off; requests
without the session or the CSRF token are refused from inside the page too.

The calls run on the shop's real dialogue engine with fake models (`voicebot.testing.console`), so the
test needs no model. With VOICEBOT_SCREENSHOTS=DIR it writes the README's screenshots there
(`VOICEBOT_SCREENSHOTS=docs/img .venv/bin/pytest tests/test_console_browser.py`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from voicebot.testing.chromium import DevTools, chromium_binary, open_page, page_until, shoot
from voicebot.testing.console import ConsoleBed, console_gateway, line, users
from voicebot.testing.faults.callers import until
from voicebot.testing.faults.env import gone

STATE = """(() => {
  const s = window.consoleState || {};
  const cards = [...document.querySelectorAll("#live-calls .call")].map(c => ({
    id: c.dataset.id, text: c.querySelector(".transcript").textContent,
    slots: c.querySelector(".slots").textContent, flow: c.querySelector(".flow").textContent,
    caller: c.querySelector(".caller").textContent}));
  const rows = [...document.querySelectorAll("#history-rows tr")].map(r => r.dataset.id);
  const outcomes = [...document.querySelectorAll("#history-rows td.outcome")].map(t => t.textContent);
  const handoff = document.getElementById("call-handoff");
  const audio = document.getElementById("call-audio");
  return {
    path: location.pathname, ready: !!s.ready, view: s.view, partials: s.partials || 0, cards, rows, outcomes,
    handoff: handoff && !handoff.hidden ? handoff.textContent : null,
    historyLoaded: (document.getElementById("history-rows") || {dataset: {}}).dataset.loaded || null,
    callLoaded: (document.getElementById("call-turns") || {dataset: {}}).dataset.loaded || null,
    turns: document.querySelectorAll("#call-turns .turn").length,
    chat: (document.getElementById("call-turns") || {}).textContent || "",
    segments: [...document.querySelectorAll("#call-turns svg.waterfall rect")].map(r => r.dataset.segment),
    playing: [...document.querySelectorAll("#call-turns .turn.playing")].map(t => Number(t.dataset.index)),
    audio: audio ? {time: audio.currentTime, duration: audio.duration, error: !!audio.error} : null,
    dashboard: (document.getElementById("view-dashboard") || {dataset: {}}).dataset.loaded || null,
    kpis: Object.fromEntries([...document.querySelectorAll(".kpi")].map(k => [k.id, k.textContent])),
    bars: document.querySelectorAll("#chart-calls rect").length,
    oos: (document.getElementById("list-oos") || {}).textContent || "",
    listen: s.listen || {},
    saved: Object.fromEntries([...document.querySelectorAll("form.review")].map(
      f => [f.dataset.index, f.dataset.saved])),
  };
})()"""


async def until_page(
    page: DevTools, done: Callable[[dict[str, Any]], Any], what: str, timeout: float = 20
) -> dict[str, Any]:
    return await page_until(page, STATE, done, what, timeout)


def card(state: dict[str, Any], call_id: str) -> dict[str, Any]:
    empty = {"text": "", "slots": "", "flow": "", "caller": ""}
    return next((c for c in state["cards"] if c["id"] == call_id), empty)


async def test_an_operator_watches_transfers_and_reads_back_calls(tmp_path: Path) -> None:
    binary = chromium_binary()
    async with console_gateway(tmp_path, {"users": users()}) as bed:
        await _session(bed, binary, tmp_path)


async def _session(bed: ConsoleBed, binary: str, tmp_path: Path) -> None:
    async with open_page(binary, f"http://{bed.gw.http}/console", tmp_path) as page:
        state = await until_page(page, lambda s: s["path"] == "/console/login", "the login form")
        await shoot(page, "console-login.png", 900, 420)
        await page.evaluate("""(() => { const f = document.getElementById("login");
            f.elements.name.value = "sam"; f.elements.password.value = "super-pass"; f.submit(); })()""")
        await until_page(
            page, lambda s: s["path"] == "/console" and s["ready"], "the console after logging in"
        )
        refused = await page.evaluate("""(async () => [
            (await fetch("/console/api/calls", {credentials: "omit"})).status,
            (await fetch("/console/api/live/x/transfer", {method: "POST"})).status,
            (await fetch("/console/api/live/x/transfer", {method: "POST",
                headers: {"X-CSRF-Token": "forged"}})).status,
            (await fetch("/console/api/live/x/transfer", {method: "POST",
                headers: {"X-CSRF-Token": consoleState.me.csrf}})).status])()""")
        assert refused == [401, 403, 403, 404]  # the real token gets as far as "no such live call"

        # A call appears live, and its transcript grows turn by turn.
        caller, tracked = await bed.call()
        try:
            state = await until_page(
                page, lambda s: card(s, tracked)["caller"].endswith("56"), "the live call"
            )
            assert "7911" not in json.dumps(state)  # the number is masked
            await until(lambda: bed.turns(tracked) >= 1, 10)
            caller.say(line("where is my order"))
            await until_page(page, lambda s: "where is my order" in card(s, tracked)["text"], "the words")
            await until_page(page, lambda s: card(s, tracked)["flow"] == "track_order", "the flow")
            listen = f'document.querySelector(`#live-calls .call[data-id="{tracked}"] button.listen`).click()'
            await page.evaluate(listen)  # listen in while the caller reads the number and the bot answers
            await until(lambda: bed.turns(tracked) >= 2, 10)
            caller.say(line("four five seven two one nine"))
            state = await until_page(
                page,
                lambda s: "457219" in card(s, tracked)["slots"] and "jacket" in card(s, tracked)["text"],
                "more",
            )
            assert card(state, tracked)["text"].index("where is my order") < card(state, tracked)[
                "text"
            ].index("four five seven two one nine")
            state = await until_page(page, lambda s: s["listen"]["bot"] > 10, "the bot's voice, listening in")
            assert state["listen"]["caller"] > 50 and state["listen"]["closed"] is None
            await shoot(page, "console-live.png")
            await page.evaluate(listen)  # stop listening
            await until(lambda: bed.turns(tracked) >= 3, 10)
            caller.say(line("no thanks goodbye"))
            await gone(tracked, bed.gw)
            await until_page(page, lambda s: all(c["id"] != tracked for c in s["cards"]), "the call leaving")
        finally:
            await caller.close()

        # Another call, handed to a person with the button.
        caller, handed = await bed.call()
        try:
            await until_page(page, lambda s: card(s, handed)["caller"] != "", "the second call")
            await page.evaluate(
                f'document.querySelector(`#live-calls .call[data-id="{handed}"] button.transfer`).click()'
            )
            await gone(handed, bed.gw)
        finally:
            await caller.close()
        await bed.store.flush()

        # History: filter, open the call, play its recording.
        await page.evaluate('location.hash = "#/calls"')
        state = await until_page(page, lambda s: s["historyLoaded"] and len(s["rows"]) == 2, "both calls")
        assert state["rows"] == [handed, tracked]
        assert state["outcomes"] == ["transferred: operator", "contained"]  # the hand-off's reason
        await shoot(page, "console-history.png")
        loaded = state["historyLoaded"]
        await page.evaluate("""(() => { const f = document.getElementById("filters");
            f.elements.outcome.value = "transferred"; f.requestSubmit(); })()""")
        state = await until_page(page, lambda s: s["historyLoaded"] != loaded, "the filtered list")
        assert state["rows"] == [handed]
        loaded = state["historyLoaded"]
        await page.evaluate("""(() => { const f = document.getElementById("filters");
            f.elements.outcome.value = ""; f.elements.intent.value = "track_order";
            f.requestSubmit(); })()""")
        state = await until_page(page, lambda s: s["historyLoaded"] != loaded, "the list by intent")
        assert state["rows"] == [tracked]
        await page.evaluate(f'document.querySelector(`#history-rows tr[data-id="{tracked}"]`).click()')
        state = await until_page(page, lambda s: s["callLoaded"] == tracked, "the call's page")
        assert state["handoff"] is None  # no hand-off on a call the bot finished
        assert state["turns"] == 4 and "where is my order" in state["chat"] and "jacket" in state["chat"]
        assert {"endpoint", "asr", "nlu", "action", "tts", "send"} <= set(state["segments"])
        assert "order_status → ok" in state["chat"] and '{"order_id":"457219"}' in state["chat"]
        await page.evaluate('document.getElementById("call-audio").play()')
        state = await until_page(
            page, lambda s: s["audio"] and s["audio"]["time"] > 2.5 and s["playing"], "the recording playing"
        )
        assert not state["audio"]["error"] and state["audio"]["duration"] > 5
        assert state["playing"][0] >= 1  # past the greeting, the player follows the turns

        # Correct a turn: it lands in the reviewed training file.
        await page.evaluate("""(() => {
            const f = document.querySelector('#call-turns form.review[data-index="2"]');
            f.elements.intent.value = "inform";
            f.elements.example.value = "[four five seven two one nine](order_id)";
            f.requestSubmit(); })()""")
        await until_page(page, lambda s: s["saved"].get("2") == "corrected", "the correction saved")
        review = json.loads((tmp_path / "reviewed.jsonl").read_text().splitlines()[-1])
        assert (review["call"], review["turn"], review["by"], review["intent"]) == (
            tracked,
            2,
            "sam",
            "inform",
        )
        assert review["slots"] == {"order_id": "four five seven two one nine"}
        await page.evaluate("window.scrollTo(0, 0)")
        await shoot(page, "console-call.png")

        # The dashboard.
        await page.evaluate('location.hash = "#/dashboard"')
        state = await until_page(page, lambda s: s["dashboard"], "the dashboard")
        assert state["kpis"]["kpi-calls"] == "2" and state["kpis"]["kpi-containment"] == "50.0 %"
        assert state["bars"] >= 1
        await shoot(page, "console-dashboard.png")

        # The transferred call's page: the hand-off, as the person taking the call received it.
        await page.evaluate(f'location.hash = "#/call/{handed}"')
        state = await until_page(page, lambda s: s["callLoaded"] == handed, "the transferred call's page")
        assert "an operator took the call over (operator)" in state["handoff"]
        assert "Transferred because an operator took the call over" in state["handoff"]
        assert "handoffReason" in state["handoff"] and "7911" not in state["handoff"]
        await page.evaluate("""document.querySelector("#call-handoff details").open = true""")
        await shoot(page, "console-handoff.png", 1280, 700)
