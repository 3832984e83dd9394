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
