"""Caller audio for the shop's audio conversation tests: each line said by a TTS voice, as a phone hears it.

    python scripts/make_conversation_audio.py            # writes tests/conversations/shop/audio/*.wav

Each line is synthesised with the Piper voice (espeak-ng with `--tts espeak-ng` for a second voice),
resampled to 8 kHz and passed through G.711 μ-law, so the files sound like a phone line. The WAVs are small
test data kept in the repository; rerun this after changing a line.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from voicebot.audio import ulaw_decode, ulaw_encode, write_wav
from voicebot.config import TTSConfig
from voicebot.tts import make_tts

RATE = 8_000
OUT = Path(__file__).resolve().parent.parent / "tests" / "conversations" / "shop" / "audio"
LEAD_MS = 300  # the caller does not start talking the instant the line opens

LINES = {
    "track_where": "Hi, where is my order?",
    "track_number": "It's eight three oh one one two.",
    "thats_all": "No, that's all, thanks.",
    "cancel_457219": "I'd like to cancel order four five seven two one nine.",
    "yes_please": "Yes, please.",
    "agent": "Can I speak to a real person, please?",
    "refund_932017": "I want a refund for order nine three two zero one seven.",
    "yes": "Yes.",
    "invoice_52210": "Can you check invoice five two two one zero?",
    "address_611420": "I need to change the delivery address for order six one one four two zero.",
    "street": "Twenty two Park Lane.",
    "city": "Leeds.",
}


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--tts", default="piper", choices=("piper", "espeak-ng", "flite"))
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    tts = make_tts(TTSConfig(backend=args.tts, cache_size=0))
    args.out.mkdir(parents=True, exist_ok=True)
    lead = np.zeros(RATE * LEAD_MS // 1000, np.int16)
    for name, text in LINES.items():
        pcm = tts.synthesize_at(text, RATE)
        phone = ulaw_decode(ulaw_encode(np.concatenate([lead, pcm])))
        write_wav(args.out / f"{name}.wav", phone, RATE)
        print(f"{name}.wav  {phone.size / RATE:.2f} s  {text}")


if __name__ == "__main__":
    main()
