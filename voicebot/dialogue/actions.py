"""Business actions: the one door through which the dialogue reaches a company's back end.

A domain brings its back end either as Python (`actions.py` in the domain folder, with a
`register(actions, options)` function) or as HTTP webhooks. Both are called the same way and fail the same
way, so the dialogue never needs to know which it is talking to:

* a *business* failure ("that order has already shipped") is an `ActionResult` with `ok=False` and an
  `error` code the response templates can speak about;
* a *back-end* failure (it raised, hung, was unreachable, answered nonsense, or the action does not exist)
  is `ActionFailed`: there is nothing sensible to tell the caller, so the dialogue apologises and transfers.

Every call runs in a thread of its own under a timeout, because a blocking database or HTTP call must never
stall the audio loop. Python cannot kill a thread: after a timeout the call is abandoned, not stopped, and
goes on in its thread until it returns by itself (webhooks get the same timeout on their socket, so theirs
do end). Actions must therefore be safe to finish late, e.g. by doing their writes in one transaction.
Those threads are not the event loop's default executor: a back end that hangs would otherwise fill it, and
every call's NLU parses and the call recordings, which run there too, would wait behind it for ever. They are
daemon threads (a hung one cannot hold up the process's exit) and at most `MAX_RUNNING` run at once in the
process; with that many still stuck, further calls fail at once as `ActionFailed` (the back end is down).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import importlib.util
import json
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from voicebot.domain.yamlfile import DomainError

MAX_RUNNING = 32  # back-end calls running at once in the process, abandoned (timed-out) ones included
_running = threading.BoundedSemaphore(MAX_RUNNING)


@dataclass(frozen=True)
class ActionResult:
    """What an action answers; `data` holds the values the response templates may use."""

    ok: bool
    data: dict[str, Any] = field(default_factory=dict)
    error: str | None = None  # business failure code when ok is False, e.g. "unknown_order"


class ActionFailed(Exception):
    """The back end itself failed (raised, timed out, webhook unreachable / HTTP error / bad JSON, unknown
    action): the dialogue apologises and transfers."""

    def __init__(self, action: str, reason: str) -> None:
        super().__init__(f"{action}: {reason}")
        self.action = action
        self.reason = reason


ActionFn = Callable[[Mapping[str, Any]], ActionResult]
"""A synchronous Python action; it receives the filled slot values by slot name."""

# Internally every action, Python or webhook, is a blocking (slots, call_id) -> ActionResult.
_Runner = Callable[[Mapping[str, Any], str], ActionResult]


@dataclass(frozen=True)
class _Entry:
    run: _Runner
    timeout_s: float


class Actions:
    """The registry of a domain's actions, each called with a timeout and uniform failure handling."""

    def __init__(self, timeout_s: float = 5.0) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self._timeout_s = timeout_s
        self._entries: dict[str, _Entry] = {}

    def register(self, name: str, fn: ActionFn) -> None:
        """Register a Python action; a duplicate name is a mistake in the domain, not an override."""
        self._add(name, _Entry(partial(_call_python, fn), self._timeout_s))

    def register_webhook(
        self,
        name: str,
        url: str,
        timeout_s: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Register an action served by an HTTP endpoint of the company's own systems."""
        if not url.startswith(("http://", "https://")):
            # urllib would also open file:// and ftp:// URLs; a webhook is HTTP only.
            raise ValueError(f"action {name!r}: webhook url must be http:// or https://, got {url!r}")
        timeout = self._timeout_s if timeout_s is None else timeout_s
        if timeout <= 0:
            raise ValueError(f"action {name!r}: timeout_s must be positive, got {timeout}")
        runner = partial(_call_webhook, name, url, timeout, dict(headers or {}))
        self._add(name, _Entry(runner, timeout))

    def names(self) -> set[str]:
        return set(self._entries)

    async def call(self, name: str, slots: Mapping[str, Any], call_id: str = "") -> ActionResult:
        """Run an action off the event loop; every back-end failure comes out as `ActionFailed`.

        On timeout the action's thread is abandoned, not stopped (threads cannot be killed): it goes on
        until it returns by itself, and its result is dropped.
        """
        entry = self._entries.get(name)
        if entry is None:
            raise ActionFailed(name, "unknown action")
        work = _in_thread(name, partial(_guarded, name, entry.run, dict(slots), call_id))
        try:
            return await asyncio.wait_for(work, entry.timeout_s)
        except TimeoutError:
            # Only our own timeout lands here: _guarded turns the action's exceptions into ActionFailed.
            raise ActionFailed(name, f"timed out after {entry.timeout_s:g}s") from None

    def _add(self, name: str, entry: _Entry) -> None:
        if not name:
            raise ValueError("action name must not be empty")
        if name in self._entries:
            raise ValueError(f"action {name!r} is already registered")
        self._entries[name] = entry


def _in_thread(name: str, work: Callable[[], ActionResult]) -> asyncio.Future[ActionResult]:
    """Start `work` in a daemon thread of its own (the caller's context goes along, so its log lines keep
    the call's id); the future gets its result. `ActionFailed` at once when `MAX_RUNNING` are running."""
    if not _running.acquire(blocking=False):
        raise ActionFailed(name, f"back end busy: {MAX_RUNNING} earlier calls are still running")
    loop = asyncio.get_running_loop()
    future: asyncio.Future[ActionResult] = loop.create_future()
    context = contextvars.copy_context()

    def deliver(outcome: ActionResult | BaseException) -> None:
        if future.done():  # timed out meanwhile: the result is dropped
            return
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)

    def run() -> None:
        outcome: ActionResult | BaseException
        try:
            outcome = context.run(work)
        except BaseException as exc:
            outcome = exc
        finally:
            _running.release()
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(deliver, outcome)

    try:
        threading.Thread(target=run, name=f"action-{name}", daemon=True).start()
    except BaseException:
        _running.release()
        raise
    return future


def _guarded(name: str, run: _Runner, slots: Mapping[str, Any], call_id: str) -> ActionResult:
    """Run in the worker thread, so an action raising TimeoutError is not mistaken for our timeout."""
    try:
        result = run(slots, call_id)
    except ActionFailed:
        raise
    except Exception as exc:
        raise ActionFailed(name, f"raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(result, ActionResult):
        raise ActionFailed(name, f"returned {type(result).__name__}, not ActionResult")
    return result


def _call_python(fn: ActionFn, slots: Mapping[str, Any], call_id: str) -> ActionResult:
    return fn(slots)


def _call_webhook(
    name: str, url: str, timeout_s: float, headers: dict[str, str], slots: Mapping[str, Any], call_id: str
) -> ActionResult:
    """POST {"action", "call_id", "slots"}; expect {"ok": bool, "data": {...}, "error": str | null}."""
    body = json.dumps({"action": name, "call_id": call_id, "slots": dict(slots)}, default=str).encode()
    request = urllib.request.Request(
        url, data=body, method="POST", headers={**headers, "Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        raise ActionFailed(name, f"webhook {url} answered HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise ActionFailed(name, f"webhook {url} timed out after {timeout_s:g}s") from exc
        raise ActionFailed(name, f"webhook {url} unreachable: {exc.reason}") from exc
    except TimeoutError as exc:
        raise ActionFailed(name, f"webhook {url} timed out after {timeout_s:g}s") from exc
    except OSError as exc:
        raise ActionFailed(name, f"webhook {url} failed: {exc}") from exc
    try:
        answer = json.loads(raw)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError both
        raise ActionFailed(name, f"webhook {url} did not answer JSON: {raw[:80]!r}") from exc
    return _result_from_json(name, url, answer)


def _result_from_json(name: str, url: str, answer: Any) -> ActionResult:
    expected = 'expected {"ok": bool, "data": object, "error": string or null}'
    if not isinstance(answer, dict):
        raise ActionFailed(name, f"webhook {url} answered a JSON {type(answer).__name__}; {expected}")
    ok, data, error = answer.get("ok"), answer.get("data", {}), answer.get("error")
    if (
        not isinstance(ok, bool)
        or not isinstance(data, dict)
        or not (error is None or isinstance(error, str))
    ):
        raise ActionFailed(name, f"webhook {url} answered {json.dumps(answer)[:120]}; {expected}")
    return ActionResult(ok=ok, data=data, error=error)


def load_actions(
    domain: Path,
    options: Mapping[str, Any],
    webhooks: Mapping[str, Mapping[str, Any]] | None = None,
    timeout_s: float = 5.0,
) -> Actions:
    """Build a domain's actions: its `actions.py` (if any) registers Python actions, then the webhooks.

    `webhooks` maps an action name to `{url: ..., timeout_s: ... (optional), headers: {...} (optional)}`.
    """
    actions = Actions(timeout_s)
    script = domain / "actions.py"
    if script.is_file():
        _register_script(script, actions, options)
    for name, spec in (webhooks or {}).items():
        url, timeout, headers = spec.get("url"), spec.get("timeout_s"), spec.get("headers")
        if not isinstance(url, str):
            raise DomainError(f"webhook {name!r}: url must be a string, got {url!r}")
        if timeout is not None and not isinstance(timeout, int | float):
            raise DomainError(f"webhook {name!r}: timeout_s must be a number, got {timeout!r}")
        if headers is not None and not isinstance(headers, Mapping):
            raise DomainError(f"webhook {name!r}: headers must be a mapping, got {headers!r}")
        try:
            actions.register_webhook(name, url, timeout, headers)
        except ValueError as exc:
            raise DomainError(f"webhook {name!r}: {exc}") from exc
    return actions


def _register_script(script: Path, actions: Actions, options: Mapping[str, Any]) -> None:
    """Import a domain's actions.py by path; a unique module name keeps two domains' files apart."""
    path = script.resolve()
    module_name = f"voicebot_domain_actions_{hashlib.sha1(str(path).encode()).hexdigest()[:12]}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise DomainError(f"{script}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look the module up here
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[module_name]
        raise DomainError(f"{script}: import failed: {type(exc).__name__}: {exc}") from exc
    register = getattr(module, "register", None)
    if not callable(register):
        raise DomainError(f"{script}: has no register(actions, options) function")
    try:
        register(actions, options)
    except Exception as exc:
        raise DomainError(f"{script}: register() failed: {type(exc).__name__}: {exc}") from exc
