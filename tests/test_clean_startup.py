"""Start-up says nothing alarming: loading the NLU (int8, as `serve`, `shell`, `call` and `test` do) and
starting the gateway with a domain brain emit no Python warning and log nothing at WARNING or above.

Cheap: the NLU is a randomly initialised one-layer BERT with the packaged MiniLM tokenizer (the quantisation
and loading code paths are the real ones; the weights do not matter for warnings) and the gateway runs on
fake speech services. The tier is `models` only because the tokenizer and the tiny encoder are loaded with
`from_pretrained` (about 3 s in all).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import pytest
import torch

from tests.tiny import tiny_encoder
from voicebot.config import VoicebotConfig
from voicebot.nlu.brain import UnderstandingBrain
from voicebot.nlu.model import JointNLU, Labels
from voicebot.nlu.parser import NLU
from voicebot.testing.fakes import fake_services
from voicebot.testing.gateway import http_get, running_gateway

pytestmark = pytest.mark.models


@pytest.fixture(scope="module")
def random_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    encoder = tiny_encoder(tmp_path_factory.mktemp("tiny-encoder"), layers=1)
    labels = Labels(intents=["greet", "oos"], tags=["O", "B-order_id", "I-order_id"], sentiment=True)
    model, tokenizer = JointNLU.create(encoder, labels)
    out = tmp_path_factory.mktemp("random-nlu")
    model.save(out, tokenizer)
    return out


def _alarms(records: list[logging.LogRecord], caught: list[warnings.WarningMessage]) -> list[str]:
    return [f"{r.name}: {r.getMessage()}" for r in records if r.levelno >= logging.WARNING] + [
        f"{w.category.__name__}: {w.message}" for w in caught
    ]


def test_loading_the_int8_nlu_warns_about_nothing(
    random_model: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        nlu = NLU(random_model, int8=True)
        nlu.parse("cancel order 457219")
    assert _alarms(caplog.records, caught) == []


def test_quantisation_still_hides_nothing_else(random_model: Path) -> None:
    """Only the two torch deprecation messages are silenced: any other warning raised while quantising
    still reaches the caller (the filter is not a blanket one)."""
    model, _ = JointNLU.load(random_model)

    def noisy(*args: object, **kwargs: object) -> JointNLU:
        warnings.warn("something else went wrong", UserWarning, stacklevel=2)
        return model

    with warnings.catch_warnings(record=True) as caught, pytest.MonkeyPatch.context() as mp:
        warnings.simplefilter("always")
        mp.setattr(torch.ao.quantization, "quantize_dynamic", noisy)
        model.quantized()
    assert [str(w.message) for w in caught] == ["something else went wrong"]


async def test_gateway_start_up_with_a_domain_brain_logs_no_warning(
    random_model: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The "running as root" warning is deliberate (an operator should see it); these tests may run as root.
    monkeypatch.setattr("telephony.server.os.geteuid", lambda: 1000)
    caplog.set_level(logging.INFO)
    config = VoicebotConfig()
    config.server.audiosocket_port = 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        nlu = NLU(random_model, int8=True)
        async with running_gateway(config, fake_services(config), lambda: UnderstandingBrain(nlu)) as gw:
            status, body = await http_get(gw.http, "/health")
    assert "200" in status and '"ok"' in body
    assert _alarms(caplog.records, caught) == []
