"""The `faults` section of docs/reliability.md, from the parts scripts/faults_gateway.py measured.

The wire faults (disconnects, a broken back end, slow and half-open lines) run once per protocol, each in a
gateway of its own, so crashes, leaks and lost records belong to one protocol: the first table adds them up
per fault (leaks counted per run, so one run's spare descriptor cannot hide another's leak), the
per-protocol table shows each line on its own. The storage faults (full disk, database outage) run once,
their callers taken from every protocol in turn.
"""

from __future__ import annotations

import functools
from typing import Any

import _bench_common as bc

WIRE = ("disconnects", "back_end", "slow_and_half_open")  # run per protocol
ROWS = {
    "disconnects": "abrupt disconnects at random points (seeded), per protocol: before set-up (mid-opening), "
    "just after, mid-greeting, mid-utterance, during a hung action, mid-reply after a back-end error, any "
    "time; 15 % half-open",
    "back_end": "back end hangs (thread blocked past the action timeout) or raises, caller stays on",
    "slow_and_half_open": "slow readers (4 KiB window, never read) and half-open lines (silent, no FIN) "
    "beside whole conversations",
    "full_disk": "recordings onto a full 256 KiB tmpfs, then one after space is freed",
    "db_outage": "PostgreSQL stopped mid-call (3 calls start during the outage), restarted later; then "
    "frozen (SIGSTOP: sockets open, no answer) during 3 more calls",
}
PROTOCOL_HEADERS = ["protocol", "calls (started)", "crashes", "leaked tasks (up / after) / fds",
                    "records lost", "disconnects",
                    "back end: apology + transfer (hang, raise), normal done",
                    "half-open ended, slow readers on until dropped, normal done"]  # fmt: skip


def _add(a: Any, b: Any) -> Any:
    """Two runs' figures as one: counts added, dicts key by key, lists joined, flags all true."""
    if isinstance(a, dict) and isinstance(b, dict):
        return {k: _add(a[k], b[k]) if k in a and k in b else a.get(k, b.get(k)) for k in a | b}
    if isinstance(a, bool) or isinstance(b, bool):
        return bool(a and b)
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a + b
    if isinstance(a, list) and isinstance(b, list):
        return a + b
    return a


def total(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Figures of several runs (failed ones left out) summed; each run's leaks counted as they are, ≥ 0."""
    done = [r | {"leaks": {k: max(0, v) for k, v in r["leaks"].items()}} for r in runs if "failed" not in r]
    return functools.reduce(_add, done) if done else {}


def leaked(part: dict[str, Any]) -> str:
    leaks = {k: max(0, v) for k, v in part["leaks"].items()}
    return f"{leaks['tasks_after_calls']} / {leaks['tasks']} / {leaks['fds']}"


def outcome(name: str, part: dict[str, Any]) -> str:
    if name == "disconnects":
        reached = sum(v["reached"] for v in part["by_point"].values())
        return f"{reached}/{part['inputs']} reached their point; {part['not_ended']} calls not ended"
    if name == "back_end":
        ok, asked = part["apology_and_transfer"], part["asked"]
        hung = part["back_end_threads_hung_at_the_end"]
        return (f"apology + transfer: hang {ok['hang']}/{asked['hang']}, raise {ok['fail']}/{asked['fail']}; "
                f"normal {ok['agent']}/{asked['agent']} done while {hung} back-end threads hung")  # fmt: skip
    if name == "slow_and_half_open":
        each = part["inputs"] // 3
        return (f"normal {part['normal_completed']}/{each} done; half-open ended by idle timeout "
                f"{part['half_open_ended_by_the_server']}/{each}; slow readers on until they dropped "
                f"{part['slow_readers_ended_on_drop']}/{each}")  # fmt: skip
    if name == "full_disk":
        return (f"{part['recordings_failed_and_logged']}/6 recordings failed (logged), records kept "
                f"{part['records_with_end_reason']}/7, partial files {part['partial_files_left']}, "
                f"recorded after freeing: {part['recorded_after_space_freed']}")  # fmt: skip
    return (f"{part['ops_spooled']} record writes spooled over a {part['outage_s']} s outage, delivered: "
            f"{part['spool_delivered']}, spool left: {part['spool_file_left']}; frozen: calls "
            f"{part['completed'] - 6}/3 done, writes waited and all landed after: "
            f"{part['frozen_writes_waited'] and part['frozen_writes_left_after_thaw'] == 0}")  # fmt: skip


def _row(name: str, part: dict[str, Any], failed: list[str]) -> list[Any]:
    if "skipped" in part:
        return [ROWS[name], "skipped", "–", "–", "–", part["skipped"]]
    note = f"; FAILED: {'; '.join(failed)}" if failed else ""
    if not part:
        return [ROWS[name], "–", "–", "–", "–", note.lstrip("; ")]
    return [ROWS[name], f"{part['inputs']} calls ({part['calls_started']} started)", part["crashes"],
            leaked(part), part["records_lost"], outcome(name, part) + note]  # fmt: skip


def cell(name: str, part: dict[str, Any]) -> str:
    """One protocol's outcome of one wire fault, for its column."""
    if "failed" in part:
        return f"FAILED: {part['failed']}"
    if name == "disconnects":
        reached = sum(v["reached"] for v in part["by_point"].values())
        return f"{reached}/{part['inputs']} reached their point, {part['not_ended']} not ended"
    if name == "back_end":
        ok, asked = part["apology_and_transfer"], part["asked"]
        return ", ".join(f"{ok[k]}/{asked[k]}" for k in ("hang", "fail", "agent"))
    each = part["inputs"] // 3
    done = ("half_open_ended_by_the_server", "slow_readers_ended_on_drop", "normal_completed")
    return ", ".join(f"{part[k]}/{each}" for k in done)


def protocol_row(protocol: str, runs: dict[str, dict[str, Any]]) -> list[Any]:
    """One protocol's wire faults in one row (a part that failed says so in its column)."""
    both = total(list(runs.values()))
    cells = [cell(name, runs.get(name, {"failed": "not run"})) for name in WIRE]
    if not both:
        return [protocol, "–", "–", "–", "–", *cells]
    return [protocol, f"{both['inputs']} ({both['calls_started']})", both["crashes"], leaked(both),
            both["records_lost"], *cells]  # fmt: skip


def report(parts: dict[str, Any], command: str, machine: str) -> str:
    """The section: totals per fault, the per-protocol table, the disconnect points, the fast tests."""
    by_protocol: dict[str, dict[str, dict[str, Any]]] = parts["by_protocol"]
    rows = []
    for name in ROWS:
        if name in WIRE:
            runs = {p: r[name] for p, r in by_protocol.items() if name in r}
            failed = [f"{p}: {r['failed']}" for p, r in runs.items() if "failed" in r]
            rows.append(_row(name, total(list(runs.values())), failed))
        elif name in parts:
            failed = [parts[name]["failed"]] if "failed" in parts[name] else []
            rows.append(_row(name, {} if failed else parts[name], failed))
    headers = ["fault", "inputs tried", "crashes", "leaked tasks (up / after) / fds", "records lost",
               "outcome"]  # fmt: skip
    title = "## Faults: dropped and dead lines, slow readers, a broken back end, a full disk, no database"
    protocols = bc.md_table(PROTOCOL_HEADERS, [protocol_row(p, r) for p, r in by_protocol.items()])
    each = "Per protocol (the wire faults; each protocol's runs on a gateway of their own):"
    sections = [title, f"Command: `{command}`", machine, bc.md_table(headers, rows), LEGEND, each, protocols]
    cut = total([r["disconnects"] for r in by_protocol.values() if "disconnects" in r]).get("by_point")
    if cut:
        sections.append(bc.md_table(["disconnect point", "tried", "reached"],
                                    [[p, v["tried"], v["reached"]] for p, v in cut.items()]))  # fmt: skip
    return "\n\n".join([*sections, FAST, FOUND])


LEGEND = (
    "Crashes: tracebacks logged plus exceptions no task, callback or thread handled. Leaks: tasks left once "
    "the calls were over (gateway up) and tasks and file descriptors left once it stopped, each against its "
    "count before, after a settle loop. Records lost: calls that started (the observers heard `on_start`) "
    "without a stored record and end reason. The carriers' lines are their spec-faithful peers "
    "(`voicebot/testing/carriers/`); a carrier's caller dying before set-up sends its opening but the last "
    "message and half of that one's frame. Details per part and protocol: "
    "`docs/results/reliability_faults.json`."
)
FAST_TESTS = [
    ("random_disconnects_leave_no_crash_leak_or_lost_record", "21 disconnects: every protocol × point once"),
    (
        "back_end_that_hangs_or_raises_gets_an_apology_and_a_person",
        "3 calls: hung action, raising one, a person",
    ),
    (
        "slow_reader_and_half_open_lines_do_not_hold_up_other_calls",
        "5 calls: slow reader, 3 half-open, 1 talk",
    ),
    ("full_recordings_disk_costs_the_audio_not_the_record", "3 calls: 2 onto a full 256 KiB tmpfs, 1 after"),
    (
        "records_database_outage_mid_call_loses_nothing",
        "3 calls over a PostgreSQL stop/start, 1 starts in it",
    ),
    ("hung_back_end_cannot_starve_the_event_loops_threads", "13 hung actions against a bound of 12 threads"),
]
FAST = "\n\n".join([
    "The fast version runs in `make test`: `.venv/bin/pytest tests/test_faults.py` (about a minute on 2 "
    "cores; the gateway's own three protocols, the carriers' lines dropping, freezing and dying mid-opening "
    "are in `tests/test_carriers.py`). Each test asserts crashes = 0, leaked tasks = 0, leaked fds = 0, "
    "records lost = 0 and no call left running:",
    bc.md_table(["test", "inputs"], [[f"`test_{name}`", inputs] for name, inputs in FAST_TESTS]),
])  # fmt: skip
FOUND = (
    "Found and fixed: a back-end action that hangs is abandoned after its timeout, but its thread was one of "
    "the event loop's default executor (min(32, cores + 4) = 6 threads here), where every call's NLU parse "
    "and the recording writes also run. With six actions hung, a new caller asking for a person got no "
    "answer for 30 s (measured with the old code path); recordings, and the end reasons stored after them, "
    "waited as well. Actions now run in daemon threads of their own, at most `MAX_RUNNING` (32) at once, "
    "beyond which they fail at once as `ActionFailed` (`voicebot/dialogue/actions.py`)."
)
