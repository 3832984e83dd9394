"""voicebot.testing is the test harness (it needs the dev extra: pytest, Hypothesis, psutil): the product
(voicebot, telephony, models) never imports it, or an install without the dev extra would break."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HARNESS = ROOT / "voicebot" / "testing"


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_the_product_never_imports_the_harness() -> None:
    product = [p for d in ("voicebot", "telephony", "models") for p in (ROOT / d).rglob("*.py")]
    offenders = [
        str(path.relative_to(ROOT))
        for path in product
        if HARNESS not in path.parents
        and any(name == "voicebot.testing" or name.startswith("voicebot.testing.") for name in imported(path))
    ]
    assert product and not offenders
