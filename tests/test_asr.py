"""Whisper ASR: real transcription, the hallucination guards, and the openai-whisper loading path."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from voicebot.asr import make_asr
from voicebot.asr.base import Transcription, compression_ratio, decoder_prompt, judge, repetition_loop
from voicebot.asr.faster_whisper_backend import FasterWhisperASR
from voicebot.assets import ModelNotFoundError
from voicebot.audio import resample, to_float, ulaw_decode, ulaw_encode, write_wav
from voicebot.config import ASRConfig, VoicebotConfig
from voicebot.frames import PCM
from voicebot.pipeline import Services
from voicebot.testing.speech import RATE, silence
from voicebot.transcribe import transcribe_file


def digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def test_transcribes_synthetic_speech(services: Services, speech: dict[str, PCM]) -> None:
    result = services.asr.transcribe(to_float(speech["track"]))
    assert result.rejected is None
    assert "track my order" in result.text.lower()
    assert digits(result.text) == "457219"
    assert result.window_s == 10.0  # short utterance: short encoder window


def test_telephone_mulaw_audio(services: Services, speech: dict[str, PCM]) -> None:
    phone = ulaw_decode(ulaw_encode(resample(speech["agent"], RATE, 8000)))
    result = services.asr.transcribe(to_float(resample(phone, 8000, RATE)))
    assert "human agent" in result.text.lower()


def non_speech(kind: str) -> PCM:
    t = np.arange(3 * RATE) / RATE
    rng = np.random.default_rng(7)
    clips = {
        "silence": silence(3.0),
        "noise": rng.normal(0, 800, t.size),
        "tone": 8000 * np.sin(2 * np.pi * 440 * t),
        "dtmf": 5000 * (np.sin(2 * np.pi * 697 * t) + np.sin(2 * np.pi * 1209 * t)),
        "music": sum(3000 * np.sin(2 * np.pi * f * t) for f in (261.6, 329.6, 392.0))
        * (0.5 + 0.5 * np.sin(t)),
    }
    return np.asarray(clips[kind]).astype(np.int16)


@pytest.mark.parametrize("kind", ["silence", "noise", "tone", "dtmf", "music"])
def test_no_text_for_non_speech_files(services: Services, kind: str, tmp_path: Path) -> None:
    path = tmp_path / f"{kind}.wav"
    write_wav(path, non_speech(kind), RATE)
    assert transcribe_file(path, services.asr, services.vad, services.config).text == ""


@pytest.mark.parametrize("kind", ["silence", "tone", "dtmf"])
def test_guards_reject_non_speech_even_without_vad(services: Services, kind: str) -> None:
    result = services.asr.transcribe(to_float(non_speech(kind)))
    assert result.text == "" and result.rejected is not None


def test_long_file_is_cut_into_utterances(services: Services, speech: dict[str, PCM], tmp_path: Path) -> None:
    pcm = np.concatenate([speech["agent"], silence(2.0), speech["bye"], silence(1.0)])
    path = tmp_path / "two.wav"
    write_wav(path, pcm, RATE)
    result = transcribe_file(path, services.asr, services.vad, services.config)
    assert len(result.utterances) == 2
    assert "agent" in result.text.lower() and "goodbye" in result.text.lower()


def test_guard_rules() -> None:
    cfg = ASRConfig()
    assert repetition_loop("thank you thank you thank you thank you", 4)
    assert repetition_loop("the the the the", 4)
    assert not repetition_loop("four five seven two one nine", 4)
    assert not repetition_loop("no no no", 4)
    assert not repetition_loop("3 7 7 7 7 7", 4)  # invoice 37777 read digit by digit
    assert repetition_loop("I m 3 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0", 4)  # a constrained decode's loop
    assert compression_ratio("ha" * 200) > cfg.compression_ratio_threshold
    assert (
        judge(Transcription(text="Hello", no_speech_prob=0.9, avg_logprob=-1.5), cfg).rejected == "no speech"
    )
    assert judge(Transcription(text="Hello there", avg_logprob=-0.2), cfg).text == "Hello there"
    assert judge(Transcription(text="Thanks for watching!", no_speech_prob=0.5), cfg).rejected is not None
    assert judge(Transcription(text="Thank you", no_speech_prob=0.01), cfg).text == "Thank you"  # a real turn
    assert judge(Transcription(text="Cancel it"), cfg, speech_ms=40).rejected == "too little speech"


@pytest.mark.models
def test_hotwords_and_prompt_reach_the_decoder(tmp_path: Path) -> None:
    cfg = ASRConfig(model="tiny.en", initial_prompt="Acme Shop orders.", hotwords=["Zyntra", "Kelpo"])
    assert decoder_prompt(cfg, "order number") == "Acme Shop orders. Zyntra, Kelpo order number"
    asr = make_asr(cfg, tmp_path)
    assert isinstance(asr, FasterWhisperASR)
    tokens = asr.prompt_tokens(None)
    tok = asr.tokenizer
    assert tokens[0] == tok.sot_prev
    assert tok.decode(tokens[1 : tokens.index(tok.sot)]).strip() == "Acme Shop orders. Zyntra, Kelpo"
    assert tokens[-1] == tok.no_timestamps


def test_encoder_window_grows_with_the_audio(services: Services) -> None:
    asr = services.asr
    assert isinstance(asr, FasterWhisperASR)
    assert asr.window_seconds(2 * RATE) == 10.0
    assert asr.window_seconds(int(12.2 * RATE)) == 14.0
    assert asr.window_seconds(60 * RATE) == 30.0


@pytest.mark.models
def test_tiny_en_is_selectable() -> None:
    asr = make_asr(ASRConfig(model="tiny.en"), VoicebotConfig().cache_dir)
    assert asr.name == "faster-whisper:tiny.en"
    assert asr.transcribe(np.zeros(0, np.float32)).text == ""


def test_openai_whisper_backend_loads_a_checkpoint(tmp_path: Path, speech: dict[str, PCM]) -> None:
    torch = pytest.importorskip("torch")
    whisper_model = pytest.importorskip("whisper.model")
    dims = whisper_model.ModelDimensions(
        n_mels=80, n_audio_ctx=1500, n_audio_state=32, n_audio_head=2, n_audio_layer=1,
        n_vocab=51865, n_text_ctx=448, n_text_state=32, n_text_head=2, n_text_layer=1,
    )  # fmt: skip
    torch.manual_seed(0)
    model = whisper_model.Whisper(dims)
    path = tmp_path / "tiny-random.pt"
    torch.save({"dims": dims.__dict__, "model_state_dict": model.state_dict()}, path)
    cfg = ASRConfig(backend="openai-whisper", checkpoint=path, temperatures=(0.0,))
    asr = make_asr(cfg, tmp_path)
    assert asr.name == "openai-whisper:tiny-random.pt"
    result = asr.transcribe(
        to_float(speech["bye"])
    )  # random weights: proves loading and decoding, not accuracy
    assert isinstance(result.text, str) and result.decode_ms > 0


def test_openai_whisper_backend_needs_a_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="checkpoint"):
        make_asr(ASRConfig(backend="openai-whisper"), tmp_path)
    with pytest.raises(ModelNotFoundError, match="not found"):
        make_asr(ASRConfig(backend="openai-whisper", checkpoint=tmp_path / "nope.pt"), tmp_path)
