"""The actions registry against real callables, real threads and a real HTTP server: no mocks."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from voicebot.dialogue.actions import ActionFailed, ActionResult, Actions, load_actions
from voicebot.domain.yamlfile import DomainError


def echo(slots: Mapping[str, Any]) -> ActionResult:
    return ActionResult(True, {"order_id": slots["order_id"], "status": "shipped"})


async def test_python_action_ok() -> None:
    actions = Actions()
    actions.register("order_status", echo)
    assert actions.names() == {"order_status"}
    result = await actions.call("order_status", {"order_id": "457219"})
    assert result == ActionResult(True, {"order_id": "457219", "status": "shipped"})


async def test_business_failure_is_a_result_not_an_exception() -> None:
    actions = Actions()
    actions.register(
        "cancel_order", lambda slots: ActionResult(False, {"status": "shipped"}, "already_shipped")
    )
    result = await actions.call("cancel_order", {"order_id": "830112"})
    assert not result.ok
    assert result.error == "already_shipped"


def test_duplicate_name_is_rejected() -> None:
    actions = Actions()
    actions.register("order_status", echo)
    with pytest.raises(ValueError, match="already registered"):
        actions.register("order_status", echo)
    with pytest.raises(ValueError, match="already registered"):
        actions.register_webhook("order_status", "http://127.0.0.1:1/")


async def test_raising_action_fails() -> None:
    def broken(slots: Mapping[str, Any]) -> ActionResult:
        raise KeyError("order_id")

    actions = Actions()
    actions.register("broken", broken)
    with pytest.raises(ActionFailed) as info:
        await actions.call("broken", {})
    assert (info.value.action, info.value.reason) == ("broken", "raised KeyError: 'order_id'")
    assert str(info.value) == "broken: raised KeyError: 'order_id'"


async def test_action_raising_timeout_error_is_not_reported_as_our_timeout() -> None:
    def slow_backend(slots: Mapping[str, Any]) -> ActionResult:
        raise TimeoutError("database busy")

    actions = Actions()
    actions.register("slow", slow_backend)
    with pytest.raises(ActionFailed, match="raised TimeoutError: database busy"):
        await actions.call("slow", {})


async def test_hanging_action_times_out_and_its_thread_goes_on() -> None:
    release, finished = threading.Event(), threading.Event()

    def hang(slots: Mapping[str, Any]) -> ActionResult:
        release.wait(10)
        finished.set()
        return ActionResult(True)

    actions = Actions(timeout_s=0.05)
    actions.register("hang", hang)
    try:
        with pytest.raises(ActionFailed, match=r"^hang: timed out after 0.05s$"):
            await actions.call("hang", {})
        assert not finished.is_set()
    finally:
        release.set()
    assert finished.wait(5)  # the abandoned call still ran to its end


async def test_wrong_return_type_fails() -> None:
    actions = Actions()
    actions.register("sloppy", lambda slots: {"ok": True})  # type: ignore[arg-type, return-value]
    with pytest.raises(ActionFailed, match="returned dict, not ActionResult"):
        await actions.call("sloppy", {})


async def test_unknown_action_fails() -> None:
    with pytest.raises(ActionFailed, match=r"^nope: unknown action$"):
        await Actions().call("nope", {})


class _Hook(BaseHTTPRequestHandler):
    """Answers by path, so one server covers every webhook case; records what it was sent."""

    received: ClassVar[list[dict[str, Any]]] = []
    release: ClassVar[threading.Event] = threading.Event()

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).received.append({"body": body, "token": self.headers.get("X-Token")})
        if self.path == "/slow":
            self.release.wait(10)
        status, payload = {
            "/ok": (200, b'{"ok": true, "data": {"status": "shipped"}, "error": null}'),
            "/refused": (200, b'{"ok": false, "data": {}, "error": "already_shipped"}'),
            "/error": (500, b"internal error"),
            "/notjson": (200, b"<html>hello</html>"),
            "/list": (200, b"[1, 2]"),
            "/shape": (200, b'{"ok": "yes"}'),
        }.get(self.path, (200, b"{}"))
        self.send_response(status)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    _Hook.received = []
    _Hook.release = threading.Event()
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    _Hook.release.set()
    httpd.shutdown()
    httpd.server_close()


async def test_webhook_ok(server: str) -> None:
    actions = Actions()
    actions.register_webhook("order_status", f"{server}/ok", headers={"X-Token": "secret"})
    result = await actions.call("order_status", {"order_id": "830112"}, call_id="call-1")
    assert result == ActionResult(True, {"status": "shipped"}, None)
    sent = {"action": "order_status", "call_id": "call-1", "slots": {"order_id": "830112"}}
    assert _Hook.received == [{"body": sent, "token": "secret"}]


async def test_webhook_business_failure(server: str) -> None:
    actions = Actions()
    actions.register_webhook("cancel_order", f"{server}/refused")
    assert await actions.call("cancel_order", {}) == ActionResult(False, {}, "already_shipped")


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/error", "answered HTTP 500"),
        ("/notjson", "did not answer JSON"),
        ("/list", "answered a JSON list"),
        ("/shape", 'answered {"ok": "yes"}'),
    ],
)
async def test_webhook_bad_answers_fail(server: str, path: str, reason: str) -> None:
    actions = Actions()
    actions.register_webhook("hook", server + path)
    with pytest.raises(ActionFailed, match=reason):
        await actions.call("hook", {})


async def test_webhook_connection_refused() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed on leaving: nothing listens there any more
    actions = Actions()
    actions.register_webhook("hook", f"http://127.0.0.1:{port}/")
    with pytest.raises(ActionFailed, match="unreachable"):
        await actions.call("hook", {})


async def test_webhook_timeout(server: str) -> None:
    actions = Actions(timeout_s=5)
    actions.register_webhook("hook", f"{server}/slow", timeout_s=0.1)
    with pytest.raises(ActionFailed, match=r"timed out after 0.1s"):
        await actions.call("hook", {})


def test_webhook_must_be_http() -> None:
    with pytest.raises(ValueError, match="http"):
        Actions().register_webhook("hook", "file:///etc/passwd")


DOMAIN_ACTIONS = """
from voicebot.dialogue.actions import ActionResult

def register(actions, options):
    actions.register("greet", lambda slots: ActionResult(True, {"greeting": options["greeting"]}))
"""


async def test_load_actions_from_a_domain_folder(tmp_path: Path, server: str) -> None:
    (tmp_path / "actions.py").write_text(DOMAIN_ACTIONS)
    hooks = {"order_status": {"url": f"{server}/ok", "timeout_s": 2, "headers": {"X-Token": "t"}}}
    actions = load_actions(tmp_path, {"greeting": "hello"}, hooks)
    assert actions.names() == {"greet", "order_status"}
    assert await actions.call("greet", {}) == ActionResult(True, {"greeting": "hello"})
    assert (await actions.call("order_status", {})).data == {"status": "shipped"}
    assert _Hook.received[0]["token"] == "t"


def test_load_actions_without_actions_py(tmp_path: Path) -> None:
    assert load_actions(tmp_path, {}).names() == set()


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("def setup(actions, options):\n    pass\n", "has no register"),
        ("import no_such_module_here\n", "import failed: ModuleNotFoundError"),
        ("def register(actions, options:\n", "import failed: SyntaxError"),
        ("def register(actions, options):\n    options['missing']\n", "register\\(\\) failed: KeyError"),
    ],
)
def test_broken_domain_actions_name_the_file(tmp_path: Path, source: str, problem: str) -> None:
    (tmp_path / "actions.py").write_text(source)
    with pytest.raises(DomainError, match=problem) as info:
        load_actions(tmp_path, {})
    assert str(tmp_path / "actions.py") in str(info.value)


def test_bad_webhook_config_is_a_domain_error(tmp_path: Path) -> None:
    with pytest.raises(DomainError, match="url must be a string"):
        load_actions(tmp_path, {}, {"hook": {"timeout_s": 1}})
    with pytest.raises(DomainError, match="http"):
        load_actions(tmp_path, {}, {"hook": {"url": "ftp://example.com/"}})
