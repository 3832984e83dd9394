"""Fine-tune Whisper base on synthetic phone-line speech of the shop's utterances and numbers.

Why: the stock model hears clean read speech; our callers come through μ-law, GSM and AMR-NB with babble or
street noise and frames lost, and say order numbers the way people do ("double five oh three eight", which
stock Whisper writes "005038"). So each training clip is a shop sentence or a spoken number, said by a
TUNED voice family only (piper, espeak-ng: flite and festival stay held out for the benchmark), sent through
`voicebot.line.simulate` (5-25 dB SNR, 0-3 % loss) and brought back to 16 kHz as the backend hears it.

Choices, each for the reader downstream:
- Targets: sentences as Whisper writes them; digit strings as spaced figures in the groups they were said
  in, "oh" written 0 and "double"/"triple" kept as words: "4 5 7, double 2 9". That is the form the slot
  grammars' prompts already ask for ("The number is 3 8 1, double 0 6.", voicebot/nlu/grammar.py), every
  digit is its own token, and `normalise.spoken_digits` / `digits.digit_candidates` read it literally (no
  "00" to second-guess). Amounts stay Whisper's "$49.99".
- 10 s encoder windows: our backend encodes max(min_window_s=10, clip + 1.5 s) (faster_whisper_backend
  `features`), so we train on exactly that: faster-whisper's own mel of the clip zero-padded to 10 s, and the
  encoder's (fixed, sinusoidal) position table sliced to 500 positions, as CTranslate2 does with a short input
  (`whisper_ct2.set_window`). Padding to 30 s would cost 3x the encoder time for positions we never use.
  Clips longer than 8.5 s are dropped so that every batch has the same shape.
- Some number clips carry the slot prompt (`<|startofprev|>` + the grammar's example), so that prompting, as
  the dialogue does, keeps working after fine-tuning. Loss is on the transcript and end token only.

`--smoke` proves the pipeline (about 40 clips, 20 steps, export, transcribe); a real run is sized in README.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from faster_whisper.feature_extractor import FeatureExtractor
from tokenizers import Tokenizer

from models.voices import Voice, voices
from models.whisper_ct2 import export_ct2, load_hf_whisper, save_hf_dir, set_window
from voicebot.audio import resample, to_float
from voicebot.domain.nlu_spec import load_nlu_spec, parse_markup
from voicebot.line import LineConfig, simulate
from voicebot.nlu.grammar import GRAMMARS
from voicebot.nlu.normalise import spoken_digits
from voicebot.tts import EspeakTTS, PiperTTS

CACHE = Path("~/.cache/voicebot").expanduser()
RATE, WINDOW_S, MAX_CLIP_S = 16_000, 10.0, 8.5
DIGIT_ENTITIES = {"order_id", "invoice_id", "phone"}
ONES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
TEENS = (
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
)
TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
EXTRA_VOICES = (  # more talkers of the tuned families: espeak-ng dialects, variants, paces; noisier Piper
    Voice("piper-joe-fast-var", "piper", lambda: PiperTTS(None, length_scale=0.9, variation=0.8)),
    Voice("piper-joe-var", "piper", lambda: PiperTTS(None, length_scale=1.05, variation=0.8)),
    *(
        Voice(f"espeak-{v}", "espeak-ng", lambda v=v, s=s: EspeakTTS(v, length_scale=s))  # type: ignore[misc]
        for v, s in (
            ("en-gb-scotland", 1.0),
            ("en-gb-x-rp+f3", 1.1),
            ("en-029", 1.0),
            ("en-us+m5", 0.9),
            ("en-gb-x-gbcwmd+f2", 1.15),
            ("en-us+f4", 1.0),
        )
    ),
)


@dataclass
class Clip:
    audio: np.ndarray  # float32, 16 kHz, after the line
    text: str  # the target transcript
    prompt: str | None
    voice: str
    line: str


def cardinal(n: int) -> str:
    """0..9999 in words, as a caller says an amount ("forty nine")."""
    if n < 10:
        return ONES[n]
    if n < 20:
        return TEENS[n - 10]
    if n < 100:
        return TENS[n // 10] + ("" if n % 10 == 0 else " " + ONES[n % 10])
    if n < 1000:
        rest = n % 100
        return f"{ONES[n // 100]} hundred" + (f" and {cardinal(rest)}" if rest else "")
    rest = n % 1000
    return f"{cardinal(n // 1000)} thousand" + (f" {cardinal(rest)}" if rest else "")


def read_digits(digits: str, rng: random.Random) -> tuple[str, str]:
    """One way a caller says `digits`, and its target: groups (a pause, written ", "), "oh" or "zero",
    runs said "double"/"triple" or one by one ("550381": "double five oh, three eight one", written
    "double 5 0, 3 8 1")."""
    n = len(digits)
    sizes = rng.choice([[n], [n], [3, n - 3], [2] * (n // 2) + [n % 2]] if n > 4 else [[n]])
    sizes = [s for s in sizes if s > 0]
    zero = rng.choice(["oh", "oh", "zero"])
    said, written, at = [], [], 0
    for size in sizes:
        group, words, figures, i = digits[at : at + size], [], [], 0
        at += size
        while i < len(group):
            run = len(group[i:]) - len(group[i:].lstrip(group[i]))
            word = zero if group[i] == "0" else ONES[int(group[i])]
            if run >= 2 and rng.random() < 0.6:
                k = 3 if run >= 3 and rng.random() < 0.5 else 2
                words.append(f"{'double' if k == 2 else 'triple'} {word}")
                figures.append(f"{'double' if k == 2 else 'triple'} {group[i]}")
                i += k
            else:
                words.append(word)
                figures.append(group[i])
                i += 1
        said.append(" ".join(words))
        written.append(" ".join(figures))
    return ", ".join(said), ", ".join(written)


def _spoken_target(text: str, spans: list[tuple[str, int, int]], rng: random.Random) -> tuple[str, str]:
    """Replace each digit-string entity by a spoken reading (for the TTS) and its figures (for the target)."""
    said, target, at = "", "", 0
    for entity, start, end in spans:
        value = spoken_digits(text[start:end]) if entity in DIGIT_ENTITIES else None
        said, target = said + text[at:start], target + text[at:start]
        if value:
            s, t = read_digits(value, rng)
            said, target = said + s, target + t
        else:
            said, target = said + text[start:end], target + text[start:end]
        at = end
    return said + text[at:], target + text[at:]


QUESTION = re.compile(r"(can|could|how|what|where|when|why|is|are|do|does|will|who)('s)?,?")


def whisper_style(text: str) -> str:
    """nlu.yaml writes some examples the way callers speak ("hi is this the shop"); Whisper writes a capital
    and an end mark, and one style of target keeps the model from learning to drop them at random."""
    if not text.strip() or text.strip()[0].isupper():
        return text.strip()
    text = re.sub(r"\bi\b", "I", text.strip())
    text = text[0].upper() + text[1:]
    if text[-1] not in ".?!":
        text += "?" if QUESTION.fullmatch(text.split()[0].lower()) else "."
    return text


def domain_utterances(domain: Path, rng: random.Random) -> list[tuple[str, str, str | None]]:
    """(spoken, target, prompt) for every example of the domain's nlu.yaml, entity markup stripped."""
    spec, _ = load_nlu_spec(domain)
    out: list[tuple[str, str, str | None]] = []
    for examples in spec.intents.values():
        for example in examples:
            text, spans = parse_markup(example)
            spoken, target = _spoken_target(text, spans, rng)
            out.append((spoken, whisper_style(target), None))
    return out


def number_utterance(rng: random.Random) -> tuple[str, str, str | None]:
    """An order/invoice/phone number or an amount, in a carrier phrase a caller would use."""
    kind = rng.choice(["order", "order", "invoice", "phone", "amount"])
    if kind == "amount":
        dollars, cents = rng.randint(1, 999), rng.choice([0, 0, rng.randint(1, 99)])
        said = f"{cardinal(dollars)} dollars" + (f" and {cardinal(cents)} cents" if cents else "")
        written = f"${dollars}" + (f".{cents:02d}" if cents else "")
        carrier = rng.choice(["It was {}.", "The refund should be {}.", "I paid {}.", "{}."])
        return carrier.format(said), carrier.format(written), rng.choice([None, GRAMMARS["amount"].prompt])
    length = {"order": 6, "invoice": 5, "phone": 10}[kind]
    digits = "".join(rng.choice("0123456789") for _ in range(length))
    if kind == "phone":
        pairs = [read_digits(g, rng) for g in (digits[:3], digits[3:6], digits[6:])]
        said, written = ", ".join(p[0] for p in pairs), ", ".join(p[1] for p in pairs)
    else:
        said, written = read_digits(digits, rng)
    carrier = rng.choice(
        [
            "{}",
            "It's {}.",
            "My {k} number is {}.",
            "Um, it's {}.",
            "Yeah, the {k} number is {}.",
            "{}, I think.",
        ]
    )
    prompt = GRAMMARS["phone" if kind == "phone" else "digits"].prompt if rng.random() < 0.3 else None
    return carrier.format(said, k=kind), carrier.format(written, k=kind), prompt


def random_line(rng: random.Random, clean_share: float) -> LineConfig:
    """A phone line: μ-law, GSM or AMR-NB into a G.711 carrier, noise at 5-25 dB SNR, 0-3 % frames lost."""
    codec = rng.choice([("ulaw",), ("gsm", "ulaw"), ("amr-nb", "ulaw")])
    noise = "none" if rng.random() < clean_share else rng.choice(["babble", "street", "office"])
    return LineConfig(
        codec=codec,  # type: ignore[arg-type]
        amr_kbps=rng.choice([12.2, 7.4, 5.9]),
        noise=noise,  # type: ignore[arg-type]
        snr_db=round(rng.uniform(5.0, 25.0), 1),
        loss_pct=round(rng.choice([0.0, rng.uniform(0.0, 3.0)]), 2),
        seed=rng.randrange(1 << 30),
    )


def make_clips(n: int, seed: int, domain: Path, clean_share: float = 0.1) -> list[Clip]:
    """`n` clips, 60 % domain sentences and 40 % numbers, each by a random tuned voice over a random line."""
    rng = random.Random(seed)
    talkers = [*voices(held_out=False), *EXTRA_VOICES]
    if any(v.held_out for v in talkers):
        raise AssertionError("a held-out voice family is in the training voices")
    sentences = domain_utterances(domain, rng)
    clips: list[Clip] = []
    while len(clips) < n:
        spoken, target, prompt = rng.choice(sentences) if rng.random() < 0.6 else number_utterance(rng)
        voice, line = rng.choice(talkers), random_line(rng, clean_share)
        try:
            pcm = voice.speak(spoken, 8000)
        except Exception as exc:  # a missing espeak variant: skip that talker, not the run
            print(f"  voice {voice.name} failed ({exc}); dropped")
            talkers.remove(voice)
            continue
        audio = to_float(resample(simulate(pcm, 8000, line), 8000, RATE)).astype(np.float32)
        if audio.size / RATE <= MAX_CLIP_S:
            clips.append(Clip(audio, target, prompt, voice.name, line.describe()))
    return clips


def save_clips(clips: list[Clip], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = [{"text": c.text, "prompt": c.prompt, "voice": c.voice, "line": c.line} for c in clips]
    arrays: dict[str, object] = {  # int16: half the disk of float32 (20k clips: about 2.5 GB)
        f"a{i}": np.clip(np.rint(c.audio * 32767.0), -32768, 32767).astype(np.int16)
        for i, c in enumerate(clips)
    }
    np.savez_compressed(path, meta=np.array(json.dumps(meta)), **arrays)  # type: ignore[arg-type]


def load_clips(path: Path) -> list[Clip]:
    with np.load(path) as data:
        meta = json.loads(str(data["meta"]))
        return [Clip(data[f"a{i}"].astype(np.float32) / 32767.0, **m) for i, m in enumerate(meta)]


class Batcher:
    """Clips → (mel [B, 80, 1000], decoder inputs, labels with -100 on the prompt and padding)."""

    def __init__(self, model_dir: Path, mels: int) -> None:
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.features = FeatureExtractor(feature_size=mels)

        def t(token: str) -> int:
            found = self.tokenizer.token_to_id(token)
            if found is None:
                raise ValueError(f"{token} is not in {model_dir / 'tokenizer.json'}")
            return int(found)

        self.prev, self.eot = t("<|startofprev|>"), t("<|endoftext|>")
        self.sot = [t("<|startoftranscript|>"), t("<|en|>"), t("<|transcribe|>"), t("<|notimestamps|>")]

    def mel(self, audio: np.ndarray) -> np.ndarray:
        padded = np.zeros(int(WINDOW_S * RATE), np.float32)
        padded[: audio.size] = audio[: padded.size]
        mel: np.ndarray = self.features(padded, padding=0)
        return mel[:, : int(WINDOW_S * 100)]  # as the backend's `features`

    def __call__(self, clips: list[Clip]) -> dict[str, torch.Tensor]:
        rows = []
        for c in clips:
            prefix = (
                [self.prev, *self.tokenizer.encode(" " + c.prompt, add_special_tokens=False).ids]
                if c.prompt
                else []
            )
            prefix += self.sot
            text = [*self.tokenizer.encode(" " + c.text.strip(), add_special_tokens=False).ids, self.eot]
            seq = prefix + text
            rows.append((seq[:-1], [-100] * (len(prefix) - 1) + text))
        width = max(len(r[0]) for r in rows)
        inputs = torch.full((len(rows), width), self.eot, dtype=torch.long)
        labels = torch.full((len(rows), width), -100, dtype=torch.long)
        for i, (x, y) in enumerate(rows):
            inputs[i, : len(x)], labels[i, : len(y)] = torch.tensor(x), torch.tensor(y)
        mel = torch.from_numpy(np.stack([self.mel(c.audio) for c in clips]))
        return {"input_features": mel, "decoder_input_ids": inputs, "labels": labels}


def probe_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> float:
    model.eval()
    with torch.no_grad():
        loss = float(model(**batch).loss)
    model.train()
    return loss


def train(args: argparse.Namespace) -> Path:
    """Fine-tune, checkpoint every `--save-every` steps, export the last step to CTranslate2 int8."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    stock, out = Path(args.model).expanduser(), Path(args.out).expanduser()
    data = Path(args.data).expanduser() if args.data else out / f"clips-{args.clips}-{args.seed}.npz"
    if data.is_file():
        clips = load_clips(data)
    else:
        start = time.perf_counter()
        clips = make_clips(args.clips, args.seed, Path(args.domain))
        save_clips(clips, data)
        print(f"{len(clips)} clips synthesised in {time.perf_counter() - start:.0f} s → {data}")
    device = torch.device(args.device)
    model = load_hf_whisper(stock)
    set_window(model, WINDOW_S)
    model.to(device)  # type: ignore[arg-type]
    if args.freeze_encoder:
        model.model.encoder.requires_grad_(False)
    batcher = Batcher(stock, model.config.num_mel_bins)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    warmup = max(1, args.steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (args.steps - s) / max(1, args.steps - warmup)))
    )
    rng = random.Random(args.seed)
    probe = {k: t.to(device) for k, t in batcher(clips[: args.batch]).items()}
    before = probe_loss(model, probe)
    print(f"probe batch loss before: {before:.4f} ({sum(p.numel() for p in params) / 1e6:.1f} M trained)")
    model.train()
    order: list[int] = []
    times = []
    for step in range(1, args.steps + 1):
        if len(order) < args.batch:
            order += rng.sample(range(len(clips)), len(clips))
        chosen, order = order[: args.batch], order[args.batch :]
        start = time.perf_counter()
        batch = {k: t.to(device) for k, t in batcher([clips[i] for i in chosen]).items()}
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
        if step % args.log_every == 0 or step == args.steps:
            print(f"step {step:5d}  loss {loss.item():.4f}  {times[-1]:.2f} s/step", flush=True)
        if args.save_every and step % args.save_every == 0 and step < args.steps:
            save_hf_dir(model, stock, out / "checkpoints" / f"step-{step}")
    after = probe_loss(model, probe)
    steady = times[1:] or times
    report = {
        "probe_loss_before": before,
        "probe_loss_after": after,
        "s_per_step": sum(steady) / len(steady),
        "batch": args.batch,
        "threads": args.threads,
        "steps": args.steps,
        "clips": len(clips),
        "freeze_encoder": args.freeze_encoder,
        "device": args.device,
    }
    print(f"probe batch loss after: {after:.4f}; {report['s_per_step']:.2f} s/step (first step excluded)")
    hf_dir = save_hf_dir(model.cpu(), stock, out / "checkpoints" / f"step-{args.steps}")
    start = time.perf_counter()
    export_ct2(hf_dir, Path(args.export).expanduser(), "int8")
    report["export_s"] = time.perf_counter() - start
    print(f"exported int8 to {args.export} in {report['export_s']:.1f} s")
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return Path(args.export).expanduser()


def check_export(export: Path, stock: Path, clips: list[Clip]) -> None:
    """The exported directory loads through the project's own backend and transcribes; stock beside it."""
    from voicebot.asr.faster_whisper_backend import FasterWhisperASR
    from voicebot.config import ASRConfig

    for name, path in (("stock", stock), ("tuned", export)):
        asr = FasterWhisperASR(str(path), ASRConfig(model=str(path), cpu_threads=1))
        for c in clips:
            print(f"  {name:5s} {asr.transcribe(c.audio, prompt=c.prompt).text!r:60s} target {c.text!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m models.finetune_whisper", description=__doc__.split("\n")[0] if __doc__ else None
    )
    parser.add_argument("--smoke", action="store_true", help="40 clips, 20 steps, export, transcribe")
    parser.add_argument(
        "--model", default=str(CACHE / "whisper-base-ct2"), help="the stock CTranslate2 Whisper"
    )
    parser.add_argument("--domain", default="domains/shop")
    parser.add_argument("--clips", type=int, default=20_000)
    parser.add_argument("--data", help="a clips .npz (default: made once under --out and reused)")
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--freeze-encoder", action="store_true", help="train the decoder only (cheaper)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda on a GPU machine")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--save-every", type=int, default=500)
    parser.add_argument("--out", default=str(CACHE / "finetune-whisper"), help="clips, checkpoints, report")
    parser.add_argument("--export", default=str(CACHE / "whisper-base-phone-ct2"), help="the int8 result")
    args = parser.parse_args(argv)
    if args.smoke:
        args.clips, args.steps, args.batch, args.log_every, args.save_every = 40, 20, 4, 1, 0
        args.out = str(Path(args.out).expanduser().with_name("finetune-whisper-smoke"))
        args.export = str(CACHE / "whisper-base-phone-smoke-ct2")
    export = train(args)
    if args.smoke:
        out = Path(args.out)
        check_export(
            export, Path(args.model).expanduser(), load_clips(out / f"clips-{args.clips}-{args.seed}.npz")[:3]
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
