"""What one caller may do to a public gateway: message rate, call length, a dead line, where from.

A phone line is public: anyone can open a socket and send anything. Size limits live in each parser; the
limits here are the ones every protocol shares, so `telephony.session.Call` enforces them once.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class LimitExceeded(Exception):
    """A caller broke a server limit; the call ends with this reason (WebSocket close code 1008)."""


class TokenBucket:
    """Allows `rate` events per second on average with bursts up to `burst`: a jittery network delivers
    20 ms frames in clumps, so a plain per-second counter would cut honest callers."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.stamp = burst, now

    def take(self, now: float) -> bool:
        """One event at `now` (monotonic seconds); False when over the limit."""
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


class MessageLimit:
    """The per-call inbound message limit: `rate`/s sustained, two seconds' worth as a burst."""

    def __init__(self, rate: int, now: float) -> None:
        self.rate = rate
        self.bucket = TokenBucket(rate, 2.0 * rate, now)

    def check(self, now: float) -> None:
        if not self.bucket.take(now):
            raise LimitExceeded(f"more than {self.rate} messages per second")


def networks(specs: Iterable[str]) -> list[Network]:
    """Parse `server.audiosocket_allow`; a bad entry is a configuration error that names it."""
    parsed: list[Network] = []
    for spec in specs:
        try:
            parsed.append(ipaddress.ip_network(spec, strict=False))
        except ValueError as exc:
            raise ValueError(f"server.audiosocket_allow: {spec!r} is not a network ({exc})") from None
    return parsed


def address_allowed(host: str, allowed: Iterable[Network]) -> bool:
    """Whether `host` (a peer address; IPv4-mapped IPv6 counts as IPv4) is inside one of `allowed`."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address.version == net.version and address in net for net in allowed)
