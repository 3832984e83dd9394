"""The turn stage: the pipeline's last stage, where each turn's typed record is built as its frames pass.

The speak stage sends a reply on as it starts playing it and its `PlaybackReport` when it stops; this stage
pairs the two (replies play one at a time), adds what the caller heard of the reply before, and emits a
`TurnDone` with the `TurnRecord`. Replies dropped by a barge-in before they played have no record, as the
caller never heard them; everything else passes on to the call's observers. The decisions on caller speech
heard over a reply (`Interruption`: a backchannel let through, a cut) go into the next record built, the
reply's own (they come before its report). So does the `HoldReport` of a wait on hold (it comes before the
report of the reply that ended it).
"""

from __future__ import annotations

from dataclasses import replace

from voicebot.frames import BotReply, Direction, Frame, HoldReport, Interruption, PlaybackReport, TurnDone
from voicebot.stages.base import Stage
from voicebot.turns import TurnRecord


class TurnStage(Stage):
    name = "turns"

    def __init__(self) -> None:
        super().__init__()
        self._reply: BotReply | None = None  # playing now
        self._previous: PlaybackReport | None = None  # the last reply with words, as the caller heard it
        self._previous_cause: str | None = None  # what that reply answered
        self._interruptions: list[Interruption] = []  # decided since the last record
        self._hold: HoldReport | None = None  # the caller's last wait on hold, since the last record

    async def on_frame(self, frame: Frame, direction: Direction) -> None:
        if isinstance(frame, BotReply):
            self._reply = frame
        elif isinstance(frame, Interruption):
            self._interruptions.append(frame)
        elif isinstance(frame, HoldReport):
            self._hold = frame
        elif (
            isinstance(frame, PlaybackReport)
            and direction is Direction.DOWNSTREAM
            and self._reply is not None
        ):
            reply, self._reply = self._reply, None
            record = TurnRecord.build(reply, frame.reply_id, frame, self._previous, self._previous_cause)
            record = replace(record, interruptions=tuple(self._interruptions))
            self._interruptions.clear()
            record, self._hold = replace(record, hold=self._hold), None
            if frame.text:
                self._previous, self._previous_cause = frame, reply.cause
            await self.pass_on(frame, direction)
            await self.push(TurnDone(record=record))
            return
        await self.pass_on(frame, direction)
