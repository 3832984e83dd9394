"""The phone-line simulator (`voicebot.line`): each impairment measured on numpy signals, the presets, the
`voicebot line` command, and `line:` in conversation tests (on fake models, whose tone voice survives a line).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from voicebot.audio import from_float, read_audio, resample, to_float, ulaw_decode, ulaw_encode, write_wav
from voicebot.brain import EchoBrain
from voicebot.cli import main
from voicebot.convtest.runner import run_conversation
from voicebot.convtest.spec import load_conversation
from voicebot.domain.yamlfile import DomainError
from voicebot.filecall import FileCall
from voicebot.frames import PCM
from voicebot.line import PRESETS, LineConfig, LineError, available, line_config, run_line, simulate
from voicebot.line import chain as line_chain
from voicebot.line import codecs as line_codecs
from voicebot.line.chain import telephone, through_line
from voicebot.line.channel import active_power, frame_powers
from voicebot.pipeline import Services
from voicebot.testing.fakes import EnergyVAD, ToneVoice, fake_services

RATE = 8_000
BARE = LineConfig(codec=(), band="none")  # nothing but what a test switches on
needs = {c: pytest.mark.skipif(not available(c), reason=f"no tool for {c} here") for c in ("gsm", "amr-nb")}


def sine(freq: float, seconds: float, level: float = 0.3, rate: int = RATE) -> PCM:
    t = np.arange(int(seconds * rate)) / rate
    return from_float(level * np.sin(2 * np.pi * freq * t))


def voiced(seconds: float, gaps: bool = True) -> PCM:
    """Speech-like: a 150 Hz harmonic complex in 300 ms syllables with 200 ms pauses (or none)."""
    t = np.arange(int(seconds * RATE)) / RATE
    x = np.sum([np.sin(2 * np.pi * 150 * k * t + k) / k for k in range(1, 16)], axis=0) * 0.1
    return from_float(x * ((t % 0.5) < 0.3) if gaps else x)


def db(power: float) -> float:
    return float(10 * np.log10(max(power, 1e-20)))


def tone_level(pcm: PCM, freq: float) -> tuple[float, float]:
    """(frequency of the spectral peak, power in dB) of a steady signal, edges left out."""
    x = to_float(pcm)[800:-800].astype(np.float64)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.fft.rfftfreq(x.size, 1 / RATE)[np.argmax(spectrum)]), db(float(np.mean(x**2)))


# ------------------------------------------------------------------------------------ channel and levels


def _old_bench_telephone(pcm: PCM, rate: int, hard: bool = False) -> PCM:
    """scripts/_bench_common.telephone as it was before it moved here (commit 02ccca9), verbatim."""
    x = to_float(resample(pcm, rate, 8000)).astype(np.float64)
    spec = np.fft.rfft(x)
    f = np.maximum(np.fft.rfftfreq(x.size, 1 / 8000), 1e-3)
    if hard:
        spec[(f < 300) | (f > 3400)] = 0
    else:
        spec *= 1 / np.sqrt((1 + (300 / f) ** 8) * (1 + (f / 3400) ** 16))
    return ulaw_decode(ulaw_encode(from_float(np.fft.irfft(spec, n=x.size))))


@pytest.mark.parametrize("rate", [8_000, 16_000, 22_050])
@pytest.mark.parametrize("hard", [False, True])
def test_the_default_line_is_the_benchmarks_telephone(rate: int, hard: bool) -> None:
    pcm = from_float(np.random.default_rng(rate).standard_normal(rate) * 0.1)
    assert np.array_equal(telephone(pcm, rate, hard), _old_bench_telephone(pcm, rate, hard))
    assert np.array_equal(simulate(pcm, rate, LineConfig()), telephone(pcm, rate))


def test_band_pass_removes_what_a_phone_line_does() -> None:
    def loss_db(freq: float, band: str) -> float:
        out = simulate(sine(freq, 1.0), RATE, BARE.model_copy(update={"band": band}))
        return tone_level(sine(freq, 1.0), freq)[1] - tone_level(out, freq)[1]

    assert abs(loss_db(1000, "phone")) < 0.2
    assert loss_db(100, "phone") > 35  # 24 dB/octave below 300 Hz
    assert loss_db(3800, "phone") > 8  # 48 dB/octave above 3400 Hz: 3.8 kHz is only 0.16 octave above
    assert loss_db(100, "brickwall") > 60 and loss_db(3800, "brickwall") > 60


def test_active_level_leaves_out_the_pauses() -> None:
    with_gaps, steady = voiced(2.0), voiced(2.0, gaps=False)
    assert abs(db(active_power(to_float(with_gaps))) - db(active_power(to_float(steady)))) < 0.3
    assert active_power(np.zeros(800)) == 0.0


@pytest.mark.parametrize("kind", ["white", "babble", "office", "street"])
@pytest.mark.parametrize(("snr", "codec"), [(20.0, ()), (10.0, ("ulaw",)), (0.0, ())])
def test_noise_is_mixed_at_the_asked_snr(kind: str, snr: float, codec: tuple[str, ...]) -> None:
    speech = voiced(4.0)
    line = LineConfig(codec=codec, noise=kind, snr_db=snr, seed=5)
    noisy = to_float(simulate(speech, RATE, line)).astype(np.float64)
    clean = to_float(simulate(speech, RATE, line.model_copy(update={"noise": "none"}))).astype(np.float64)
    measured = db(active_power(clean) / float(np.mean((noisy - clean) ** 2)))
    assert abs(measured - snr) < 1.0, f"{kind} at {snr} dB measured {measured:.2f} dB"


def test_noise_kinds_differ_in_spectrum() -> None:
    def low_share(kind: str) -> float:  # share of the noise's power below 500 Hz (no band filter)
        run = run_line(voiced(3.0), RATE, BARE.model_copy(update={"noise": kind, "snr_db": 0.0}))
        x = to_float(run.pcm).astype(np.float64) - to_float(voiced(3.0))
        p = np.abs(np.fft.rfft(x)) ** 2
        return float(p[np.fft.rfftfreq(x.size, 1 / RATE) < 500].sum() / p.sum())

    shares = {kind: low_share(kind) for kind in ("white", "babble", "street")}
    assert shares["white"] < 0.2 < shares["babble"] and shares["street"] > 0.5, shares


def test_gain_drift_and_clipping() -> None:
    tone = sine(1000, 16.0, level=0.1)
    base = tone_level(tone, 1000)[1]
    quiet = simulate(tone, RATE, BARE.model_copy(update={"gain_db": -12.0}))
    assert abs(tone_level(quiet, 1000)[1] - (base - 12)) < 0.1
    drifting = simulate(tone, RATE, BARE.model_copy(update={"drift_db": 6.0, "drift_period_s": 8.0}))
    levels = 10 * np.log10(frame_powers(to_float(drifting)) / frame_powers(to_float(tone)))
    assert 5.5 < levels.max() <= 6.05 and -6.05 <= levels.min() < -5.5
    loud = simulate(tone, RATE, BARE.model_copy(update={"gain_db": 18.0, "clip_dbfs": -6.0}))
    assert np.abs(loud.astype(np.int32)).max() <= round(32768 * 10 ** (-6 / 20)) + 1
    assert np.mean(np.abs(loud) >= 16300) > 0.3  # flat tops: a loud tone spends much of its time clipped


# ------------------------------------------------------------------------------------ codecs


@pytest.mark.parametrize(
    ("codec", "level_db"),
    [("ulaw", 0.1), ("alaw", 0.1), pytest.param("gsm", 1.0, marks=needs["gsm"]),
     pytest.param("amr-nb", 1.0, marks=needs["amr-nb"])],
)  # fmt: skip
@pytest.mark.parametrize("freq", [440.0, 1000.0])
def test_codecs_keep_a_tones_pitch_and_level(codec: str, level_db: float, freq: float) -> None:
    tone = sine(freq, 1.0, level=0.2)
    out = simulate(tone, RATE, BARE.model_copy(update={"codec": (codec,)}))
    assert out.size == tone.size
    (f_in, l_in), (f_out, l_out) = tone_level(tone, freq), tone_level(out, freq)
    assert abs(f_out - f_in) < 2.0 and abs(l_out - l_in) < level_db, (f_out, l_out - l_in)


@pytest.mark.parametrize("codec", [pytest.param(c, marks=needs[c]) for c in ("gsm", "amr-nb")])
def test_codec_output_is_aligned_with_its_input(codec: str) -> None:
    burst = np.zeros(8000, np.int16)
    burst[3000:3400] = from_float(np.random.default_rng(1).standard_normal(400) * 0.2)
    out = simulate(burst, RATE, BARE.model_copy(update={"codec": (codec,)})).astype(np.float64)
    lag = int(np.argmax(np.correlate(out, burst.astype(np.float64), "full"))) - (burst.size - 1)
    assert abs(lag) <= 1


@pytest.fixture
def fresh_tools() -> Iterator[None]:
    line_codecs._tool_lists.cache_clear()
    yield
    line_codecs._tool_lists.cache_clear()


@pytest.mark.skipif(not (shutil.which("sox") and shutil.which("ffmpeg")), reason="needs sox and ffmpeg")
def test_gsm_is_the_same_through_sox_and_ffmpeg(monkeypatch: pytest.MonkeyPatch, fresh_tools: None) -> None:
    speech = voiced(1.0)
    assert line_codecs.codec_tool("gsm") == "sox"
    by_sox = simulate(speech, RATE, BARE.model_copy(update={"codec": ("gsm",)}))
    monkeypatch.setattr(line_codecs, "_sox_formats", list)
    assert line_codecs.codec_tool("gsm") == "ffmpeg"
    assert np.array_equal(simulate(speech, RATE, BARE.model_copy(update={"codec": ("gsm",)})), by_sox)


def test_a_missing_tool_is_named(monkeypatch: pytest.MonkeyPatch, fresh_tools: None) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(LineError, match=r"amr-nb needs sox .*not installed"):
        simulate(sine(440, 0.1), RATE, "amr-nb")
    with pytest.raises(LineError, match=r"gsm needs sox .* or ffmpeg"):
        line_codecs.codec_tool("gsm")
    assert simulate(sine(440, 0.1), RATE, "clean-alaw").size == 800  # G.711 needs no tool


# ------------------------------------------------------------------------------------ loss and jitter


def test_lost_frames_are_concealed_not_silent() -> None:
    tone = voiced(60.0, gaps=False)  # 3000 frames
    line = BARE.model_copy(update={"loss_pct": 5.0, "seed": 3})
    run = run_line(tone, RATE, line)
    assert 3.8 < 100 * run.lost.mean() < 6.2 and not run.late.any()
    frames = run.pcm.reshape(-1, 160).astype(np.float64)
    ref = tone.reshape(-1, 160).astype(np.float64)
    rms = np.sqrt(np.mean(frames**2, axis=1))
    first_of_gap = run.lost & ~np.roll(run.lost, 1)
    assert (rms[run.lost] > 0.1 * np.sqrt(np.mean(ref**2))).all()  # none silent
    assert (rms[first_of_gap] > 0.7 * np.sqrt(np.mean(ref**2))).all()  # 20 ms in, barely faded
    near = run.lost | np.roll(run.lost, 1) | np.roll(run.lost, -1)
    assert np.array_equal(frames[~near], ref[~near])  # frames away from a gap are untouched
    err = np.mean((frames[first_of_gap] - ref[first_of_gap]) ** 2) / np.mean(ref[first_of_gap] ** 2)
    assert db(1 / err) > 6  # a pitch period repeated is close to what was lost (silence would be 0 dB)
    zero = run_line(tone, RATE, line.model_copy(update={"concealment": "zero"}))
    assert np.array_equal(zero.lost, run.lost)
    assert not zero.pcm.reshape(-1, 160)[zero.lost].any()


def test_long_gaps_fade_to_silence_after_60_ms() -> None:
    run = run_line(voiced(60.0, gaps=False), RATE, BARE.model_copy(update={"loss_pct": 20, "loss_burst": 6}))
    frames = run.pcm.reshape(-1, 160).astype(np.float64)
    lost = run.lost
    fourth = lost & np.roll(lost, 1) & np.roll(lost, 2) & np.roll(lost, 3)  # 60-80 ms into a gap
    assert fourth.any() and not frames[fourth].any()
    bursts = np.diff(np.flatnonzero(np.diff(np.concatenate([[0], lost.astype(int), [0]]))))[::2]
    assert 15 < 100 * lost.mean() < 25 and 4.5 < bursts.mean() < 7.5


def test_jitter_drops_frames_past_the_playout_deadline() -> None:
    line = BARE.model_copy(update={"jitter_ms": 20.0, "playout_ms": 40.0, "seed": 1})
    run = run_line(voiced(60.0, gaps=False), RATE, line)
    assert abs(100 * run.late.mean() - 100 * np.exp(-2)) < 2.5 and not run.lost.any()


def test_the_seed_decides_everything() -> None:
    speech = voiced(3.0)
    line = LineConfig(loss_pct=5, jitter_ms=20, noise="babble", snr_db=10, drift_db=3, seed=7)
    first = simulate(speech, 16_000, line)
    assert np.array_equal(first, simulate(speech, 16_000, line))
    assert not np.array_equal(first, simulate(speech, 16_000, line.model_copy(update={"seed": 8})))
    assert first.size == speech.size // 2  # at 8 kHz, as long as the input


# ------------------------------------------------------------------------------------ config and presets


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"codec": "opus"}, "codec.0: Input should be 'ulaw', 'alaw', 'gsm' or 'amr-nb'"),
        ({"snr_db": 90}, "snr_db: Input should be less than or equal to 60"),
        ({"noise": "rain"}, "noise: Input should be"),
        ({"amr_kbps": 9}, "AMR-NB has the modes"),
        ({"los_pct": 3}, "los_pct: Extra inputs are not permitted"),
        ("mobile-bad", "unknown line preset 'mobile-bad'; presets: mulaw, clean-g711"),
        ({"preset": "nope"}, "unknown line preset 'nope'"),
    ],
)
def test_bad_lines_say_what_is_wrong(value: Any, message: str) -> None:
    with pytest.raises(LineError) as error:
        line_config(value)
    assert message in str(error.value)


def test_presets_and_overrides() -> None:
    poor = line_config({"preset": "mobile-poor", "seed": 4})
    assert poor.codec == ("gsm", "ulaw") and poor.loss_pct == 3 and poor.noise == "babble"
    assert (poor.snr_db, poor.seed) == (10, 4)
    both = ("gsm", "ulaw")
    assert line_config({"codec": "gsm+ulaw"}).codec == both == line_config({"codec": list(both)}).codec
    assert line_config({"codec": "none"}).codec == ()
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert all(f"| `{name}` |" in readme for name in PRESETS), "every preset is in the README's table"


def test_every_preset_runs() -> None:
    speech = voiced(1.0)
    for name, line in PRESETS.items():
        if all(available(c) for c in line.codec):
            assert simulate(speech, RATE, name).size == speech.size, name


def test_mulaw_is_the_old_mu_law() -> None:  # what `voicebot test --mulaw` did before it was a line
    pcm = voiced(1.0)
    assert np.array_equal(through_line(pcm, 8_000, PRESETS["mulaw"], 3), ulaw_decode(ulaw_encode(pcm)))


# ------------------------------------------------------------------------------------ the command


def test_cli_writes_8k_wavs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "in" / "hello.wav"
    src.parent.mkdir()
    write_wav(src, resample(voiced(2.0), RATE, 16_000), 16_000)
    out = tmp_path / "out"
    args = ["--preset", "babble-20db", "--loss", "2", "--seed", "3"]
    assert main(["line", str(src), "--out", str(out), *args]) == 0
    written = read_audio(out / "hello.wav", RATE)
    assert written.size == 2 * RATE
    printed = capsys.readouterr().out
    assert "babble noise at 20 dB SNR, 2 % frames lost" in printed and "hello.wav" in printed
    assert main(["line", "--list"]) == 0 and "mobile-poor" in capsys.readouterr().out
    assert main(["line", str(src), "--out", str(out), "--snr", "99"]) == 2
    assert "snr_db: Input should be less than or equal to 60" in capsys.readouterr().err
    assert main(["line", str(src)]) == 2 and "--out DIR" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ conversations

LINES = ("where is my parcel", "thank you goodbye")


VOICE = ToneVoice(LINES)  # the fake callers' voice and the fake recogniser's ear


@pytest.fixture
def svc() -> Iterator[Services]:
    # the tone's RMS (0.21) is certain speech, 10 dB babble under it (0.07) is not
    svc = fake_services(voice=VOICE, vad=EnergyVAD(full_rms=0.3))
    yield svc
    svc.close()


def conversation(folder: Path, line_yaml: str, step_line: str = "") -> Path:
    for n, text in enumerate(LINES):
        write_wav(folder / f"turn{n}.wav", VOICE.say(text, 16_000), 16_000)
    path = folder / "call.yaml"
    path.write_text(
        f"name: over a line\n{line_yaml}steps:\n"
        f"  - audio: turn0.wav\n{step_line}    expect: {{transcript: parcel, reply: 'You said: where'}}\n"
        "  - audio: turn1.wav\n    expect: {hangup: true}\n"
    )
    return path


async def test_a_conversation_runs_over_its_line(
    svc: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    preset = "mobile-poor" if available("gsm") else "babble-10db"
    spec = load_conversation(conversation(tmp_path, f"line: {preset}\n", "    line: {seed: 9}\n"))
    assert spec.line == PRESETS[preset] and spec.steps[0].line == LineConfig(seed=9)
    used: list[tuple[LineConfig, int]] = []

    def spy(pcm: PCM, rate: int, line: LineConfig, seed_offset: int = 0) -> PCM:
        used.append((line, seed_offset))
        return through(pcm, rate, line, seed_offset)

    through = line_chain.through_line
    monkeypatch.setattr("voicebot.convtest.runner.through_line", spy)
    result = await run_conversation(svc, EchoBrain, spec, 8_000, line=PRESETS["mulaw"])
    assert result.passed, result.steps
    assert used == [(LineConfig(seed=9), 1), (PRESETS[preset], 2)]  # the step's, then the file's line


@pytest.mark.parametrize(
    ("line_yaml", "step_line", "where"),
    [
        ("line: {snr_db: 99}\n", "", ":2: line.snr_db: Input should be less than or equal to 60"),
        ("line: nosuch\n", "", ":2: line: unknown line preset 'nosuch'"),
        ("", "    line: {codec: opus}\n", ":4: steps.0.line.codec.0: Input should be"),
        ("", "    line: {preset: gsm, loss: 3}\n", ":4: steps.0.line.loss: Extra inputs"),
    ],
)
def test_a_bad_line_names_file_and_line(tmp_path: Path, line_yaml: str, step_line: str, where: str) -> None:
    path = conversation(tmp_path, line_yaml, step_line)
    with pytest.raises(DomainError) as error:
        load_conversation(path)
    assert str(error.value).startswith(f"{path}{where}")


def test_a_typed_turn_takes_no_line(tmp_path: Path) -> None:
    path = tmp_path / "typed.yaml"
    path.write_text("name: x\nsteps:\n  - caller: hello\n    line: gsm\n")
    with pytest.raises(DomainError, match=r":3: steps.0: line needs an audio step"):
        load_conversation(path)


async def test_voicebot_call_over_a_line(svc: Services, tmp_path: Path) -> None:
    files = []
    for n, text in enumerate(LINES):
        files.append(tmp_path / f"{n}.wav")
        write_wav(files[-1], VOICE.say(text, 16_000), 16_000)
    result = await FileCall(svc, EchoBrain(), fast=True, rate=8_000, line=PRESETS["babble-10db"]).run(files)
    assert [t["transcript"] for t in result.turns] == list(LINES) and not result.errors


def test_voicebot_test_takes_a_line(
    svc: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setattr("voicebot.pipeline.Services.load", lambda config: svc)
    monkeypatch.setattr(svc, "close", lambda: None)
    path = conversation(tmp_path, "")
    assert main(["test", str(path), "--rate", "8000", "--line", "babble-20db"]) == 0
    assert "PASS" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["test", str(path), "--mulaw", "--line", "gsm"])
    assert "not allowed with argument" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["test", str(path), "--line", "nosuch"])
    assert "unknown line preset 'nosuch'" in capsys.readouterr().err
