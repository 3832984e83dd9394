"""The caller page (`GET /`, telephony/static/index.html) as a test sees it in headless Chromium: `STATE` is
the JavaScript that reads what the page shows (the chat's bubbles, the keypad, the level meter, the
per-turn latencies, the domains offered, `window.voicebotStats`), and `page_until` waits for it. Used by the
real-model test (tests/test_browser_page.py) and the model-free one (tests/test_caller_page.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from voicebot.testing.chromium import DevTools
from voicebot.testing.chromium import page_until as until_state

STATE = """(() => {
  const all = selector => [...document.querySelectorAll(selector)];
  const stats = window.voicebotStats || null;
  return {
    ready: document.readyState === "complete" && stats !== null && stats.domains !== null,
    status: (document.getElementById("status") || {}).textContent || "",
    callers: all("#log .bubble.caller:not(.partial):not(.keys)").map(n => n.textContent),
    bots: all("#log .bubble.bot").map(n => n.firstChild ? n.firstChild.textContent : ""),
    keys: all("#log .bubble.keys").map(n => n.textContent),
    latencies: all("#log .latency").map(n => Number(n.dataset.ms)),
    notes: all("#log .note").map(n => n.textContent),
    domains: all("#domain option").map(o => o.value),
    keypad: all("#keypad button").map(b => b.dataset.key + (b.disabled ? "-" : "+")).join(" "),
    meter: (document.getElementById("meter-bar") || {style: {}}).style.width || "",
    talk: (document.getElementById("talk") || {}).textContent || "",
    stats,
  };
})()"""  # while about:blank is still loading, the page's elements are not there yet


async def page_until(
    page: DevTools, done: Callable[[dict[str, Any]], Any], what: str, timeout: float
) -> dict[str, Any]:
    """Poll the caller page until `done(state)`; fail the test with what it showed on timeout."""
    return await until_state(page, STATE, done, what, timeout)


async def press_keys(page: DevTools, keys: str) -> None:
    """Click the page's keypad buttons, one after another, as a user would."""
    for key in keys:
        await page.evaluate(f'document.querySelector(`#keypad [data-key="{key}"]`).click()')
