"""`voicebot shell --domain DIR`: chat with the dialogue engine in the terminal, turn by turn.

Typed lines are caller turns (no audio, no ASR); `/dtmf 457219#` presses keys, `/silence` is a no-input,
`/quit` leaves. After each reply the shell prints what the engine understood and did, which is the quickest
way to see why a domain answers the way it does.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import IO, Any

from voicebot.brain import Brain
from voicebot.frames import BotReply, DTMFDigit, FinalTranscript, NoInput, Understanding

HELP = "Type what the caller says. /dtmf DIGITS presses keys, /silence is a no-input, /quit ends."


def describe(reply: BotReply) -> str:
    """One line of what the engine understood and did (intent, slots, action), for the terminal."""
    turn = reply.understanding or Understanding()
    parts: list[str] = [f"intent={turn.intent} ({turn.confidence or 0:.2f})"] if turn.intent else []
    shown = {"entities": turn.entities, "slots": turn.slots}
    parts += [f"{name}={json.dumps(value)}" for name, value in shown.items() if value]
    if turn.flow:
        parts.append(f"flow={turn.flow}")
    if turn.action:
        parts.append(f"action={turn.action}→{turn.action_result}")
    if turn.act:
        parts.append(f"act={turn.act}")
    parts += [f"{a.kind}({a.target or ''}: {a.reason})" for a in reply.actions]
    return "  [" + " ".join(parts) + "]"


async def _turn(brain: Brain, line: str) -> list[BotReply]:
    if line == "/silence":
        found = await brain.handle(NoInput(after_s=0.0))
        return [found] if found else []
    if line.startswith("/dtmf"):
        replies = []
        for digit in line.removeprefix("/dtmf").strip():
            found = await brain.handle(DTMFDigit(digit=digit))
            if found is not None:
                replies.append(found)
        return replies
    found = await brain.handle(FinalTranscript(text=line, t=0.0))
    return [found] if found else []


def run_shell(factory: Callable[[], Brain], stdin: IO[str], stdout: IO[str], echo: bool = False) -> int:
    """Read caller lines until EOF, /quit or the bot ends the call; print replies and their analysis."""
    brain = factory()

    def show(reply: BotReply | None) -> bool:
        if reply is None:
            return False
        print(f"bot> {reply.text}", file=stdout)
        if reply.understanding is None or reply.understanding.act != "greeting":
            print(describe(reply), file=stdout)
        return any(a.kind in ("hangup", "transfer") for a in reply.actions)

    print(HELP, file=stdout)
    show(brain.greeting())
    for raw in stdin:
        line = raw.strip()
        if not line:
            continue
        if echo:
            print(f"you> {line}", file=stdout)
        if line == "/quit":
            break
        replies: list[Any] = asyncio.run(_turn(brain, line))
        if not replies:
            print("  [no reply: collecting digits or nothing to answer]", file=stdout)
        if any([show(r) for r in replies]):
            print("(call ended)", file=stdout)
            return 0
        stdout.flush()
    return 0
