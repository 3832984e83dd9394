"""The caller voices of the spoken benchmark: every family speaks, at the rate asked, and the split between
voices tuning may listen to and held-out ones is what the benchmark reports."""

from __future__ import annotations

import numpy as np
import pytest

from models.voices import HELD_OUT, TUNED, VOICES, voices


def test_two_families_are_held_out_and_none_is_both() -> None:
    families = {v.family for v in VOICES.values()}
    assert len(HELD_OUT) >= 2 and set(HELD_OUT) | set(TUNED) == families
    assert not set(HELD_OUT) & set(TUNED)
    held = {v.name for v in VOICES.values() if v.family in HELD_OUT}
    assert {v.name for v in voices(held_out=True)} == held
    assert [v.name for v in voices(["flite-kal", "piper-joe"], held_out=False)] == ["piper-joe"]


@pytest.mark.parametrize("name", ["espeak-us", "flite-kal", "festival-ked", "festival-slt-hts"])
def test_each_command_line_voice_speaks_at_the_rate_asked(name: str) -> None:
    """(Piper is exercised by every model test; these are the Debian engines.)"""
    pcm = VOICES[name].speak("four five seven", 8_000)
    assert pcm.dtype == np.int16 and 0.3 < pcm.size / 8_000 < 3.0
    assert float(np.abs(pcm.astype(np.float64)).mean()) > 100  # not silence
