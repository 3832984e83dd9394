"""Call records on SQLite and on a real PostgreSQL: stored, masked, never lost, never blocking the call."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import socket
import time
import wave
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from voicebot.cli import main
from voicebot.config import load_config
from voicebot.frames import (
    Action,
    BotReply,
    CallEnded,
    FinalTranscript,
    PlaybackReport,
    TurnDone,
    Understanding,
)
from voicebot.records import CallStore
from voicebot.testing.faults.env import frozen
from voicebot.testing.pg import PostgresCluster, free_port
from voicebot.testing.records import (
    CARD,
    EMAIL,
    GREETING,
    PHONE,
    TRANSFER,
    TWILIO,
    assert_no_secrets,
    full_call,
    greeting,
    handoff,
    raw_rows,
    track,
)
from voicebot.turns import TurnRecord

# --- tests -------------------------------------------------------------------------------------------------


async def test_call_lifecycle_is_stored_and_read_back(
    db_url: str, make_store: Callable[..., CallStore]
) -> None:
    store = make_store(db_url)
    await full_call(store, "call-1")
    assert await store.flush() == 0

    [summary] = store.list_calls()
    assert (summary.id, summary.protocol, summary.status, summary.turns) == ("call-1", "twilio", "ended", 3)
    assert (summary.end_reason, summary.transfer_target) == ("transferred", "sip:agents@pbx.local")
    assert summary.duration_s is not None and summary.duration_s >= 0
    assert summary.caller == "**********56"

    detail = store.get_call("call-1")
    assert detail is not None and detail.meta == TWILIO | {"from": "[phone]"}
    first, second, third = detail.turns
    assert [t.index for t in detail.turns] == [0, 1, 2]
    assert (first.transcript, first.reply, first.act) == (None, GREETING, "greeting")
    assert (second.intent, second.confidence, second.slots) == ("track_order", 0.9712, {"order_id": "457219"})
    assert (second.action, second.action_result, second.barge_in, second.played_ms) == (
        "lookup_order", "ok", True, 1400.0,
    )  # fmt: skip
    assert second.timings_ms["asr"] == 312.5 and second.previous_heard == GREETING
    assert second.extra["asr"] == {"avg_logprob": -0.21, "no_speech_prob": 0.01}
    assert (third.sentiment, third.frustration, third.previous_interrupted) == ("negative", 0.82, True)
    assert third.actions == [{"kind": "transfer", "target": TRANSFER.target, "reason": TRANSFER.reason}]
    [transfer] = detail.transfers
    assert (transfer.target, transfer.reason) == (TRANSFER.target, TRANSFER.reason)
    assert store.get_call("nope") is None
    assert json.loads(json.dumps(detail.as_json()))["call"]["turns"] == 3


async def test_a_turn_record_from_the_pipeline_is_stored_as_its_json(
    db_url: str, make_store: Callable[..., CallStore]
) -> None:
    """The observer path: a `TurnDone` carries the typed record; the row holds its public JSON form."""
    final = FinalTranscript(
        text=f"my email is {EMAIL}", t=2.0, details={"avg_logprob": -0.3}, confidence=0.74
    )
    understanding = Understanding(intent="update_email", confidence=0.9, entities={"email": "[email]"})
    reply = BotReply(text="Thanks.", understanding=understanding, transcript=final, cause="speech")
    heard = PlaybackReport(reply_id=2, text="Thanks.", played_ms=600.0, interrupted=False, heard="Thanks.")
    record = TurnRecord.build(reply, 2, heard, None)
    store = make_store(db_url)
    await store.on_start("typed", "browser", {})
    await store.on_event("typed", TurnDone(record=record))
    await store.on_end("typed", "caller hung up")
    assert await store.flush() == 0
    detail = store.get_call("typed")
    assert detail is not None
    [turn] = detail.turns
    assert (turn.transcript, turn.intent, turn.reply, turn.played_ms) == (
        "my email is [email]", "update_email", "Thanks.", 600.0,
    )  # fmt: skip
    assert turn.extra["heard"] == "Thanks." and turn.extra["asr_confidence"] == 0.74
    assert turn.extra["cause"] == "speech" and turn.extra["reply_id"] == 2


async def test_personal_data_never_reaches_the_database(
    db_url: str, make_store: Callable[..., CallStore], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    leaky = track(f"my card is {CARD} and my email is {EMAIL}, call me on {PHONE}")
    leaky |= {
        "slots": {"email": EMAIL, "card_number": CARD.replace(" ", ""), "phone": PHONE,
                  "note": f"ring {PHONE}", "order_id": "457219"},
        "entities": {"email": "john dot smith at example dot com", "card": CARD},
        "reply": f"I have {EMAIL} and the card ending 1111.", "previous_heard": f"Was that {PHONE}?",
        "asr": {"words": ["four", "one", "one", "one"], "text": f"card {CARD}"},
    }  # fmt: skip
    store = make_store(db_url)
    meta = TWILIO | {"parameters": {"From": PHONE}, "customer": {"email": EMAIL}}
    await store.on_start("pii", "twilio", meta)
    store.add_turn("pii", leaky)
    await store.on_event(
        "pii", CallEnded(reason="x", actions=(Action("transfer", "agents", f"card {CARD}"),))
    )
    await store.on_end("pii", f"caller {EMAIL} hung up")
    assert await store.flush() == 0

    text = raw_rows(db_url)
    assert "[card]" in text and "[email]" in text and "j***@e***.com" in text and "************1111" in text
    assert "457219" in text  # order ids stay readable
    assert_no_secrets(text)
    assert_no_secrets(caplog.text)


def closed_port_url() -> str:
    return f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nothing"


async def test_unreachable_database_spools_and_a_later_store_writes_it_once(
    db_url: str, make_store: Callable[..., CallStore], tmp_path: Path
) -> None:
    spool = tmp_path / "spool.jsonl"
    down = make_store(closed_port_url(), spool=spool)
    await full_call(down, "call-a")
    await full_call(down, "call-b", [greeting()])
    kept = await down.flush()
    assert kept == 6 + 4  # start, turns (3 and 1), transfer, end
    down.close()
    assert_no_secrets(spool.read_text())
    crashed_copy = spool.read_text()  # as if a crash came after the DB commit, before the spool rewrite
    replayed_at = datetime.now(UTC)

    up = make_store(db_url, spool=spool)
    assert await up.flush() == 0
    assert not spool.exists()
    spool.write_text(crashed_copy)
    assert await up.flush() == 0  # replayed again: nothing doubled
    calls = {c.id: c for c in up.list_calls()}
    assert {k: (c.turns, c.end_reason, c.protocol) for k, c in calls.items()} == {
        "call-a": (3, "transferred", "twilio"), "call-b": (1, "transferred", "twilio"),
    }  # fmt: skip
    detail = up.get_call("call-a")
    assert detail is not None and len(detail.turns) == 3 and len(detail.transfers) == 1
    assert detail.call.ended_at is not None and detail.call.ended_at < replayed_at  # when it happened


@pytest.mark.parametrize("spool_on", ["disk", "memory"])
async def test_outage_mid_call_loses_nothing(
    postgres: PostgresCluster, make_store: Callable[..., CallStore], tmp_path: Path, spool_on: str
) -> None:
    url = postgres.new_database()
    if spool_on == "memory":  # the spool's folder is a file: the disk refuses too
        (tmp_path / "blocked").write_text("")
    spool = tmp_path / ("spool.jsonl" if spool_on == "disk" else "blocked/spool.jsonl")
    store = make_store(url, spool=spool, retry_s=0.2)
    await store.on_start("outage", "audiosocket", {"uuid": "40e3e1d2-8b7c-4c1e-9a53-1234567890ab"})
    store.add_turn("outage", greeting())
    assert await store.flush() == 0

    postgres.stop()
    try:
        store.add_turn("outage", track())
        await full_call(store, "during")
        await store.on_end("outage", "caller hung up")
        assert await store.flush() == 1 + 6 + 1
        assert spool.exists() == (spool_on == "disk")
    finally:
        postgres.start()
    for _ in range(50):  # no flush(): the writer retries by itself every retry_s
        if not len(store.backlog):
            break
        await asyncio.sleep(0.1)
    assert len(store.backlog) == 0 and not spool.exists()
    outage = store.get_call("outage")
    assert outage is not None and [t.index for t in outage.turns] == [0, 1]
    assert outage.meta["uuid"] == "40e3e1d2-8b7c-4c1e-9a53-1234567890ab"  # provider ids kept verbatim
    assert (outage.call.status, outage.call.end_reason) == ("ended", "caller hung up")
    during = store.get_call("during")
    assert during is not None and during.call.turns == 3 and during.call.end_reason == "transferred"


async def test_observers_never_wait_for_a_hung_database(
    make_store: Callable[..., CallStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("voicebot.records.db.CONNECT_TIMEOUT_S", 2)
    with socket.socket() as server:  # accepts connections (in the kernel), never answers
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        store = make_store(f"postgresql+psycopg://postgres@127.0.0.1:{server.getsockname()[1]}/x")
        started = time.perf_counter()
        await full_call(store, "hung")
        assert time.perf_counter() - started < 0.5  # the writer thread waits, the call does not
        assert await store.flush() == 6  # each flush waits out one connect timeout, in the writer thread
    store.close()  # the port is closed now: refused at once


async def test_closing_while_the_database_hangs_spools_what_waits(
    postgres: PostgresCluster, make_store: Callable[..., CallStore], tmp_path: Path
) -> None:
    """A frozen server (SIGSTOP: its sockets stay open, nothing answers) holds the writer inside a query;
    stopping the gateway then must not drop the records queued behind it."""
    url = postgres.new_database()
    store = make_store(url, spool=tmp_path / "hung.jsonl")
    await full_call(store, "before")
    assert await store.flush() == 0
    with frozen(postgres):
        await full_call(store, "during")
        await asyncio.sleep(0.3)  # the writer is inside its first write now, and stuck
        kept = await asyncio.to_thread(store._writer.close, 2.0)
        assert kept >= 5  # the rest of the call is in the spool, on disk
    thread = store._writer._thread
    if thread is not None:
        thread.join(30)  # thawed: the stuck write finishes
    later = make_store(url, spool=tmp_path / "hung.jsonl")
    assert await later.flush() == 0
    during = later.get_call("during")
    assert during is not None and len(during.turns) == 3 and during.call.end_reason == "transferred"


@pytest.mark.parametrize("writable", [True, False])
async def test_recordings_and_an_unwritable_recordings_dir(
    db_url: str, make_store: Callable[..., CallStore], tmp_path: Path, writable: bool
) -> None:
    folder = tmp_path / "recordings"
    if not writable:
        folder.write_text("a file where the folder should be")  # fails even for root, like a full disk
    store = make_store(db_url, recordings=folder)
    await store.on_start("rec/../1", "browser", {})
    caller, bot = np.full(1600, 1000, np.int16), np.full(800, -1000, np.int16)
    path = await store.save_audio("rec/../1", caller, bot, 16_000)
    store.add_turn("rec/../1", greeting())
    await store.on_end("rec/../1", "caller hung up")
    assert await store.flush() == 0
    detail = store.get_call("rec/../1")
    assert detail is not None and detail.call.end_reason == "caller hung up" and detail.call.turns == 1
    if not writable:
        assert path is None and detail.call.recording is None
        return
    assert path is not None and path.parent.parent == folder  # the id cannot lead out of the folder
    assert detail.call.recording == str(path)
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getframerate(), w.getnframes()) == (2, 16_000, 1600)


async def test_many_concurrent_calls(db_url: str, make_store: Callable[..., CallStore]) -> None:
    store = make_store(db_url)
    rng = random.Random(7)

    async def call(n: int) -> None:
        await store.on_start(f"c{n:02d}", "browser", {})
        for record in (greeting(), track(), handoff()):
            await asyncio.sleep(rng.random() * 0.01)
            store.add_turn(f"c{n:02d}", record)
        await store.on_end(f"c{n:02d}", f"reason {n}")

    await asyncio.gather(*(call(n) for n in range(40)))
    assert await store.flush() == 0
    calls = store.list_calls(limit=100)
    assert sorted(c.id for c in calls) == [f"c{n:02d}" for n in range(40)]
    assert all(c.turns == 3 and c.end_reason == f"reason {int(c.id[1:])}" for c in calls)
    detail = store.get_call("c17")
    assert detail is not None and [t.act for t in detail.turns] == ["greeting", "inform", "handoff"]


async def test_an_unwritable_record_is_set_aside_not_blocking(
    make_store: Callable[..., CallStore], tmp_path: Path
) -> None:
    spool = tmp_path / "spool.jsonl"
    spool.write_text('{"kind": "bogus", "call_id": "x", "at": "2026-01-01T00:00:00+00:00"}\n3\n{"truncated\n')
    store = make_store(f"sqlite:///{tmp_path / 'calls.sqlite'}", spool=spool)
    await full_call(store, "after")
    assert await store.flush() == 0
    assert [c.id for c in store.list_calls()] == ["after"]
    [rejected] = store.backlog.rejected.read_text().splitlines()
    assert json.loads(rejected)["kind"] == "bogus" and "unknown record kind" in json.loads(rejected)["error"]


async def test_cli_lists_and_shows_calls(
    make_store: Callable[..., CallStore], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    store = make_store(url)
    await full_call(store, "cli-1")
    await store.on_start("cli-2", "browser", {})
    assert await store.flush() == 0
    capsys.readouterr()

    assert main(["calls", "list", "--db", url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["ID", "PROTOCOL", "STARTED", "DURATION", "TURNS", "END", "REASON", "TRANSFER"]
    assert lines[1].startswith("cli-2") and "active" in lines[1]
    assert lines[2].startswith("cli-1") and "transferred" in lines[2] and "sip:agents@pbx.local" in lines[2]

    config = tmp_path / "voicebot.yaml"
    config.write_text(f"cache_dir: {tmp_path / 'cache'}\nserver:\n  records_url: {url}\n")
    assert main(["--config", str(config), "calls", "show", "cli-1"]) == 0
    out = capsys.readouterr().out
    assert "call cli-1 (twilio)" in out and "caller: I want to track my order" in out
    assert "[barge-in after 1400 ms]" in out and "transfer: sip:agents@pbx.local" in out

    assert main(["calls", "show", "cli-1", "--json", "--db", url]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["call"]["turns"] == 3 and data["turns"][1]["intent"] == "track_order"
    assert main(["calls", "list", "--limit", "1", "--db", url]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    assert main(["calls", "show", "missing", "--db", url]) == 1
    assert "no call 'missing'" in capsys.readouterr().err
    down = closed_port_url().replace("postgres@", "postgres:s3cret@")
    assert main(["calls", "list", "--db", down]) == 2
    err = capsys.readouterr().err
    assert "cannot read call records from postgresql+psycopg://postgres:***@" in err and "s3cret" not in err

    store = CallStore.from_config(load_config(config, environ={}))
    assert str(store.url) == url and store.backlog.path.parent == tmp_path / "cache"
    store.close()


def test_keys_echoed_back_are_not_stored_in_any_field() -> None:
    """A bot that echoes key presses must not leave the digits in the reply, in what the caller heard of it,
    nor in the next turn's `previous_heard`."""
    from voicebot.records.capture import turn_op

    def keypad(reply_id: int, previous: PlaybackReport | None) -> dict[str, object]:
        reply = BotReply(text="You pressed 4.", understanding=Understanding(dtmf=True), cause="dtmf")
        heard = PlaybackReport(reply_id=reply_id, text=reply.text, played_ms=900.0, interrupted=False,
                               heard=reply.text)  # fmt: skip
        return TurnRecord.build(reply, reply_id, heard, previous, "dtmf" if previous else None).as_json()

    first = keypad(1, None)
    heard = PlaybackReport(reply_id=1, text="You pressed 4.", played_ms=900.0, interrupted=False,
                           heard="You pressed 4.")  # fmt: skip
    second = keypad(2, heard)
    spoken = BotReply(text="Thanks.", transcript=FinalTranscript(text="that is all", t=1.0), cause="speech")
    after = TurnRecord.build(spoken, 3, None, heard, "dtmf").as_json()
    for index, record in enumerate((first, second, after)):
        fields = turn_op("keys", index, record)["fields"]
        texts = [fields["reply"], fields["previous_heard"], fields["extra"].get("heard")]
        assert not any("4" in (text or "") for text in texts), fields
    assert turn_op("keys", 1, second)["fields"]["previous_heard"] == "You pressed [key]."
