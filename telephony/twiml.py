"""Twilio's HTTP side: the TwiML a number needs, request signatures, the hand-off `<Dial>` and the
transfer hook.

`/twilio/voice` answers Twilio's voice webhook (GET or POST) with
`<Response><Connect action="…/twilio/handoff"><Stream url="wss://HOST/twilio/stream">…</Stream></Connect>
</Response>`, a bidirectional Media Stream (Twilio docs: "TwiML Voice: <Stream>"). Twilio drops query
strings from stream URLs, so the gateway token travels as a `<Parameter name="token">` and comes back in the
`start` message's `customParameters`. Requests are authenticated per Twilio's "Webhooks security" page:
`X-Twilio-Signature = base64(HMAC-SHA1(auth token, full URL + each POST parameter's name and value,
sorted by name))`, or, with no Twilio auth token configured, by the gateway token in the webhook URL.

The warm hand-off: when `<Connect>` ends (the bot closed the stream), Twilio requests its `action` URL
with the call's standard parameters (Twilio docs: "TwiML Voice: <Connect>", the `action` attribute).
`/twilio/handoff` answers with `<Hangup/>`, or, when the call ended in a transfer, a `<Dial>` to the
target (`handoff.twilio_dial`) carrying the hand-off summary (`voicebot.handoff`) the ways `<Dial>` can:
a `sip:` target gets it as `X-` headers appended to the SIP URI ("TwiML Voice: <Sip>": custom headers
must start with `X-`), a `client:` target as `<Parameter>` nouns ("TwiML Voice: <Client>"), a phone
number (`<Number>`) carries none (the agent's desktop reads `GET /calls/{CallSid}/handoff`).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import urllib.request
from collections.abc import Callable, Iterable
from urllib.parse import parse_qsl, quote
from xml.sax.saxutils import escape, quoteattr

from fastapi import Request
from fastapi.responses import Response

from voicebot.config import ServerConfig, VoicebotConfig
from voicebot.handoff import HandoffSummary

log = logging.getLogger(__name__)
STREAM_PATH = "/twilio/stream"
HANDOFF_PATH = "/twilio/handoff"
SIP_HEADERS = ("handoffReason", "intent", "sentimentTrend", "callId", "consoleUrl")  # short: one INVITE
SIP_VALUE_LIMIT = 120
HOOK_TIMEOUT_S = 5.0


def signature(auth_token: str, url: str, params: Iterable[tuple[str, str]] = ()) -> str:
    """Twilio's request signature for `url` and the POST `params`."""
    data = url + "".join(name + value for name, value in sorted(params))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def _public_base(config: ServerConfig) -> str | None:
    return config.public_url.rstrip("/") if config.public_url else None


def request_urls(config: ServerConfig, request: Request) -> list[str]:
    """The URL(s) Twilio may have signed: the public one if configured; else as seen, plus its https form
    (a TLS-terminating proxy or tunnel hands us http://)."""
    query = f"?{request.url.query}" if request.url.query else ""
    base = _public_base(config)
    if base is not None:
        return [f"{base}{request.url.path}{query}"]
    seen = str(request.url)
    return [seen, "https://" + seen.split("://", 1)[1]] if seen.startswith("http://") else [seen]


class BodyTooLarge(Exception):
    """A webhook body over `server.max_message_bytes`: Twilio's are a few hundred bytes."""


async def read_body(request: Request, limit: int) -> bytes:
    """The body, read no further than `limit` bytes (a chunked body has no Content-Length to trust)."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge(f"request body over {limit} bytes")
    return bytes(body)


def token_ok(expected: str | None, request: Request) -> bool:
    """`?token=…` or `Authorization: Bearer …` matches the gateway token (always True when none is set)."""
    if not expected:
        return True
    given = request.query_params.get("token") or ""
    scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        given = given or bearer.strip()
    return hmac.compare_digest(given.encode(), expected.encode())


async def form(config: ServerConfig, request: Request) -> list[tuple[str, str]]:
    """A POST's form parameters (read once: the body cannot be read twice), none for a GET."""
    if request.method != "POST":
        return []
    body = await read_body(request, config.max_message_bytes)
    return parse_qsl(body.decode(errors="replace"), keep_blank_values=True)


async def signed(config: ServerConfig, request: Request, params: list[tuple[str, str]] | None = None) -> bool:
    """Whether the request carries a valid X-Twilio-Signature (always True when no auth token is set);
    `params`: the POST form, when the caller has read it already."""
    if not config.twilio_auth_token:
        return True
    given = request.headers.get("x-twilio-signature", "")
    params = await form(config, request) if params is None else params
    return any(
        hmac.compare_digest(signature(config.twilio_auth_token, url, params), given)
        for url in request_urls(config, request)
    )


def stream_url(config: ServerConfig, request: Request) -> str:
    """wss:// URL of `/twilio/stream` (Twilio only connects to wss; ws:// only for an http public_url)."""
    base = _public_base(config)
    if base is None:
        return f"wss://{request.headers.get('host', f'{config.host}:{config.port}')}{STREAM_PATH}"
    scheme, rest = base.split("://", 1) if "://" in base else ("https", base)
    return f"{'ws' if scheme == 'http' else 'wss'}://{rest}{STREAM_PATH}"


def handoff_url(config: ServerConfig) -> str:
    """`<Connect action>`: on public_url, else relative (Twilio resolves it against the voice webhook's
    URL), with the gateway token when there is no Twilio auth token to sign Twilio's request with."""
    base = _public_base(config) or ""
    token = f"?token={quote(config.token)}" if config.token and not config.twilio_auth_token else ""
    return f"{base}{HANDOFF_PATH}{token}"


def voice_twiml(url: str, token: str | None, action: str | None = None) -> str:
    parameter = f'<Parameter name="token" value={quoteattr(token)}/>' if token else ""
    connect = f"<Connect action={quoteattr(action)}>" if action else "<Connect>"
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f"<Response>{connect}<Stream url={quoteattr(url)}>{parameter}</Stream></Connect></Response>"
    )


def dial_twiml(summary: HandoffSummary, dial: str) -> str | None:
    """`<Dial>` to `dial` with the summary on it where the noun can carry it; None: not dialable."""
    wire = summary.wire()
    if dial.startswith("sip:"):
        headers = [(f"X-{k[0].upper()}{k[1:]}", wire[k][:SIP_VALUE_LIMIT]) for k in SIP_HEADERS if k in wire]
        query = "&".join(f"{name}={quote(value, safe='')}" for name, value in headers)
        noun = f"<Sip>{escape(dial + ('&' if '?' in dial else '?') + query if query else dial)}</Sip>"
    elif dial.startswith("client:"):
        params = "".join(f"<Parameter name={quoteattr(k)} value={quoteattr(v)}/>" for k, v in wire.items())
        noun = f"<Client><Identity>{escape(dial[len('client:') :])}</Identity>{params}</Client>"
    elif dial.startswith("+") and dial[1:].isdigit():
        noun = f"<Number>{dial}</Number>"
    else:
        return None
    return f'<?xml version="1.0" encoding="UTF-8"?><Response><Dial>{noun}</Dial></Response>'


HANGUP = '<?xml version="1.0" encoding="UTF-8"?><Response><Hangup/></Response>'


async def _refused(config: ServerConfig, request: Request, params: list[tuple[str, str]]) -> Response | None:
    """403 unless Twilio signed the request (or, with no Twilio auth token, it carries the gateway token)."""
    if not await signed(config, request, params):
        log.warning("rejected %s request with a bad X-Twilio-Signature", request.url.path)
        return Response("invalid Twilio signature", status_code=403, media_type="text/plain")
    if not config.twilio_auth_token and not token_ok(config.token, request):
        log.warning("rejected %s request without the gateway token", request.url.path)
        return Response("missing or wrong token", status_code=403, media_type="text/plain")
    return None


async def handoff_response(
    config: VoicebotConfig, request: Request, lookup: Callable[[str], HandoffSummary | None]
) -> Response:
    """`/twilio/handoff`, the `<Connect action>`: a `<Dial>` with the summary when the call was
    transferred to a dialable target, else `<Hangup/>` (the bot said goodbye, or the target is unknown)."""
    try:
        params = await form(config.server, request)
    except BodyTooLarge as exc:
        return Response(str(exc), status_code=413, media_type="text/plain")
    refusal = await _refused(config.server, request, params)
    if refusal is not None:
        return refusal
    call_sid = dict(params).get("CallSid") or request.query_params.get("CallSid") or ""
    summary = lookup(call_sid)
    twiml = None
    if summary is not None and summary.target:
        dial = config.handoff.twilio_dial.get(summary.target, summary.target)
        twiml = dial_twiml(summary, dial)
        if twiml is None:
            log.warning("twilio call %s: transfer target %r is not dialable (handoff.twilio_dial)",
                        call_sid, summary.target)  # fmt: skip
    return Response(twiml or HANGUP, media_type="application/xml")


async def voice_response(config: ServerConfig, request: Request) -> Response:
    """The `/twilio/voice` webhook: TwiML for a signed request, 403 otherwise.

    With a Twilio auth token the signature is the credential; without one but with a gateway token, the
    webhook URL must carry `?token=…` (the TwiML hands that token on, so it must not go to strangers)."""
    try:
        params = await form(config, request)
    except BodyTooLarge as exc:
        log.warning("rejected /twilio/voice request: %s", exc)
        return Response(str(exc), status_code=413, media_type="text/plain")
    refusal = await _refused(config, request, params)
    if refusal is not None:
        return refusal
    twiml = voice_twiml(stream_url(config, request), config.token, handoff_url(config))
    return Response(twiml, media_type="application/xml")


def _post(url: str, body: bytes) -> int:
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=HOOK_TIMEOUT_S) as response:
        return int(response.status)


async def post_transfer(url: str, transfer: dict[str, str | None]) -> bool:
    """POST the transfer to the user's hook (which would redirect the call with Twilio's REST API);
    False, logged, if it failed. Runs before the stream closes, so the hook wins the race against
    Twilio moving on to the TwiML after <Connect>."""
    try:
        status = await asyncio.to_thread(_post, url, json.dumps(transfer).encode())
    except Exception as exc:
        log.error("transfer hook %s failed: %s", url, exc)
        return False
    log.info("transfer hook %s answered %d", url, status)
    return 200 <= status < 300
