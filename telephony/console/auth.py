"""Who may open the operator console, and proof that a state change comes from the console's own page.

Three ways in, checked in this order:
- a session cookie (`vb_console`, HttpOnly, SameSite=Strict, path /console), made by one of the next two;
- `server.token` as `?token=T` on `/console` (then the cookie; the token leaves the address bar at once),
  or as `Authorization: Bearer T` on the API for scripts; the token is a supervisor;
- a named user of `console.users` through the login form (password checked against a PBKDF2 hash, in a
  thread: the event loop paces every call's audio and must not spend 100 ms on a hash).
With neither a token nor users configured the console is open to loopback clients only (a proxy on the same
box forwards the real client address, which then counts), and only under a loopback Host name, so a web page
whose DNS name is re-pointed at 127.0.0.1 cannot read it (DNS rebinding).

State changes (POST) need the session's CSRF token in `X-CSRF-Token` (the page reads it from
`/console/api/me`, which another origin cannot read), and an `Origin`, when the browser sends one, equal to
the console's own. Bearer requests need neither: a browser never attaches that header on its own.
Sessions live in memory: a restarted gateway asks everyone to log in again.
"""

from __future__ import annotations

import asyncio
import getpass
import hashlib
import hmac
import ipaddress
import secrets
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from starlette.requests import HTTPConnection

from voicebot.config import ConsoleConfig, ConsoleUser, ServerConfig

COOKIE = "vb_console"
CSRF_HEADER = "x-csrf-token"
ITERATIONS = 260_000
Role = Literal["viewer", "supervisor"]
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
MAX_SESSIONS = 1000  # the oldest go first beyond this (each loopback page load makes one)


def hash_password(password: str, iterations: int = ITERATIONS, salt: str | None = None) -> str:
    """`pbkdf2_sha256$ITERATIONS$SALT$HASH`, the form `console.users[].password_hash` takes."""
    salt = salt or secrets.token_hex(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), iterations).hex()
    return f"pbkdf2_sha256${iterations}${salt}${digest}"


def password_ok(password: str, stored: str) -> bool:
    """Whether `password` matches a `hash_password` value; a malformed stored value matches nothing."""
    try:
        scheme, iterations, salt, _ = stored.split("$")
        rounds = int(iterations)
    except ValueError:
        return False
    if scheme != "pbkdf2_sha256" or rounds < 1:
        return False
    return hmac.compare_digest(hash_password(password, rounds, salt), stored)


_UNKNOWN_USER = f"pbkdf2_sha256${ITERATIONS}${'0' * 32}${'0' * 64}"  # matches no password


@dataclass(frozen=True)
class Session:
    user: str
    role: Role
    csrf: str
    expires: float  # time.monotonic()


def _loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def refused(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def same_origin(conn: HTTPConnection) -> bool:
    """No `Origin` (not a browser, or a browser's same-origin GET), or the console's own: a page of another
    site may send requests here (forms, WebSockets) but its browser names it in `Origin`."""
    origin = conn.headers.get("origin")
    scheme = "https" if conn.url.scheme in ("https", "wss") else "http"
    return origin is None or origin == f"{scheme}://{conn.headers.get('host', '')}"


class Auth:
    """The console's sessions and the checks every console route makes."""

    def __init__(self, server: ServerConfig, console: ConsoleConfig) -> None:
        self.token = server.token
        self.users: dict[str, ConsoleUser] = {u.name: u for u in console.users}
        self.lifetime_s = console.session_hours * 3600.0
        self._sessions: dict[str, Session] = {}
        self._hashing = asyncio.Semaphore(1)  # password checks one at a time: a login flood takes one core

    @property
    def open_on_loopback(self) -> bool:
        """No credentials configured: loopback clients get in without logging in."""
        return not self.token and not self.users

    def new_session(self, user: str, role: Role) -> str:
        """A new session's id (the cookie's value)."""
        now = time.monotonic()
        live = [(k, s) for k, s in self._sessions.items() if s.expires > now]  # forget expired ones
        self._sessions = dict(live[-(MAX_SESSIONS - 1) :])  # in order of creation: the oldest drop out
        sid = secrets.token_urlsafe(32)
        self._sessions[sid] = Session(user, role, secrets.token_urlsafe(32), now + self.lifetime_s)
        return sid

    def end_session(self, request: HTTPConnection) -> None:
        self._sessions.pop(request.cookies.get(COOKIE, ""), None)

    def local_ok(self, request: HTTPConnection) -> bool:
        """The open-on-loopback case: a loopback client that asked for a loopback host name."""
        host = request.headers.get("host", "")
        name = host.split("]")[0] + "]" if host.startswith("[") else host.rsplit(":", 1)[0]
        client = request.client.host if request.client else None
        return self.open_on_loopback and _loopback(client) and name in LOOPBACK_NAMES

    def token_ok(self, given: str | None) -> bool:
        return bool(self.token) and hmac.compare_digest((given or "").encode(), (self.token or "").encode())

    def bearer_ok(self, request: HTTPConnection) -> bool:
        """The gateway token as `Authorization: Bearer T` or `?token=T` (as `/metrics` takes it): proof in
        itself, never sent by a browser on its own, so no CSRF check either."""
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        given = value.strip() if scheme.lower() == "bearer" else request.query_params.get("token")
        return self.token_ok(given)

    def session(self, request: HTTPConnection) -> Session | None:
        found = self._sessions.get(request.cookies.get(COOKIE, ""))
        if found is None or found.expires <= time.monotonic():
            return None
        return found

    def who(self, request: HTTPConnection) -> Session | None:
        """The caller of an API route: their session, a bearer token (a supervisor), or a loopback client
        when nothing is configured; None = refuse."""
        found = self.session(request)
        if found is not None:
            return found
        if self.bearer_ok(request):
            return Session("token", "supervisor", "", float("inf"))
        if self.local_ok(request):
            return Session("local", "supervisor", "", float("inf"))
        return None

    def csrf_ok(self, request: HTTPConnection, session: Session) -> bool:
        """A state change from the console's own page (see the module docstring)."""
        if self.bearer_ok(request):
            return True
        if not same_origin(request):
            return False
        given = request.headers.get(CSRF_HEADER, "")
        return bool(session.csrf) and hmac.compare_digest(given.encode(), session.csrf.encode())

    async def guarded(self, request: Request, answer: Callable[[Session], Awaitable[Response]]) -> Response:
        """`answer` for whoever may read (401 for the rest); its ValueError is the request's fault (400)."""
        session = self.who(request)
        if session is None:
            return refused(401, "log in first: /console/login, or /console?token=…")
        try:
            return await answer(session)
        except ValueError as exc:
            return refused(400, str(exc))

    async def change(self, request: Request, answer: Callable[[Session], Awaitable[Response]]) -> Response:
        """`answer` for a supervisor's state change from the console's own page (403 for the rest)."""

        async def checked(s: Session) -> Response:
            if not self.csrf_ok(request, s):
                return refused(403, "missing or wrong CSRF token")
            if s.role != "supervisor":
                return refused(403, "only a supervisor may do this")
            return await answer(s)

        return await self.guarded(request, checked)

    async def login(self, name: str, password: str) -> str | None:
        """A named user's password check (PBKDF2 in a thread); the new session's id, or None. An unknown
        name costs the same hash, so the answer's timing does not tell which names exist."""
        user = self.users.get(name)
        stored = user.password_hash if user is not None else _UNKNOWN_USER
        async with self._hashing:
            ok = await asyncio.to_thread(password_ok, password, stored)
        return self.new_session(user.name, user.role) if user is not None and ok else None


def main() -> int:
    """`python -m telephony.console.auth`: read a password (twice) and print its `password_hash`."""
    first = getpass.getpass("password: ")
    if len(first) < 8:
        print("error: use at least 8 characters", file=sys.stderr)
        return 1
    if getpass.getpass("again: ") != first:
        print("error: the two passwords differ", file=sys.stderr)
        return 1
    print(hash_password(first))
    return 0


if __name__ == "__main__":
    sys.exit(main())
