"""Several domains on one gateway: `voicebot serve --domain domains/shop --domain domains/bank` answers each
call with the domain it asks for, the first by default.

A browser call names its domain in the WebSocket URL (`/ws?domain=bank`; the caller page offers the ones
`GET /domains` lists); every other protocol, and a browser call that names none, gets the default. A domain
is named by its folder's name, and a call's record names the domain that answered it (`meta.domain`), so
the operator console's learning from calls (reviews, retrain) works on each call's own domain.
"""

from __future__ import annotations

from collections.abc import Mapping

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


def domain_names(factory: BrainFactory) -> list[str]:
    """The domains a gateway answers with, the default first: several, one (a domain's dialogue engine or
    NLU-only factory), or none (the echo brain)."""
    if isinstance(factory, Domains):
        return list(factory.factories)
    path = getattr(getattr(factory, "domain", None), "path", None)
    return [path.resolve().name] if path is not None else []


def served_domain(factory: BrainFactory, name: str | None) -> str | None:
    """The name of the domain that answers a call that asked for `name` (`brains_for`'s choice: that one
    if served, else the default), None on a gateway without domains."""
    names = domain_names(factory)
    return (name if name in names else names[0]) if names else None


def brains_for(factory: BrainFactory, name: str | None) -> BrainFactory:
    """The factory whose brains answer a call that asked for domain `name` (the browser's `/ws` refuses a
    name it does not serve; anything else gets the default)."""
    if isinstance(factory, Domains):
        return factory.factories.get(str(name), factory.factories[factory.default])
    return factory
