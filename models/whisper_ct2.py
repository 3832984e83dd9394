"""CTranslate2 Whisper weights ⇄ a Hugging Face `WhisperForConditionalGeneration`.

Why: the only Whisper base on this machine is the CTranslate2 conversion the registry packages ship
(`voicebot models` joins it into ~/.cache/voicebot/whisper-base-ct2/), and fine-tuning needs PyTorch. So we
read CTranslate2's own `model.bin` (the layout of `ModelSpec._serialize` / `Model::load`: binary version,
spec name and revision, then each variable's name, rank, shape, dtype and raw bytes, then aliases) and invert
the names of its Transformers Whisper loader (`WhisperLoader` in ctranslate2/converters/transformers.py).
Going back is CTranslate2's own `TransformersConverter` over a saved Hugging Face directory, so an exported
model is exactly what a stock conversion would be.

Two details make the inversion exact rather than close:
- the loader fuses q/k/v (self-attention) and k/v (cross-attention) into one linear; Hugging Face's k_proj has
  no bias, so the converter wrote zeros there, and we drop them (a key bias would not change the softmax);
- `decoder/projection/weight` is an alias of the token embeddings (tied), as in Hugging Face.

`python -m models.whisper_ct2 roundtrip` proves it: stock → HF → CTranslate2 float16 gives the same variables
bit for bit, and int8 transcribes Piper clips to the same text as the stock model.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import (
    GenerationConfig,
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperForConditionalGeneration,
    WhisperTokenizer,
)

# CTranslate2's DataType enum (include/ctranslate2/types.h): float32, int8, int16, int32, float16, bfloat16.
_DTYPES: dict[int, str] = {0: "float32", 1: "int8", 2: "int16", 3: "int32", 4: "float16", 5: "bfloat16"}
TOKENIZER_FILES = ("tokenizer.json", "preprocessor_config.json")
"""What faster-whisper reads beside model.bin and config.json (the feature extractor's mel count)."""
FRAMES_PER_POSITION = 2  # mel frames per encoder position (conv2 has stride 2)


@dataclass
class CT2Model:
    """A parsed model.bin: float32 arrays by CTranslate2 name, aliases resolved, int8/int16 dequantized."""

    spec: str
    revision: int
    variables: dict[str, np.ndarray]
    saved_dtypes: dict[str, str]


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def take(self, fmt: str) -> int:
        (value,) = struct.unpack_from("<" + fmt, self.data, self.at)
        self.at += struct.calcsize("<" + fmt)
        return int(value)

    def string(self) -> str:
        n = self.take("H")  # length including the terminating NUL
        text = self.data[self.at : self.at + n - 1].decode("utf-8")
        self.at += n
        return text

    def raw(self, n: int) -> bytes:
        chunk = self.data[self.at : self.at + n]
        self.at += n
        return chunk


def _array(raw: bytes, dtype: str, shape: list[int]) -> np.ndarray:
    if dtype == "bfloat16":  # numpy has none: the top half of a float32
        wide = np.frombuffer(raw, np.uint16).astype(np.uint32) << 16
        return wide.view(np.float32).reshape(shape)
    return np.frombuffer(raw, np.dtype(dtype)).reshape(shape)


def read_model_bin(path: Path) -> CT2Model:
    """Parse a CTranslate2 model.bin (binary versions 4-6: each variable carries a dtype id)."""
    r = _Reader(path.read_bytes())
    version = r.take("I")
    if not 4 <= version <= 6:
        raise ValueError(f"{path}: CTranslate2 binary version {version} is not supported (4-6)")
    spec, revision = r.string(), r.take("I")
    raw: dict[str, np.ndarray] = {}
    dtypes: dict[str, str] = {}
    for _ in range(r.take("I")):
        name = r.string()
        shape = [r.take("I") for _ in range(r.take("B"))]
        dtype = _DTYPES[r.take("B")]
        raw[name] = _array(r.raw(r.take("I")), dtype, shape)
        dtypes[name] = dtype
    for _ in range(r.take("I")):
        alias, target = r.string(), r.string()
        raw[alias] = raw[target]
        dtypes[alias] = dtypes[target]
        if target + "_scale" in raw:  # as Model::load: the alias shares its quantization scale
            raw[alias + "_scale"] = raw[target + "_scale"]
    if r.at != len(r.data):
        raise ValueError(f"{path}: {len(r.data) - r.at} bytes left after the aliases: not a model.bin")
    variables: dict[str, np.ndarray] = {}
    for name, value in raw.items():
        if name.endswith("_scale") and name[: -len("_scale")] in raw:
            continue
        scale = raw.get(name + "_scale")
        if scale is not None and value.dtype in (np.int8, np.int16):
            # int8: value = rint(w * 127 / amax(row)), one scale per output row; int16: one scale in all
            scale = scale.astype(np.float32)
            value = value.astype(np.float32) / (scale[:, None] if scale.ndim == 1 else scale)
        variables[name] = value
    return CT2Model(spec, revision, variables, dtypes)


def _count(variables: dict[str, np.ndarray], prefix: str) -> int:
    return len({m.group(1) for n in variables if (m := re.match(rf"{prefix}/layer_(\d+)/", n))})


def _token_id(tokenizer_json: dict[str, Any], token: str) -> int:
    for added in tokenizer_json["added_tokens"]:
        if added["content"] == token:
            return int(added["id"])
    raise KeyError(f"{token} is not in tokenizer.json")


def hf_config(ct2_dir: Path, variables: dict[str, np.ndarray]) -> WhisperConfig:
    """A `WhisperConfig` whose sizes come from the weights and whose special ids from the tokenizer."""
    v = variables
    vocab, d_model = v["decoder/embeddings/weight"].shape
    tokenizer = json.loads((ct2_dir / "tokenizer.json").read_text())
    ct2_config = json.loads((ct2_dir / "config.json").read_text())
    eot = _token_id(tokenizer, "<|endoftext|>")
    return WhisperConfig(
        vocab_size=int(vocab),
        num_mel_bins=int(v["encoder/conv1/weight"].shape[1]),
        d_model=int(d_model),
        encoder_layers=_count(v, "encoder"),
        decoder_layers=_count(v, "decoder"),
        encoder_attention_heads=int(v["encoder/num_heads"]),
        decoder_attention_heads=int(v["decoder/num_heads"]),
        encoder_ffn_dim=int(v["encoder/layer_0/ffn/linear_0/weight"].shape[0]),
        decoder_ffn_dim=int(v["decoder/layer_0/ffn/linear_0/weight"].shape[0]),
        max_source_positions=int(v["encoder/position_encodings/encodings"].shape[0]),
        max_target_positions=int(v["decoder/position_encodings/encodings"].shape[0]),
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        decoder_start_token_id=_token_id(tokenizer, "<|startoftranscript|>"),
        suppress_tokens=ct2_config.get("suppress_ids"),
        begin_suppress_tokens=ct2_config.get("suppress_ids_begin"),
        tie_word_embeddings=True,
    )


def _attention(sd: dict[str, np.ndarray], v: dict[str, np.ndarray], ct2: str, hf: str, fused: bool) -> None:
    """CT2 attention → HF q/k/v/out projections. Self-attention: linear_0 = [q;k;v], linear_1 = out;
    cross-attention: linear_0 = q, linear_1 = [k;v], linear_2 = out."""
    d = v[f"{ct2}/layer_norm/gamma"].shape[0]
    if fused:
        w, b = v[f"{ct2}/linear_0/weight"], v[f"{ct2}/linear_0/bias"]
        parts, out = {"q": 0, "k": 1, "v": 2}, 1
    else:
        w = np.concatenate([v[f"{ct2}/linear_0/weight"], v[f"{ct2}/linear_1/weight"]])
        b = np.concatenate([v[f"{ct2}/linear_0/bias"], v[f"{ct2}/linear_1/bias"]])
        parts, out = {"q": 0, "k": 1, "v": 2}, 2
    for name, i in parts.items():
        sd[f"{hf}.{name}_proj.weight"] = w[i * d : (i + 1) * d]
        if name != "k":  # Hugging Face's k_proj has no bias (the converter wrote zeros)
            sd[f"{hf}.{name}_proj.bias"] = b[i * d : (i + 1) * d]
    sd[f"{hf}.out_proj.weight"] = v[f"{ct2}/linear_{out}/weight"]
    sd[f"{hf}.out_proj.bias"] = v[f"{ct2}/linear_{out}/bias"]


def _norm(sd: dict[str, np.ndarray], v: dict[str, np.ndarray], ct2: str, hf: str) -> None:
    sd[f"{hf}.weight"], sd[f"{hf}.bias"] = v[f"{ct2}/gamma"], v[f"{ct2}/beta"]


def _linear(sd: dict[str, np.ndarray], v: dict[str, np.ndarray], ct2: str, hf: str) -> None:
    sd[f"{hf}.weight"], sd[f"{hf}.bias"] = v[f"{ct2}/weight"], v[f"{ct2}/bias"]


def hf_state_dict(v: dict[str, np.ndarray], config: WhisperConfig) -> dict[str, torch.Tensor]:
    """The inverse of `WhisperLoader.get_model_spec`: CTranslate2 names → Hugging Face Whisper names."""
    sd: dict[str, np.ndarray] = {}
    for side in ("encoder", "decoder"):
        hf = f"model.{side}"
        layers = config.encoder_layers if side == "encoder" else config.decoder_layers
        for i in range(layers):
            ct2, hl = f"{side}/layer_{i}", f"{hf}.layers.{i}"
            _attention(sd, v, f"{ct2}/self_attention", f"{hl}.self_attn", fused=True)
            _norm(sd, v, f"{ct2}/self_attention/layer_norm", f"{hl}.self_attn_layer_norm")
            if side == "decoder":
                _attention(sd, v, f"{ct2}/attention", f"{hl}.encoder_attn", fused=False)
                _norm(sd, v, f"{ct2}/attention/layer_norm", f"{hl}.encoder_attn_layer_norm")
            _linear(sd, v, f"{ct2}/ffn/linear_0", f"{hl}.fc1")
            _linear(sd, v, f"{ct2}/ffn/linear_1", f"{hl}.fc2")
            _norm(sd, v, f"{ct2}/ffn/layer_norm", f"{hl}.final_layer_norm")
        _norm(sd, v, f"{side}/layer_norm", f"{hf}.layer_norm")
        sd[f"{hf}.embed_positions.weight"] = v[f"{side}/position_encodings/encodings"]
    for conv in ("conv1", "conv2"):
        _linear(sd, v, f"encoder/{conv}", f"model.encoder.{conv}")
    sd["model.decoder.embed_tokens.weight"] = v["decoder/embeddings/weight"]
    sd["proj_out.weight"] = v["decoder/projection/weight"]
    return {k: torch.from_numpy(np.array(a, dtype=np.float32)) for k, a in sd.items()}


def load_hf_whisper(ct2_dir: Path) -> WhisperForConditionalGeneration:
    """The CTranslate2 Whisper in `ct2_dir` as a float32 Hugging Face model (every weight accounted for)."""
    ct2 = read_model_bin(ct2_dir / "model.bin")
    if ct2.spec != "WhisperSpec":
        raise ValueError(f"{ct2_dir}: a {ct2.spec}, not a Whisper model")
    config = hf_config(ct2_dir, ct2.variables)
    model = WhisperForConditionalGeneration(config)
    missing, unexpected = model.load_state_dict(hf_state_dict(ct2.variables, config), strict=False)
    if unexpected or set(missing) - {"proj_out.weight"}:  # proj_out is tied to the embeddings
        raise ValueError(f"weights do not fit: missing {missing}, unexpected {unexpected}")
    model.generation_config = generation_config(ct2_dir, config)
    model.eval()  # type: ignore[no-untyped-call]
    return model


def generation_config(ct2_dir: Path, config: WhisperConfig) -> GenerationConfig:
    """What `WhisperLoader.set_config` reads back into CTranslate2's config.json (suppressed ids, alignment
    heads, language ids): written beside a saved model so that an export keeps the stock model's."""
    ct2_config = json.loads((ct2_dir / "config.json").read_text())
    tokenizer = json.loads((ct2_dir / "tokenizer.json").read_text())
    names = {int(t["id"]): t["content"] for t in tokenizer["added_tokens"]}
    return GenerationConfig(  # type: ignore[no-untyped-call]
        decoder_start_token_id=config.decoder_start_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
        bos_token_id=config.bos_token_id,
        suppress_tokens=ct2_config["suppress_ids"],
        begin_suppress_tokens=ct2_config["suppress_ids_begin"],
        alignment_heads=ct2_config["alignment_heads"],
        lang_to_id={names[i]: i for i in ct2_config["lang_ids"]},
        max_length=config.max_target_positions,
    )


def set_window(model: WhisperForConditionalGeneration, seconds: float) -> None:
    """Encode `seconds` of audio instead of 30: keep the first positions of the (fixed, sinusoidal) encoder
    position table, which is what CTranslate2 does with a shorter mel input and so what our backend runs.
    The full table is kept aside (a buffer that is never saved), so `seconds=30` restores it exactly."""
    positions = round(seconds * 100) // FRAMES_PER_POSITION
    encoder = model.model.encoder
    table = encoder.embed_positions.weight.data
    full = getattr(encoder, "full_positions", None)
    if full is None:
        encoder.register_buffer("full_positions", table.clone(), persistent=False)
        full = table
    if positions > full.shape[0]:
        raise ValueError(f"a {seconds} s window needs {positions} positions; the model has {full.shape[0]}")
    encoder.embed_positions = torch.nn.Embedding(
        positions, full.shape[1], device=full.device, dtype=full.dtype
    )
    encoder.embed_positions.weight.data.copy_(full[:positions])
    encoder.embed_positions.requires_grad_(False)
    encoder.max_source_positions = positions
    encoder.config.max_source_positions = positions
    model.config.max_source_positions = positions


@torch.no_grad()
def greedy_tokens(
    model: WhisperForConditionalGeneration, mel: torch.Tensor, prefix: list[int], max_tokens: int = 96
) -> list[int]:
    """Greedy decode of one mel window [1, mels, frames] after `prefix` (sot … notimestamps), with the
    suppression CTranslate2 applies: the config's suppressed ids, blank/eot at the first step, timestamps."""
    config = model.config
    encoded = model.model.encoder(mel).last_hidden_state
    suppress = torch.tensor(config.suppress_tokens or [], dtype=torch.long)
    begin = torch.tensor(config.begin_suppress_tokens or [], dtype=torch.long)
    seq, out = list(prefix), []
    for step in range(max_tokens):
        logits = model(encoder_outputs=(encoded,), decoder_input_ids=torch.tensor([seq])).logits[0, -1]
        logits[suppress] = -torch.inf
        logits[max(prefix) + 1 :] = -torch.inf  # the timestamp tokens, after <|notimestamps|>
        if step == 0:
            logits[begin] = -torch.inf
        token = int(logits.argmax())
        if token == config.eos_token_id:
            break
        seq.append(token)
        out.append(token)
    return out


def save_hf_dir(model: WhisperForConditionalGeneration, ct2_dir: Path, out: Path) -> Path:
    """A Hugging Face directory that `TransformersConverter` reads offline: weights (the full 30 s position
    table), generation config, tokenizer (the CT2 dir's tokenizer.json) and feature extractor."""
    out.mkdir(parents=True, exist_ok=True)
    window_s = model.config.max_source_positions * FRAMES_PER_POSITION / 100
    if window_s != 30.0:
        set_window(model, 30.0)
    try:
        model.save_pretrained(out)
    finally:
        if window_s != 30.0:
            set_window(model, window_s)
    tokenizer_dir = Path(tempfile.mkdtemp(prefix="whisper-tok-"))
    try:
        shutil.copyfile(ct2_dir / "tokenizer.json", tokenizer_dir / "tokenizer.json")
        (tokenizer_dir / "tokenizer_config.json").write_text(
            json.dumps({"tokenizer_class": "WhisperTokenizer"})
        )
        WhisperTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True).save_pretrained(out)
    finally:
        shutil.rmtree(tokenizer_dir, ignore_errors=True)
    shutil.copyfile(ct2_dir / "tokenizer.json", out / "tokenizer.json")  # the stock file, byte for byte
    extractor = WhisperFeatureExtractor(feature_size=model.config.num_mel_bins)  # type: ignore[no-untyped-call]
    extractor.save_pretrained(out)
    return out


def export_ct2(hf_dir: Path, out: Path, quantization: str = "int8") -> Path:
    """A saved HF directory → a CTranslate2 directory faster-whisper (and `asr.model: <dir>`) loads."""
    from ctranslate2.converters import TransformersConverter

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    converter = TransformersConverter(str(hf_dir), copy_files=list(TOKENIZER_FILES))
    converter.convert(str(out), quantization=quantization, force=True)
    return out


def compare_bins(a: Path, b: Path) -> tuple[list[str], list[str]]:
    """(variables in both whose dtype or bytes differ, variables in only one). A newer converter adds
    scalars an older one did not write (alibi flags), which the second list shows apart."""
    x, y = read_model_bin(a), read_model_bin(b)
    differ = [
        n
        for n in sorted(set(x.variables) & set(y.variables))
        if x.saved_dtypes[n] != y.saved_dtypes[n] or not np.array_equal(x.variables[n], y.variables[n])
    ]
    return differ, sorted(set(x.variables) ^ set(y.variables))


def _roundtrip(args: argparse.Namespace) -> int:
    from faster_whisper import WhisperModel

    from models.voices import VOICES

    torch.set_num_threads(args.threads)
    stock = Path(args.model).expanduser()
    work = Path(tempfile.mkdtemp(prefix="whisper-roundtrip-"))
    try:
        model = load_hf_whisper(stock)
        hf_dir = save_hf_dir(model, stock, work / "hf")
        export_ct2(hf_dir, work / "f16", "float16")
        diff, extra = compare_bins(stock / "model.bin", work / "f16" / "model.bin")
        print(
            f"float16 round trip: {len(diff)} shared variables differ {diff[:5]}; in one file only: {extra}"
        )
        export_ct2(hf_dir, work / "int8", "int8")
        same = not diff
        models = {
            name: WhisperModel(str(path), device="cpu", compute_type="int8", cpu_threads=args.threads)
            for name, path in (("stock", stock), ("roundtrip", work / "int8"))
        }
        for text in args.text:
            audio = VOICES["piper-joe"].speak(text, 16000).astype(np.float32) / 32768.0
            heard = {}
            for name, m in models.items():
                segments, _ = m.transcribe(audio, beam_size=1, language="en", without_timestamps=True)
                heard[name] = " ".join(s.text.strip() for s in segments)
            same &= heard["stock"] == heard["roundtrip"]
            print(f"{'same' if heard['stock'] == heard['roundtrip'] else 'DIFFERENT'}: {heard}")
        return 0 if same else 1
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.whisper_ct2", description="Whisper CT2 ⇄ HF")
    sub = parser.add_subparsers(dest="command", required=True)
    rt = sub.add_parser("roundtrip", help="stock CT2 → HF → CT2: same variables, same transcripts")
    rt.add_argument("--model", default="~/.cache/voicebot/whisper-base-ct2")
    rt.add_argument("--threads", type=int, default=1)
    rt.add_argument("--keep", action="store_true", help="keep the HF and CT2 directories it writes")
    rt.add_argument(
        "--text",
        nargs="+",
        default=[
            "I would like to track my order. The number is four five seven two one nine.",
            "Can I speak to a human agent please?",
            "My invoice number is double five oh three eight.",
        ],
    )
    args = parser.parse_args(argv)
    return int(_roundtrip(args))


if __name__ == "__main__":
    raise SystemExit(main())
