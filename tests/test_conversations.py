"""The default domain's conversation suite, end to end through the real pipeline and a real trained model.

The NLU model is the shop domain's *first* model (voicebot.testing.shop: what `make run` serves on a fresh
machine; trained once per data, cached by its hash, started as the session starts by tests/conftest.py), so
the suite runs in CI; `scripts/bench_dialogue.py` reports the same suite on the full model. Text turns skip
ASR; audio turns go through VAD and Whisper over a μ-law 8 kHz line. The back end is a fresh copy of the
shop's SQLite database per conversation.
"""

from __future__ import annotations

import asyncio
import io
import shutil
from pathlib import Path

import pytest

from tests.conftest import needs_data
from voicebot.convtest.report import format_report
from voicebot.convtest.runner import run_suite
from voicebot.convtest.spec import collect_files
from voicebot.dialogue.brain import DialogueFactory
from voicebot.domain.yamlfile import DomainError
from voicebot.line import PRESETS
from voicebot.nlu.parser import NLU
from voicebot.pipeline import Services
from voicebot.shell import run_shell
from voicebot.testing.shop import shop_model

ROOT = Path(__file__).resolve().parent.parent
SHOP = ROOT / "domains" / "shop"
SUITE = Path(__file__).resolve().parent / "conversations" / "shop"


@pytest.fixture(scope="session")
def shop_factory(services: Services, tmp_path_factory: pytest.TempPathFactory) -> DialogueFactory:
    model = shop_model(services.config.cache_dir)
    nlu = NLU(model, threads=services.config.nlu.threads, int8=services.config.nlu.int8)
    return DialogueFactory(SHOP, nlu, services.config.cache_dir, scratch=tmp_path_factory.mktemp("backend"))


@needs_data
def test_shop_suite_has_every_flow_and_enough_audio() -> None:
    files = sorted(SUITE.glob("*.yaml"))
    text = "\n".join(f.read_text() for f in files)
    assert len(files) >= 30
    assert sum("audio:" in f.read_text() for f in files) >= 5
    for flow in (
        "track_order",
        "cancel_order",
        "change_order",
        "change_shipping_address",
        "get_refund",
        "track_refund",
        "check_invoice",
        "get_invoice",
        "contact_human_agent",
    ):
        assert f"tags: [{flow}" in text or f", {flow}" in text, flow
    for tag in ("correction", "barge-in", "no-input", "no-match", "dtmf", "escalation", "goodbye"):
        assert tag in text, tag


@needs_data
@pytest.mark.parametrize("path", collect_files([SUITE]), ids=lambda path: path.stem)
def test_shop_conversation_passes(services: Services, shop_factory: DialogueFactory, path: Path) -> None:
    """One test per conversation file (the suite run as `voicebot test` runs it, file by file): a failure
    names its conversation, and the parallel test workers share the files out."""
    suite = asyncio.run(run_suite([path], services, shop_factory, channel_rate=8_000, line=PRESETS["mulaw"]))
    assert suite.passed, format_report(suite)


@needs_data
def test_shell_shows_what_the_engine_understood_and_did(shop_factory: DialogueFactory) -> None:
    out = io.StringIO()
    lines = "where is my order 830112\n/dtmf 7\n/silence\nbye\n"
    assert run_shell(shop_factory, io.StringIO(lines), out, echo=True) == 0
    text = out.getvalue()
    assert "bot> Hi, you're through to Acme Shop" in text
    assert "intent=track_order" in text and '"order_id": "830112"' in text
    assert "action=order_status→ok" in text and "has shipped" in text
    assert "act=menu_invalid" in text and "act=noinput" in text
    assert text.rstrip().endswith("(call ended)")


@needs_data
def test_factory_names_missing_actions_and_unknown_intents(
    shop_factory: DialogueFactory, services: Services, tmp_path: Path
) -> None:
    domain = tmp_path / "shop"
    shutil.copytree(SHOP, domain, ignore=shutil.ignore_patterns("__pycache__"))
    flows = domain / "flows.yaml"
    flows.write_text(flows.read_text().replace("action: order_status", "action: order_lookup", 1))
    with pytest.raises(
        DomainError, match=r"flows\.yaml:\d+: flows\.track_order\.action: no action 'order_lookup'"
    ):
        DialogueFactory(domain, shop_factory.nlu, services.config.cache_dir, scratch=tmp_path)
    shutil.copy(SHOP / "flows.yaml", flows)
    flows.write_text(
        flows.read_text().replace("title: tracking your order", "intents: [track_parcel]\n    title: x")
    )
    with pytest.raises(
        DomainError, match=r"flows\.track_order\.intents: the NLU model has no intent 'track_parcel'"
    ):
        DialogueFactory(domain, shop_factory.nlu, services.config.cache_dir, scratch=tmp_path)
