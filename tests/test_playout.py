"""What the caller heard of a reply sent ahead of its playback, and the recording after a barge-in's clear."""

from __future__ import annotations

import time

import numpy as np

from telephony.recording import CallRecorder
from voicebot.playback import Playout


def playout() -> Playout:
    return Playout(
        reply_id=1,
        text="Sure. Your order ships on Monday morning.",
        synthesized_at=100.0,
        sent_ms=2_400.0,  # 2.4 s sent
        sentences=[("Sure.", 0.0, 600.0), ("Your order ships on Monday morning.", 600.0, 1_800.0)],
    )


def test_played_is_the_time_since_the_first_frame_never_more_than_was_sent() -> None:
    p = playout()
    assert p.clock_ms(100.5) == 500.0
    assert p.clock_ms(103.0) == 2_400.0  # a gap on the way: all that was sent, no more
    assert p.clock_ms(None) == 2_400.0  # offline: everything sent counts
    assert Playout(1, "Hi.").clock_ms(100.0) == 0.0  # nothing sent yet


def test_heard_is_whole_sentences_then_the_share_of_the_cut_one() -> None:
    p = playout()
    assert p.heard(0.0) == ""
    assert p.heard(599.0) == ""  # "Sure." not finished
    assert p.heard(600.0) == "Sure."
    assert p.heard(600.0 + 900.0) == "Sure. Your order ships"  # half of six words
    assert p.heard(2_400.0) == "Sure. Your order ships on Monday morning."
    assert Playout(1, "Hi.", sentences=[("Hi.", 0.0, 0.0)]).heard(0.0) == "Hi."


def test_a_clear_takes_what_was_sent_ahead_off_the_recording() -> None:
    rec = CallRecorder(8_000)
    for _ in range(10):  # 200 ms of bot audio sent at once: most of it is ahead of the caller
        rec.bot(np.full(160, 1000, np.int16))
    time.sleep(0.05)
    rec.cleared()  # barge-in after ~50 ms
    rec.caller(np.zeros(8_000, np.int16))
    _, bot = rec.tracks()
    heard = int(np.count_nonzero(bot))
    assert 300 <= heard <= 1_200, heard  # ~50 ms (400 samples) of the 1,600 sent, allowing for a slow machine
    rec.bot(np.full(160, 500, np.int16))  # the next reply goes on after the cut
    assert np.count_nonzero(rec.tracks()[1] == 500) == 160
