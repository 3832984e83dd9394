"""Signed webhook delivery: a JSON body POSTed to a configured URL, off the calls' path, with retries.

The signature is an HMAC-SHA256 (RFC 2104 with SHA-256, FIPS 180-4) of the exact body bytes under a shared
secret, sent as `X-Voicebot-Signature: sha256=<lowercase hex>`, the scheme GitHub's and many contact-centre
platforms' webhooks use: the receiver recomputes it over the raw body and compares in constant time
(`verify`). `X-Voicebot-Delivery` names the delivery (the same on every retry, so a receiver can drop
duplicates) and `X-Voicebot-Event` what it is about.

A delivery never holds up a call: it runs as its own task, each attempt in a worker thread (stdlib
`urllib`, bounded by `timeout_s`); a refused connection, a timeout, a 5xx or a 429 is retried after
`backoff_s`, doubled each time, up to `attempts` tries; any other answer is final. Failures are logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass

log = logging.getLogger(__name__)
SIGNATURE_HEADER = "X-Voicebot-Signature"
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str | None) -> bool:
    """What a receiver does: the header matches the body under `secret` (constant-time comparison)."""
    return bool(header) and hmac.compare_digest(sign(secret, body), str(header))


@dataclass(frozen=True)
class Webhook:
    url: str
    secret: str | None = None
    timeout_s: float = 3.0
    attempts: int = 3
    backoff_s: float = 1.0

    def headers(self, body: bytes, event: str, delivery: str) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "User-Agent": "voicebot-webhook"}
        headers |= {"X-Voicebot-Event": event, "X-Voicebot-Delivery": delivery}
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(self.secret, body)
        return headers

    def _post(self, body: bytes, headers: dict[str, str]) -> int:
        request = urllib.request.Request(self.url, body, headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:  # an answer, if not a happy one
            return int(exc.code)

    async def deliver(self, body: bytes, event: str, delivery: str) -> bool:
        """POST `body` until it is taken (2xx) or the tries run out; True when it was taken."""
        headers = self.headers(body, event, delivery)
        wait = self.backoff_s
        for attempt in range(1, self.attempts + 1):
            try:
                status = await asyncio.to_thread(self._post, body, headers)
            except OSError as exc:  # refused, unreachable, timed out
                outcome, retry = f"failed ({exc})", True
            else:
                if 200 <= status < 300:
                    log.info("webhook %s: %s delivered (attempt %d)", event, delivery, attempt)
                    return True
                outcome, retry = f"answered {status}", status in RETRY_STATUS
            log.warning("webhook %s: %s attempt %d %s", event, delivery, attempt, outcome)
            if not retry or attempt == self.attempts:
                break
            await asyncio.sleep(wait)
            wait *= 2
        log.error("webhook %s: %s not delivered to %s", event, delivery, self.url)
        return False
