"""A shop back end that fails on purpose, for tests/test_faults.py and scripts/faults_gateway.py.

The domain is a copy of `domains/shop` with a shorter action timeout, whose `actions.py` registers the real
shop actions through `register` below: `order_status` hangs for one order number and raises for another,
so a caller reaches a hung or broken back end just by asking for that order. The hang is a real blocked
thread (a `threading.Event` wait), which the action timeout must abandon; the gate notes, per call, which
faults ran, so a test can hang up on a call exactly while its action hangs. An order mapped to "slow" is
answered truly, `slow_s` late (a back end that keeps the caller waiting: the hold audio's tests).
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from telephony.logs import CALL_ID
from voicebot.dialogue.actions import ActionFn, ActionResult, Actions
from voicebot.dialogue.brain import DialogueFactory
from voicebot.frames import PCM
from voicebot.nlu.parser import NLU, Parser
from voicebot.pipeline import Services
from voicebot.testing.shop import SHOP, shop_model
from voicebot.testing.speech import PHONE_RATE, spoken

HANG_ORDER, FAIL_ORDER = "351609", "229107"
ACTION_TIMEOUT_S = 1.5  # the copy's `timeouts.action_s` (the shop says 5 s): a hang costs the tests less
PHRASES = {
    "hang": "I would like to track my order. The number is three five one six zero nine.",
    "fail": "I would like to track my order. The number is two two nine one zero seven.",
    "agent": "Can I speak to a human agent please?",
}
_ACTIONS_PY = '"""The shop\'s actions, with faults: see voicebot/testing/faults/domain.py."""\n\n' + (
    "from voicebot.testing.faults.domain import register  # noqa: F401\n"
)


class FaultGate:
    """Decides what `order_status` does per order number, and notes every run by call id."""

    def __init__(self, hang_s: float = 8.0, slow_s: float = 1.0) -> None:
        self.modes = {HANG_ORDER: "hang", FAIL_ORDER: "raise"}
        self.hang_s = hang_s  # a hung action returns by itself after this long (or on `release`)
        self.slow_s = slow_s  # a "slow" order's answer takes this long
        self.release = threading.Event()
        self.running = 0
        self._active: dict[str | None, int] = {}  # call id → its actions running now
        self.runs: dict[str | None, list[str]] = {}  # call id → faults that ran ("hang", "raise", "ok")
        self._lock = threading.Lock()

    def seen(self, call_id: str | None) -> list[str]:
        with self._lock:
            return list(self.runs.get(call_id, ()))

    def running_in(self, call_id: str | None) -> bool:
        with self._lock:
            return self._active.get(call_id, 0) > 0

    def counts(self) -> dict[str, int]:
        with self._lock:
            runs = [mode for modes in self.runs.values() for mode in modes]
        return {mode: runs.count(mode) for mode in ("hang", "raise", "slow", "ok")}

    def wrap(self, fn: ActionFn) -> ActionFn:
        def order_status(slots: Mapping[str, Any]) -> ActionResult:
            mode = self.modes.get(re.sub(r"\D", "", str(slots.get("order_id") or "")), "ok")
            call_id = CALL_ID.get()
            with self._lock:
                self.running += 1
                self._active[call_id] = self._active.get(call_id, 0) + 1
                self.runs.setdefault(call_id, []).append(mode)
            try:
                if mode == "hang":
                    self.release.wait(self.hang_s)
                elif mode == "raise":
                    raise ConnectionResetError("order database connection reset by peer")
                elif mode == "slow":
                    time.sleep(self.slow_s)
                return fn(slots)
            finally:
                with self._lock:
                    self.running -= 1
                    self._active[call_id] -= 1

        return order_status


class _FaultyRegistry:
    """What the shop's `register` sees: `Actions`, except that `order_status` goes through the gate."""

    def __init__(self, actions: Actions, gate: FaultGate) -> None:
        self.actions, self.gate = actions, gate

    def register(self, name: str, fn: ActionFn) -> None:
        self.actions.register(name, self.gate.wrap(fn) if name == "order_status" else fn)


_shop: ModuleType | None = None


def _shop_actions() -> ModuleType:
    global _shop
    if _shop is None:
        spec = importlib.util.spec_from_file_location("voicebot_fault_shop_actions", SHOP / "actions.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        _shop = module
    return _shop


def register(actions: Actions, options: Mapping[str, Any]) -> None:
    """The fault domain's `register(actions, options)`: the shop's actions, `order_status` gated."""
    gate = options["fault_gate"]
    assert isinstance(gate, FaultGate)
    register_shop: Callable[[Any, Mapping[str, Any]], None] = _shop_actions().register
    register_shop(_FaultyRegistry(actions, gate), options)


def make_domain(folder: Path, action_timeout_s: float = ACTION_TIMEOUT_S) -> Path:
    """A copy of the shop domain whose back end is gated and whose action timeout is short."""
    domain = folder / "faultshop"
    shutil.copytree(SHOP, domain, ignore=shutil.ignore_patterns("__pycache__"))
    settings = domain / "settings.yaml"
    text, count = re.subn(r"action_s: [\d.]+", f"action_s: {action_timeout_s}", settings.read_text())
    assert count == 1, "domains/shop/settings.yaml no longer sets timeouts.action_s"
    settings.write_text(text)
    (domain / "actions.py").write_text(_ACTIONS_PY)
    return domain


class FaultFactory(DialogueFactory):
    """The shop's dialogue engine on the gated back end, a fresh copy of its database per call."""

    def __init__(
        self,
        folder: Path,
        nlu: Parser,
        cache_dir: Path,
        gate: FaultGate,
        action_timeout_s: float = ACTION_TIMEOUT_S,
    ) -> None:
        self.gate = gate
        scratch = folder / "backend"
        scratch.mkdir(parents=True, exist_ok=True)
        super().__init__(make_domain(folder, action_timeout_s), nlu, cache_dir, scratch=scratch)

    def _actions(self, options: dict[str, Any]) -> Actions:
        return super()._actions(options | {"fault_gate": self.gate})


def shop_nlu(services: Services) -> NLU:
    """The shop's NLU model the conversation tests use (`voicebot.testing.shop`)."""
    model = shop_model(services.config.cache_dir)
    return NLU(model, threads=services.config.nlu.threads, int8=services.config.nlu.int8)


def phrases(services: Services) -> dict[str, PCM]:
    """The caller's lines from the real TTS at the telephone rate, 0.3 s of silence on both sides."""
    return spoken(services, PHRASES, PHONE_RATE)
