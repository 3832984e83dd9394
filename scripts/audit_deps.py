"""Audit the installed Python packages against PyPI's vulnerability data (`make audit`).

    .venv/bin/python scripts/audit_deps.py [--index-url URL] [--ignore-file FILE] [--workers N]

Why not plain `pip-audit`: where PyPI is reached through a mirror that serves only the project JSON
(`/pypi/<project>/json`) and not the per-version one, and OSV is unreachable, pip-audit reports every
package as "could not be audited" and still passes. This script never passes silently: for each installed
distribution it asks for the exact version's JSON (real PyPI: the vulnerabilities of that very version);
if that 404s and the installed version is the project's latest release, the project JSON's vulnerabilities
(which are the latest release's) apply; otherwise the package is listed as unaudited.

Exit status: 0 no known vulnerability (ids in the ignore file do not count), 1 vulnerabilities found,
2 PyPI unreachable or failing, so nothing (or not everything) could be checked.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import ssl
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

DEFAULT_INDEX = "https://pypi.org/pypi"
DEFAULT_IGNORE = Path(__file__).with_name("audit_ignore.txt")
TIMEOUT_S = 15.0
RETRIES = 2
# One context for all connections: loading the CA bundle per connection costs more CPU than the JSON.
SSL_CONTEXT = ssl.create_default_context()


class Unreachable(Exception):
    """PyPI did not answer (network error, timeout, 5xx): the audit cannot be trusted either way."""


@dataclass(frozen=True)
class Vuln:
    id: str
    aliases: tuple[str, ...]
    fixed_in: tuple[str, ...]
    link: str
    summary: str


@dataclass
class Result:
    name: str
    version: str
    route: str  # "exact", "latest" or "unaudited"
    latest: str | None = None
    reason: str = ""
    vulns: list[Vuln] = field(default_factory=list)


def canonical(name: str) -> str:
    """PEP 503 name, the form PyPI's JSON API answers without a redirect."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _is_local(dist: metadata.Distribution) -> bool:
    """Installed from a directory (editable or not): the PEP 610 `direct_url.json` says `dir_info`."""
    direct = dist.read_text("direct_url.json")
    try:
        return bool(direct) and "dir_info" in json.loads(direct or "{}")
    except ValueError:
        return False


def installed() -> Iterator[tuple[str, str]]:
    """(name, version) of every distribution importable here, once each, except local/editable installs:
    those (the project itself) are not PyPI releases, and PyPI may hold an unrelated project of that name.
    A name is skipped wherever it is found local, so a stray `voicebot.egg-info` in the current directory
    (first on sys.path when run from the repository) does not bring it back."""
    dists = [d for d in metadata.distributions() if d.metadata["Name"]]
    local = {canonical(d.metadata["Name"]) for d in dists if _is_local(d)}
    seen: set[str] = set()
    for dist in dists:
        name = dist.metadata["Name"]
        if canonical(name) in seen:
            continue
        seen.add(canonical(name))
        if canonical(name) in local:
            print(f"skipped (local install, not from PyPI): {name} {dist.version}")
            continue
        yield name, dist.version


class _Connections(threading.local):
    """Each worker thread's kept-alive connection per host: one DNS lookup and one TLS handshake per
    thread instead of per request (a flaky resolver turned per-request lookups into 5 s stalls)."""

    def __init__(self) -> None:
        self.by_host: dict[tuple[str, str], http.client.HTTPConnection] = {}

    def get(self, scheme: str, netloc: str) -> http.client.HTTPConnection:
        key = (scheme, netloc)
        if key not in self.by_host:
            proxy = (
                urllib.request.getproxies().get(scheme) if not urllib.request.proxy_bypass(netloc) else None
            )
            target = urllib.parse.urlsplit(proxy).netloc if proxy else netloc
            conn = (
                http.client.HTTPSConnection(target, timeout=TIMEOUT_S, context=SSL_CONTEXT)
                if scheme == "https"
                else http.client.HTTPConnection(target, timeout=TIMEOUT_S)
            )
            if proxy:
                conn.set_tunnel(netloc)
            self.by_host[key] = conn
        return self.by_host[key]

    def drop(self, scheme: str, netloc: str) -> None:
        if conn := self.by_host.pop((scheme, netloc), None):
            conn.close()


_CONNECTIONS = _Connections()


def _get(url: str) -> tuple[int, bytes, str | None]:
    """One GET on the thread's connection: (status, body, Location header)."""
    parts = urllib.parse.urlsplit(url)
    conn = _CONNECTIONS.get(parts.scheme, parts.netloc)
    try:
        conn.request("GET", parts.path or "/", headers={"Accept": "application/json"})
        response = conn.getresponse()
        body = response.read()
    except Exception:
        _CONNECTIONS.drop(parts.scheme, parts.netloc)  # a broken or half-read connection is not reused
        raise
    if response.will_close:
        _CONNECTIONS.drop(parts.scheme, parts.netloc)
    return response.status, body, response.getheader("Location")


def fetch(url: str, redirects: int = 3) -> dict[str, Any] | None:
    """The JSON at `url`, None on 404; `Unreachable` when PyPI fails even after retries."""
    error = ""
    for attempt in range(RETRIES + 1):
        if attempt:
            time.sleep(0.5 * attempt)
        try:
            status, body, location = _get(url)
        except (OSError, http.client.HTTPException) as exc:  # DNS, timeouts, resets, a truncated reply
            error = f"{type(exc).__name__}: {exc}"
            continue
        if status == 404:
            return None
        if status in (301, 302, 303, 307, 308) and location and redirects:
            return fetch(urllib.parse.urljoin(url, location), redirects - 1)
        if status == 200:
            try:
                data: dict[str, Any] = json.loads(body)
                return data
            except ValueError as exc:
                error = f"not JSON: {exc}"
                continue
        error = f"HTTP {status}"
        if status < 500 and status != 429:
            break
    raise Unreachable(f"{url}: {error}")


def vulns_of(data: dict[str, Any]) -> list[Vuln]:
    """The live (not withdrawn) entries of a PyPI JSON `vulnerabilities` list."""
    found = []
    for entry in data.get("vulnerabilities") or ():
        if entry.get("withdrawn"):
            continue
        found.append(
            Vuln(
                id=str(entry.get("id")),
                aliases=tuple(str(a) for a in entry.get("aliases") or ()),
                fixed_in=tuple(str(v) for v in entry.get("fixed_in") or ()),
                link=str(entry.get("link") or ""),
                summary=next(iter(str(entry.get("summary") or entry.get("details") or "").splitlines()), ""),
            )
        )
    return found


def public(version: str) -> str:
    """The version without its local label: torch "2.13.0+cpu" is PyPI's "2.13.0" (same vulnerabilities)."""
    try:
        return Version(version).public
    except InvalidVersion:
        return version


def same_version(a: str, b: str) -> bool:
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return a == b


def audit(index: str, name: str, version: str) -> Result:
    """One package: exact-version vulnerabilities if PyPI serves them, else the latest release's if that
    is what is installed, else unaudited."""
    project, release = canonical(name), public(version)
    exact = fetch(f"{index}/{project}/{release}/json")
    if exact is not None:
        return Result(name, version, "exact", exact.get("info", {}).get("version"), vulns=vulns_of(exact))
    data = fetch(f"{index}/{project}/json")
    if data is None:
        return Result(name, version, "unaudited", reason="not on PyPI")
    latest = str(data.get("info", {}).get("version") or "")
    if latest and same_version(release, latest):
        return Result(name, version, "latest", latest, vulns=vulns_of(data))
    known = any(same_version(release, v) for v in data.get("releases") or ())
    why = "older than the latest release" if known else "not a PyPI release"
    return Result(name, version, "unaudited", latest, reason=why)


def load_ignored(path: Path) -> set[str]:
    """Vulnerability ids (or aliases) accepted on purpose: first word of each non-comment line."""
    if not path.exists():
        return set()
    ids = set()
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            ids.add(line.split()[0].upper())
    return ids


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--index-url", default=os.environ.get("PYPI_JSON_URL", DEFAULT_INDEX))
    parser.add_argument("--ignore-file", type=Path, default=DEFAULT_IGNORE)
    parser.add_argument("--workers", type=int, default=16)
    args = parser.parse_args(argv)
    index = args.index_url.rstrip("/")
    ignored = load_ignored(args.ignore_file)
    started = time.monotonic()

    packages = sorted(installed(), key=lambda p: canonical(p[0]))
    try:
        fetch(f"{index}/pip/json")  # one cheap probe, so "PyPI is down" is told apart from "pip is gone"
    except Unreachable as exc:
        print(f"error: PyPI is unreachable, nothing was audited ({exc})", file=sys.stderr)
        return 2

    results: list[Result] = []
    failures: list[str] = []
    with ThreadPoolExecutor(max_workers=max(1, args.workers)) as pool:
        futures = [(name, pool.submit(audit, index, name, version)) for name, version in packages]
        for name, future in futures:
            try:
                results.append(future.result())
            except Unreachable as exc:
                failures.append(f"{name}: {exc}")

    found = accepted = 0
    for r in results:
        reported: set[str] = set()  # one advisory often comes twice (PYSEC and GHSA, aliases of each other)
        for v in r.vulns:
            names = {v.id.upper(), *(a.upper() for a in v.aliases)}
            if v.id.upper() in reported:
                continue
            reported |= names
            if names & ignored:
                accepted += 1
                continue
            found += 1
            fixed = ", ".join(v.fixed_in) or "no fix released"
            route = "" if r.route == "exact" else " (latest release's data)"
            print(f"VULNERABLE {r.name} {r.version}{route}: {v.id} fixed in {fixed} — {v.link}")
            if v.aliases:
                print(f"    aliases: {', '.join(v.aliases)}")
            if v.summary:
                print(f"    {v.summary[:200]}{'…' if len(v.summary) > 200 else ''}")

    exact = sum(r.route == "exact" for r in results)
    latest = sum(r.route == "latest" for r in results)
    unaudited = [r for r in results if r.route == "unaudited"]
    print(
        f"{len(results) - len(unaudited)} of {len(packages)} packages audited: {exact} by exact version, "
        f"{latest} via the latest-release route (installed = latest); {len(unaudited)} unaudited"
        f"; {accepted} accepted in {args.ignore_file.name}; {time.monotonic() - started:.1f} s"
    )
    for r in unaudited:
        print(f"  unaudited: {r.name} installed {r.version}, latest {r.latest or '-'} ({r.reason})")
    if failures:
        print(f"error: PyPI failed for {len(failures)} packages; the audit is incomplete:", file=sys.stderr)
        for line in failures:
            print(f"  {line}", file=sys.stderr)
        return 2
    if found:
        print(f"{found} known vulnerabilities (accept one on purpose in {args.ignore_file})")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
