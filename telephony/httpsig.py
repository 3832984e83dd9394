"""The signed connection request of Genesys AudioHook / AudioConnector: HTTP Message Signatures.

Per Genesys's "AudioHook Protocol Specification" (section "Authentication"), which signs the WebSocket
upgrade as the IETF HTTP Message Signatures draft (draft-ietf-httpbis-message-signatures, the `@request-
target` generation, now RFC 9421) does with `hmac-sha256`: the request carries `X-API-KEY` (the
integration's API key), `Audiohook-Organization-Id`, `Audiohook-Session-Id`, `Audiohook-Correlation-Id`,
`Signature-Input: sig1=("@request-target" "@authority" "audiohook-organization-id" …);keyid="<API key>";
nonce="…";alg="hmac-sha256";created=<unix s>;expires=<unix s>` and `Signature: sig1=:<base64>:`. The
signed text is one line per covered component, `"<name>": <value>`, then `"@signature-params": ` and the
parameters exactly as sent; the key is the integration's client secret, base64-decoded.

We accept a signature whose `keyid` is our API key, whose `created` is not in the future (60 s of clock
skew) and whose `expires`, or else `created` + 300 s, has not passed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time

from fastapi import WebSocket

from voicebot.config import ServerConfig

SKEW_S = 60
LIFETIME_S = 300
INPUT = re.compile(r'\s*([\w-]+)=(\(([^)]*)\)((?:;[\w-]+=(?:"[^"]*"|\d+))*))\s*$')
PARAM = re.compile(r';([\w-]+)=(?:"([^"]*)"|(\d+))')


def secret_key(secret: str) -> bytes:
    """The client secret is base64; a secret that is not is used as its bytes."""
    try:
        return base64.b64decode(secret, validate=True)
    except (binascii.Error, ValueError):
        return secret.encode()


def signature_base(components: list[str], values: dict[str, str], params: str) -> str:
    lines = [f'"{name}": {values[name]}' for name in components]
    return "\n".join([*lines, f'"@signature-params": {params}'])


def sign(key: bytes, base: str) -> str:
    return base64.b64encode(hmac.new(key, base.encode(), hashlib.sha256).digest()).decode()


def component_values(ws: WebSocket) -> dict[str, str]:
    """What each coverable component is in this request."""
    path, query = ws.url.path, ws.url.query
    values = {"@request-target": path + (f"?{query}" if query else ""), "@method": "GET", "@path": path}
    values |= {"@query": f"?{query}", "@authority": ws.headers.get("host", "").lower()}
    return values | {name.lower(): value.strip() for name, value in ws.headers.items()}


def verify(ws: WebSocket, api_key: str, secret: str, now: float | None = None) -> str | None:
    """Why the request's signature does not hold, or None when it does."""
    found = INPUT.match(ws.headers.get("signature-input", ""))
    if found is None:
        return "no or unreadable Signature-Input"
    label, params, covered, tail = found.group(1), found.group(2), found.group(3), found.group(4)
    options = {m.group(1): m.group(2) if m.group(2) is not None else m.group(3) for m in PARAM.finditer(tail)}
    if not hmac.compare_digest(options.get("keyid", "").encode(), api_key.encode()):
        return "signature keyid is not our API key"
    if options.get("alg", "hmac-sha256") != "hmac-sha256":
        return f"signature algorithm {options['alg'][:20]!r} is not hmac-sha256"
    now = time.time() if now is None else now
    created = int(options.get("created", "0"))
    expires = int(options.get("expires", created + LIFETIME_S))
    if created > now + SKEW_S or expires < now:
        return "signature expired or not yet valid"
    components = re.findall(r'"([^"]+)"', covered)
    values = component_values(ws)
    if not components or any(name not in values for name in components):
        return "signature covers a component the request does not have"
    given = re.fullmatch(rf"\s*{re.escape(label)}=:([A-Za-z0-9+/=]+):\s*", ws.headers.get("signature", ""))
    expected = sign(secret_key(secret), signature_base(components, values, params))
    if given is None or not hmac.compare_digest(given.group(1).encode(), expected.encode()):
        return "signature does not match"
    return None


def check_request(ws: WebSocket, config: ServerConfig, query_token: str | None) -> str | None:
    """Why this connection request may not open a session, or None."""
    api_key = ws.headers.get("x-api-key", "")
    if config.genesys_api_key:
        if not hmac.compare_digest(api_key.encode(errors="replace"), config.genesys_api_key.encode()):
            return "wrong or missing X-API-KEY"
        if config.genesys_client_secret:
            return verify(ws, config.genesys_api_key, config.genesys_client_secret)
        return None
    given = (query_token or api_key).encode(errors="replace")
    if config.token and not hmac.compare_digest(given, config.token.encode()):
        return "missing or wrong token"
    return None
