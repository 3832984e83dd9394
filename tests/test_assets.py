"""The Whisper base join: complete and verified, or not there at all."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from voicebot import assets
from voicebot.assets import MARKER, ModelNotFoundError, is_complete, join_whisper_base, whisper_model_dir


def fake_parts(tmp_path: Path, sizes: tuple[int, ...] = (1000, 777)) -> list[Path]:
    src = tmp_path / "pkg"
    src.mkdir()
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        (src / name).write_text(name)
    parts = []
    for i, size in enumerate(sizes, start=1):
        part = src / f"model.bin.part{i}"
        part.write_bytes(bytes([i]) * size)
        parts.append(part)
    return parts


def test_join_concatenates_in_order_and_marks_complete(tmp_path: Path) -> None:
    parts = fake_parts(tmp_path)
    target = join_whisper_base(tmp_path / "cache", parts)
    data = (target / "model.bin").read_bytes()
    assert data == bytes([1]) * 1000 + bytes([2]) * 777
    assert json.loads((target / MARKER).read_text())["model_bin_bytes"] == 1777
    assert (target / "tokenizer.json").read_text() == "tokenizer.json"
    assert is_complete(target)


def test_join_is_idempotent(tmp_path: Path) -> None:
    parts = fake_parts(tmp_path)
    first = join_whisper_base(tmp_path / "cache", parts)
    stamp = (first / "model.bin").stat().st_mtime_ns
    assert join_whisper_base(tmp_path / "cache", parts) == first
    assert (first / "model.bin").stat().st_mtime_ns == stamp


def test_half_written_join_is_never_used(tmp_path: Path) -> None:
    parts = fake_parts(tmp_path)
    cache = tmp_path / "cache"
    target = cache / "whisper-base-ct2"
    target.mkdir(parents=True)
    (target / "model.bin").write_bytes(b"\x01" * 10)  # a crash mid-copy, no marker
    assert not is_complete(target)
    (target / MARKER).write_text(json.dumps({"model_bin_bytes": 1777}))  # marker but truncated file
    assert not is_complete(target)
    join_whisper_base(cache, parts)
    assert (target / "model.bin").stat().st_size == 1777 and is_complete(target)


def test_failed_join_leaves_nothing_behind(tmp_path: Path) -> None:
    parts = fake_parts(tmp_path)
    (parts[0].parent / "vocabulary.txt").unlink()  # the copy fails part-way
    cache = tmp_path / "cache"
    with pytest.raises(OSError):
        join_whisper_base(cache, parts)
    assert not (cache / "whisper-base-ct2").exists()
    assert [p.name for p in cache.iterdir() if p.name.startswith(".whisper-base-")] == []


def test_concurrent_joins_produce_one_complete_model(tmp_path: Path) -> None:
    parts = fake_parts(tmp_path, sizes=(300_000, 200_000))
    cache = tmp_path / "cache"
    results: list[Path] = []
    threads = [
        threading.Thread(target=lambda: results.append(join_whisper_base(cache, parts))) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1 and is_complete(results[0])
    assert os.path.getsize(results[0] / "model.bin") == 500_000


def test_missing_part_is_a_clear_error(tmp_path: Path) -> None:
    parts = fake_parts(tmp_path)
    parts[1].unlink()
    with pytest.raises(ModelNotFoundError, match="part missing"):
        join_whisper_base(tmp_path / "cache", parts)


def test_model_names_resolve(tmp_path: Path) -> None:
    assert (whisper_model_dir("tiny.en", tmp_path) / "model.bin").is_file()
    with pytest.raises(ModelNotFoundError, match="unknown Whisper model"):
        whisper_model_dir("large-v9", tmp_path)
    assert assets.silero_vad_path().is_file()


def test_real_packaged_base_joins(tmp_path: Path) -> None:
    target = whisper_model_dir("base", tmp_path)
    assert is_complete(target)
    assert (target / "model.bin").stat().st_size == sum(p.stat().st_size for p in assets.base_parts())


def test_smart_turn_from_a_wheel_that_does_not_match_is_refused(tmp_path: Path) -> None:
    """The model is taken out of the pipecat-ai wheel only when it is the file we measured (SHA-256); a
    tampered or different wheel leaves nothing behind in the cache."""
    import zipfile

    from voicebot.assets import SMART_TURN_LICENCE, SMART_TURN_MEMBER, fetch_smart_turn

    wheel = tmp_path / "pipecat_ai-1.14.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(SMART_TURN_MEMBER, b"not the model")
        zf.writestr(SMART_TURN_LICENCE, b"BSD 2-Clause License")
    cache = tmp_path / "cache"
    with pytest.raises(OSError, match="SHA-256"):
        fetch_smart_turn(cache, wheel)
    assert not (cache / "smart-turn-v3.2").exists()


def test_smart_turn_is_extracted_once_with_its_licence() -> None:
    from voicebot.assets import fetch_smart_turn, smart_turn_path
    from voicebot.config import VoicebotConfig

    cache = VoicebotConfig().cache_dir  # `make test` ran `voicebot models` first
    path = smart_turn_path(cache)
    assert fetch_smart_turn(cache) == path  # already there: no download
    assert "BSD 2-Clause" in (path.parent / "LICENSE").read_text()
