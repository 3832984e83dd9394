"""Shared fixtures: real models loaded once per test session, and speech clips made with the real TTS."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from models.data import data_root
from voicebot.audio import write_wav
from voicebot.config import VoicebotConfig
from voicebot.frames import PCM
from voicebot.pipeline import Services
from voicebot.records import CallStore
from voicebot.testing.pg import PostgresCluster, postgres_fixture  # noqa: F401  (a fixture: one cluster per session)
from voicebot.testing.speech import RATE, spoken

needs_data = pytest.mark.skipif(
    not data_root().is_dir(), reason=f"public datasets not found at {data_root()} (set VOICEBOT_DATA)"
)
PHRASES = {
    "track": "I would like to track my order. The number is four five seven two one nine.",
    "agent": "Can I speak to a human agent please?",
    "bye": "No thanks, goodbye.",
}


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    """The default models, except that Piper speaks without its random noise: the caller audio the tests
    synthesise is then the same on every run (with it, one CI run in many heard "trap my order")."""
    svc = Services.load(VoicebotConfig.model_validate({"tts": {"variation": 0.0}}))
    yield svc
    svc.close()


@pytest.fixture(scope="session")
def speech(services: Services) -> dict[str, PCM]:
    """Each phrase at 16 kHz with 0.3 s of silence on both sides."""
    return spoken(services, PHRASES, RATE)


@pytest.fixture(scope="session")
def speech_files(speech: dict[str, PCM], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("speech")
    paths = {}
    for key, pcm in speech.items():
        paths[key] = folder / f"{key}.wav"
        write_wav(paths[key], pcm, RATE)
    return paths


# --- call-record databases (tests/test_records.py, tests/test_instances.py) ---------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'calls.sqlite'}"
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    return cluster.new_database()


@pytest.fixture
def make_store(tmp_path: Path) -> Iterator[Callable[..., CallStore]]:
    stores: list[CallStore] = []

    def make(url: str, **kwargs: Any) -> CallStore:
        kwargs.setdefault("spool", tmp_path / "spool.jsonl")
        stores.append(CallStore(url, **kwargs))
        return stores[-1]

    yield make
    for store in stores:
        store.close()


# --- the two tiers: `pytest -m "not models"` runs without a real model -------------------------------------

MODEL_FIXTURES = frozenset({"services", "speech", "speech_files", "piper", "tiny_model", "teacher"})
"""Fixtures that load a real model: this file's, test_tts.py's Piper voice, and the NLU models test_nlu.py and
test_distill.py train. A test that uses one, directly or through another fixture, is marked `models`."""


SHOP_MODEL_FIXTURES = frozenset({"shop_factory", "fault_factory"})
"""Fixtures that load the shop domain's first model (voicebot.testing.shop): tests that use one run last, and
the model starts training when the session starts (`pytest_collection_finish`)."""


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if MODEL_FIXTURES.intersection(fixtures):
            item.add_marker(pytest.mark.models)
        if SHOP_MODEL_FIXTURES.intersection(fixtures):
            item.add_marker(pytest.mark.shop_model)
    # Stable: the rest keep their order. Every xdist worker sorts the same way, as its scheduler requires.
    items.sort(key=lambda item: item.get_closest_marker("shop_model") is not None)


_trainer: list[subprocess.Popen[bytes]] = []


def pytest_collection_finish(session: pytest.Session) -> None:
    """When the selected tests need the shop's first model and it is not trained yet, train it at once in a
    background process (one thread), while the tests that do not need it run: those that do are sorted last
    and wait for it on the model's lock (models/train_domain.one_trainer). Started by one process only: the
    first xdist worker, or pytest itself without xdist. Waiting on the model was the suite's critical path
    (3 workers: 202 s of one test's setup)."""
    worker = getattr(session.config, "workerinput", {}).get("workerid", "gw0")
    if (
        worker != "gw0"
        or session.config.option.collectonly
        or not any(item.get_closest_marker("shop_model") for item in session.items)
    ):
        return
    from models.train_domain import model_dir
    from voicebot.testing.shop import SHOP

    if (model_dir(SHOP, VoicebotConfig().cache_dir, first=True) / "metrics.json").is_file():
        return
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    _trainer.append(subprocess.Popen([sys.executable, "-m", "voicebot.testing.shop"], env=env))


def pytest_sessionfinish(session: pytest.Session) -> None:
    for proc in _trainer:  # done by now when a test needed it; otherwise (a stopped run) not worth finishing
        if proc.poll() is None:
            proc.terminate()
        proc.wait()


class RealModelInFastTier(RuntimeError):
    """Raised by a model loader called from a test without the `models` mark."""


_refused: list[str] = []  # loads refused during the current test, in case the code under test swallowed one


def _refuse(what: str) -> Callable[..., Any]:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        message = f"this test loads a real model ({what}): mark it @pytest.mark.models"
        _refused.append(message)
        raise RealModelInFastTier(message)

    return refuse


def _guard_model_loaders(mp: pytest.MonkeyPatch) -> None:
    """Every real model is built by one of these: Silero VAD and Piper are onnxruntime sessions, Whisper a
    ctranslate2 model (openai-whisper: `whisper.load_model`), the NLU encoder a Hugging Face `from_pretrained`
    (`NLU`, `JointTrainer`, `train_domain`). Checks that come before them (a missing file) still run. A child
    process (`voicebot` run by test_cli.py, scripts/scaleout.py) is out of reach: mark such tests by hand."""
    import ctranslate2
    import onnxruntime
    import transformers

    mp.setattr(onnxruntime, "InferenceSession", _refuse("an onnxruntime session: Silero VAD or Piper"))
    mp.setattr(ctranslate2.models, "Whisper", _refuse("faster-whisper"))
    encoder = _refuse("a Hugging Face from_pretrained: the NLU encoder")
    mp.setattr(transformers.PreTrainedModel, "from_pretrained", classmethod(encoder))
    try:
        import whisper
    except ImportError:  # the openai-whisper extra is optional
        return
    mp.setattr(whisper, "load_model", _refuse("openai-whisper"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Around setup, call and teardown (module and session fixtures included) of a test without the mark."""
    _refused.clear()
    if item.get_closest_marker("models"):
        yield
        return
    with pytest.MonkeyPatch.context() as mp:
        _guard_model_loaders(mp)
        yield


def _fail_if_refused() -> Iterator[None]:
    """A refused load fails the test even where the code under test caught the error and went on."""
    yield
    if _refused:
        message = _refused[0]
        _refused.clear()
        pytest.fail(message, pytrace=False)


pytest_runtest_setup = pytest.hookimpl(wrapper=True)(_fail_if_refused)
pytest_runtest_call = pytest.hookimpl(wrapper=True)(_fail_if_refused)
