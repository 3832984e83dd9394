"""Several domains on one gateway: `voicebot serve --domain domains/shop --domain domains/bank` answers each
call with the domain it asks for, the first by default.

A browser call names its domain in the WebSocket URL (`/ws?domain=bank`; the caller page offers the ones
`GET /domains` lists); every other protocol, and a browser call that names none, gets the default. A domain
is named by its folder's name. The operator console's learning from calls (reviews, retrain) works on the
default domain: `Domains` answers for it where the console asks a factory for its `domain` and `nlu`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from voicebot.brain import Brain, BrainFactory


class Domains:
    """The gateway's brain factories by domain name; called, the default (first) domain's brain."""

    def __init__(self, factories: Mapping[str, BrainFactory]) -> None:
        if not factories:
            raise ValueError("at least one domain")
        self.factories = dict(factories)
        self.default = next(iter(self.factories))

    def __call__(self) -> Brain:
        return self.factories[self.default]()

    @property
    def domain(self) -> Any:
        """The default domain (what the console's learning reads: `domain.path`)."""
        return getattr(self.factories[self.default], "domain", None)

    @property
    def nlu(self) -> Any:
        """The default domain's understanding (the console's known intents and retrain swap)."""
        return getattr(self.factories[self.default], "nlu", None)


def domain_names(factory: BrainFactory) -> list[str]:
    """The domains a gateway answers with, the default first: several, one (a domain's dialogue engine),
    or none (the echo brain, an NLU-only domain)."""
    if isinstance(factory, Domains):
        return list(factory.factories)
    path = getattr(getattr(factory, "domain", None), "path", None)
    return [path.resolve().name] if path is not None else []


def brains_for(factory: BrainFactory, name: str | None) -> BrainFactory:
    """The factory whose brains answer a call that asked for domain `name` (the browser's `/ws` refuses a
    name it does not serve; anything else gets the default)."""
    if isinstance(factory, Domains):
        return factory.factories.get(str(name), factory.factories[factory.default])
    return factory
