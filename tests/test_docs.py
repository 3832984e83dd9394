"""The benchmark records in docs/: hand edits (say, a command line rewritten for the README) must leave them
readable, because each bench script rebuilds its docs section from all of them."""

from __future__ import annotations

import json
import re
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_every_results_json_parses() -> None:
    files = sorted((DOCS / "results").glob("*.json"))
    assert files
    for path in files:
        try:
            json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise AssertionError(f"{path.name}: {exc}") from exc


def test_nlu_rows_name_the_command_that_made_them() -> None:
    for path in sorted((DOCS / "results").glob("nlu_*.json")):
        command = json.loads(path.read_text()).get("command", "")
        assert command.startswith("python scripts/bench_nlu.py"), path.name


def test_images_linked_from_benchmarks_exist() -> None:
    text = (DOCS / "benchmarks.md").read_text()
    links = re.findall(r"\((img/[^)\s]+\.png)\)", text)
    assert links
    missing = [link for link in links if not (DOCS / link).is_file()]
    assert not missing, missing


def test_the_architecture_page_names_every_stage_and_frame() -> None:
    """docs/architecture.md is how a newcomer finds their way: it must keep up with the code."""
    import inspect

    from voicebot import frames
    from voicebot.brain import EchoBrain
    from voicebot.filecall import ReplyCollector
    from voicebot.pipeline import CallPipeline
    from voicebot.testing.fakes import fake_services

    text = (DOCS / "architecture.md").read_text()
    assert (DOCS / "architecture.png").is_file() and "(architecture.png)" in text
    services = fake_services()
    try:
        stages = CallPipeline(services, EchoBrain(), ReplyCollector(), paced=False).stages
    finally:
        services.close()
    missing = [type(s).__name__ for s in stages if f"**{type(s).__name__}**" not in text]
    bases = {"Frame", "SystemFrame", "DataFrame", "ControlFrame", "AudioIn", "SpeechAudio", "SpeechEnded"}
    named = [n for n, c in inspect.getmembers(frames, inspect.isclass) if issubclass(c, frames.Frame)]
    missing += [n for n in named if n not in bases and f"`{n}`" not in text]
    assert not missing, f"not in docs/architecture.md: {missing}"
    assert "architecture.md" in (DOCS.parent / "README.md").read_text()
