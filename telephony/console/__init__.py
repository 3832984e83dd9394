"""The operator console served by the gateway at `/console`: live calls, call history, one call's page and
a dashboard, behind the console's own auth (`auth`), over the call records (`api`) and a live feed of the
running calls (`live`); the page itself is `telephony/static/console/`."""

from telephony.console.api import console_router
from telephony.console.live import LiveFeed

__all__ = ["LiveFeed", "console_router"]
