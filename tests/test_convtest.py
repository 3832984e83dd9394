"""Conversation tests (`voicebot test`): the YAML format, the checks, and real runs through the pipeline.

The runs use the echo brain, whose answers are known ("You said: …", "You pressed N."), so what is under
test is the runner: step boundaries, barge-in, the end of the call, and the failure messages.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from voicebot.brain import BrainInput, EchoBrain
from voicebot.cli import main
from voicebot.convtest.expect import check_end, check_step
from voicebot.convtest.report import format_report, write_junit
from voicebot.convtest.runner import run_conversation, run_suite
from voicebot.convtest.spec import Conversation, End, Expect, load_conversation
from voicebot.domain.yamlfile import DomainError
from voicebot.frames import Action, BotReply, CallEnded, FinalTranscript
from voicebot.pipeline import Services

ECHO = Path(__file__).parent / "conversations" / "echo"

FAILING = """\
name: wrong expectations
steps:
  - caller: where is my order
    expect: {intent: track_order, reply: "order number"}
  - caller: goodbye
    expect: {reply: "^Goodbye"}
  - caller: hello again
  - dtmf: "1"
end: {transfer: agent}
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


@pytest.fixture
def cli_services(services: Services, monkeypatch: pytest.MonkeyPatch) -> Services:
    """`voicebot test` in-process on the session's models, which it must not close."""
    monkeypatch.setattr("voicebot.pipeline.Services.load", lambda config: services)
    monkeypatch.setattr(services, "close", lambda: None)
    return services


# --------------------------------------------------------------------------------------------- the format


@pytest.mark.parametrize(
    ("steps", "where"),
    [
        ("  - caller: hi\n    expect:\n      intnet: x\n", ":5: steps.0.expect.intnet: Extra inputs"),
        ("  - caller: hi\n    dtmf: '1'\n", ":3: steps.0: a step needs exactly one of"),
        ("  - caller: hi\n  - bot: hello\n", ":4: steps.1.bot: only the first step"),
        ("  - caller: hi\n    expect: {reply: '(oops'}\n", ":4: steps.0.expect.reply: invalid regular"),
        ("  - caller: hi\n    expect: {silent: null}\n", ":4: steps.0.expect.silent: must not be null"),
        ("  - audio: nowhere.wav\n", ":3: steps.0.audio: no such file"),
        ("  - dtmf: '1'\n    barge_in_after_ms: 5\n", ":3: steps.0: barge_in_after_ms needs"),
        ("  - dtmf: 12x\n", ":3: steps.0.dtmf: String should match pattern"),
        ("  - caller: hi\n  - dtmf: 12\n", ":4: steps.1.dtmf: put the digits in quotes"),
        ("  []\n", ":2: steps: List should have at least 1 item"),
    ],
)
def test_spec_errors_name_file_line_and_field(tmp_path: Path, steps: str, where: str) -> None:
    path = write(tmp_path, "bad.yaml", f"name: x\nsteps:\n{steps}")
    with pytest.raises(DomainError) as error:
        load_conversation(path)
    assert str(error.value).startswith(f"{path}{where}")


def test_conversation_files_load(tmp_path: Path) -> None:
    spec = load_conversation(ECHO / "basics.yaml")
    assert [s.kind for s in spec.steps] == ["bot", "caller", "dtmf", "silence", "caller"]
    checks = {"reply": r"You pressed 4\. You pressed 2\.", "no_reply": "You said"}
    assert spec.steps[2].expect.checked() == checks
    audio = load_conversation(ECHO / "audio.yaml")
    assert audio.audio_path(audio.steps[0]).is_file()
    yaml_words = write(tmp_path, "words.yaml", "name: x\nsteps:\n  - caller: no\n  - caller: 830112\n")
    assert [s.caller for s in load_conversation(yaml_words).steps] == ["no", "830112"]  # not False, 830112
    nameless = write(tmp_path, "nameless.yaml", "steps:\n  - caller: hi\n")
    with pytest.raises(DomainError, match=r"nameless\.yaml:1: name: Field required"):
        load_conversation(nameless)


# ------------------------------------------------------------------------------------------------ the checks


def test_checks_read_the_records_the_brain_wrote() -> None:
    records: list[dict[str, Any]] = [
        {"reply": "Sure.", "actions": [], "intent": "track_order", "slots": {"order_id": 830112}},
        {"reply": "It has shipped.", "actions": [], "action": "order_status", "action_result": "ok"},
    ]
    ok = Expect(
        intent="track_order",
        slots={"order_id": "830112", "email": None},
        action="order_status",
        action_result="ok",
        reply="sure\\. it has shipped",
        transfer=False,
        flow=None,  # null also passes when the brain wrote no such key
    )
    assert check_step(ok, records) == []
    wrong = Expect(intent="oos", slots={"order_id": "1", "email": "a@b.c"}, act="inform", transfer="agent")
    assert check_step(wrong, records) == [
        "intent: expected oos, got track_order",
        "slots.order_id: expected '1', got 830112; slots.email: expected 'a@b.c', not filled "
        "(slots: {'order_id': 830112})",
        "act: record has no 'act'",
        "transfer: expected a transfer to agent, got none",
    ]
    to_agent = {"kind": "transfer", "target": "agent", "reason": None}
    transfer = [{"reply": "One moment.", "actions": [to_agent]}]
    assert check_step(Expect(transfer=True, hangup=False, silent=False), transfer) == []
    assert check_step(Expect(silent=True), transfer) == ["silent: expected no reply, got 'One moment.'"]
    assert check_step(Expect(intent="x", reply="y"), []) == [
        "no turn record: nothing was heard or answered in this step (expected intent)"
    ]


def test_end_checks() -> None:
    transferred = CallEnded(reason="asked for a person", actions=(Action("transfer", "agent"),))
    assert check_end(End(transfer="agent", reason="person", ended=True), transferred) == []
    assert check_end(End(hangup=True, transfer="billing"), transferred) == [
        "transfer: expected a transfer to billing, got one to agent",
        "hangup: expected the call to end with a hang-up, it ended: 'asked for a person'",
    ]
    assert check_end(End(hangup=False, transfer=False, ended=False), None) == []
    assert check_end(End(hangup=True, reason="bye"), None) == [
        "hangup: expected the call to end with a hang-up, it did not end",
        "reason: expected /bye/, it did not end",
    ]


# --------------------------------------------------------------------------------- runs through the pipeline


def test_cli_runs_the_echo_folder_over_a_phone_line(
    cli_services: Services, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junit = tmp_path / "junit.xml"
    code = main(["test", str(ECHO), "--junit", str(junit), "--json", "--rate", "8000", "--mulaw"])
    report = json.loads(capsys.readouterr().out)
    failed = [c for c in report["conversations"] if not c["passed"]]
    assert code == 0, [(c["errors"], c["end_failures"], [s["failures"] for s in c["steps"]]) for c in failed]
    assert (report["total"], report["failed"]) == (3, 0)
    by_name = {c["name"]: c for c in report["conversations"]}
    cut, barge = by_name["echo barge-in"]["steps"]
    assert cut["records"][0]["interrupted"] is True  # the long echo was cut by the caller
    assert 1000 <= cut["records"][0]["played_ms"] < 3000
    assert "say that again" in barge["records"][0]["transcript"].lower()  # VAD + Whisper, over the bot
    spoken = by_name["echo a spoken turn"]
    assert spoken["ended"] == "caller hung up" and spoken["steps"][0]["records"][0]["asr"]
    basics = by_name["echo basics"]
    assert [len(s["records"]) for s in basics["steps"]] == [1, 1, 2, 1, 1]  # one record per reply
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("3", "0", "0")
    assert len(suite.findall("testcase")) == 3 and not suite.findall("testcase/failure")


async def test_failures_name_the_step_and_say_what_differed(services: Services, tmp_path: Path) -> None:
    failing = write(tmp_path, "failing.yaml", FAILING)
    broken = write(tmp_path, "broken.yaml", "name: broken\nsteps:\n  - caller: hi\n    expect: {reply: 3}\n")
    suite = await run_suite([tmp_path], services, EchoBrain)
    broke, failed = suite.conversations  # sorted by file name
    assert not suite.passed and broke.errors[0].startswith(f"{broken}:4: steps.0.expect.reply")
    assert [s.passed for s in failed.steps] == [False, True, False, True]
    assert failed.failure_lines == [
        "step 1 (caller: 'where is my order'): intent: record has no 'intent'; "
        "reply: /order number/ not in 'You said: where is my order'",
        "step 3 (caller: 'hello again'): call already ended",
        "end: transfer: expected a transfer to agent, got none",
    ]
    assert failed.steps[3].skipped and failed.ended == "caller said goodbye"
    text = format_report(suite)
    assert f"FAIL  wrong expectations  ({failing}," in text and "2 conversations: 0 passed, 2 failed" in text
    write_junit(suite, tmp_path / "out" / "junit.xml")
    root = ET.parse(tmp_path / "out" / "junit.xml").getroot()
    node = root.find("testsuite")
    assert node is not None
    assert (node.get("tests"), node.get("failures"), node.get("errors")) == ("2", "1", "1")
    failure = node.find("testcase[@name='wrong expectations']/failure")
    assert failure is not None and failure.get("message", "").startswith("step 1 (caller: 'where is my")
    assert failure.text and "call already ended" in failure.text
    assert float(node.get("time", "0")) > 0


class ExplodingBrain(EchoBrain):
    async def handle(self, event: BrainInput) -> BotReply | None:
        if isinstance(event, FinalTranscript) and "agent" in event.text:
            raise RuntimeError("back end down")
        return await super().handle(event)


async def test_a_stage_error_fails_its_step_and_the_call_goes_on(services: Services) -> None:
    spec = Conversation.model_validate(
        {
            "name": "exploding",
            "steps": [
                {"caller": "an agent please", "expect": {"silent": True}},
                {"caller": "hello", "expect": {"reply": "You said: hello"}},
            ],
        }
    )
    result = await run_conversation(services, ExplodingBrain, spec)
    assert [s.failures for s in result.steps] == [["brain error: RuntimeError: back end down"], []]
    assert result.greeting and "automated assistant" in result.greeting and not result.errors


def test_cli_exit_codes(cli_services: Services, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    failing = write(tmp_path, "failing.yaml", FAILING)
    assert main(["test", str(failing)]) == 1
    out = capsys.readouterr().out
    assert "FAIL  wrong expectations" in out and "step 3 (caller: 'hello again'): call already ended" in out
    assert main(["test", str(tmp_path / "missing")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
