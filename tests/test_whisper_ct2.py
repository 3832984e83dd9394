"""Whisper base read from its CTranslate2 model.bin into Hugging Face (models/whisper_ct2.py): the ground of
fine-tuning on phone-line speech. Checks the mapping against values known independently of it (the encoder's
positions are Whisper's sinusoids, the converter's k bias is zero) and that the Hugging Face model hears a
Piper clip as the stock faster-whisper model does, both with the 10 s window our backend uses."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer
from transformers.models.whisper.modeling_whisper import sinusoids

from models.finetune_whisper import Batcher
from models.voices import VOICES
from models.whisper_ct2 import greedy_tokens, load_hf_whisper, read_model_bin, set_window
from voicebot.asr.faster_whisper_backend import FasterWhisperASR
from voicebot.assets import whisper_model_dir
from voicebot.config import ASRConfig, VoicebotConfig

pytestmark = pytest.mark.models
TEXT = "Can I speak to a human agent please?"


@pytest.fixture(scope="module")
def base_dir() -> Path:
    return whisper_model_dir("base", VoicebotConfig().cache_dir)


def test_reads_the_weights(base_dir: Path) -> None:
    torch.set_num_threads(1)
    ct2 = read_model_bin(base_dir / "model.bin")
    assert (ct2.spec, ct2.revision) == ("WhisperSpec", 3)
    assert ct2.variables["encoder/conv1/weight"].shape == (512, 80, 3)
    k_bias = ct2.variables["encoder/layer_0/self_attention/linear_0/bias"][512:1024]
    assert not k_bias.any()  # what Hugging Face cannot hold is zero: dropping it is exact
    model = load_hf_whisper(base_dir)
    c = model.config
    assert (c.d_model, c.encoder_layers, c.decoder_layers, c.encoder_attention_heads) == (512, 6, 6, 8)
    assert (c.vocab_size, c.num_mel_bins, c.max_source_positions) == (51865, 80, 1500)
    positions = model.model.encoder.embed_positions.weight
    assert torch.allclose(positions, sinusoids(1500, 512), atol=2e-3)  # float16 of Whisper's sinusoids
    assert model.proj_out.weight.data_ptr() == model.model.decoder.embed_tokens.weight.data_ptr()  # tied
    q = model.model.decoder.layers[2].encoder_attn.q_proj.weight
    assert np.array_equal(
        q.detach().numpy(), ct2.variables["decoder/layer_2/attention/linear_0/weight"].astype(np.float32)
    )


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def test_hears_a_clip_as_the_stock_model(base_dir: Path) -> None:
    torch.set_num_threads(1)
    pcm = VOICES["piper-joe"].speak(TEXT, 16000)
    audio = pcm.astype(np.float32) / 32768.0
    stock = FasterWhisperASR(str(base_dir), ASRConfig(cpu_threads=1)).transcribe(audio).text
    model = load_hf_whisper(base_dir)
    set_window(model, 10.0)
    batcher = Batcher(base_dir, model.config.num_mel_bins)
    mel = torch.from_numpy(batcher.mel(audio))[None]
    tokens = greedy_tokens(model, mel, batcher.sot)
    heard = Tokenizer.from_file(str(base_dir / "tokenizer.json")).decode(tokens)
    assert _words(heard) == _words(stock) == _words(TEXT)
