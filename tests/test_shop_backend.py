"""The shop domain's SQLite back end, called the way the dialogue calls it: through `load_actions`."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from contextlib import closing
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from domains.shop.actions import seed_database
from voicebot.dialogue.actions import ActionFailed, ActionResult, Actions, load_actions
from voicebot.domain.yamlfile import DomainError

SHOP = Path(__file__).resolve().parents[1] / "domains" / "shop"
TODAY = "2026-11-29"  # a Sunday: five working days later is Friday 2026-12-04


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "data" / "shop.sqlite"


@pytest.fixture
def shop(db: Path) -> Actions:
    return load_actions(SHOP, {"database": db, "today": TODAY})


async def call(actions: Actions, name: str, **slots: Any) -> ActionResult:
    return await actions.call(name, slots)


def query(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(db)) as conn:
        return conn.execute(sql, params).fetchall()


def test_registers_every_action_and_seeds_the_database(shop: Actions, db: Path) -> None:
    assert shop.names() == {
        "order_status",
        "cancel_order",
        "change_order",
        "change_shipping_address",
        "get_refund",
        "track_refund",
        "check_invoice",
        "get_invoice",
        "order_exists",
        "invoice_exists",
    }
    assert query(db, "SELECT count(*) FROM customers") == [(12,)]
    assert query(db, "SELECT count(*) FROM orders") == [(30,)]
    assert {s for (s,) in query(db, "SELECT status FROM orders")} == {
        "processing",
        "shipped",
        "delivered",
        "cancelled",
    }
    assert {s for (s,) in query(db, "SELECT status FROM refunds")} == {"requested", "approved", "paid"}
    assert {s for (s,) in query(db, "SELECT status FROM invoices")} == {"paid", "unpaid"}
    for email, phone in query(db, "SELECT email, phone FROM customers"):
        assert email.endswith("@example.com")
        assert " 555 01" in phone
    maria = query(db, "SELECT name, email FROM customers WHERE name = 'Maria Gonzalez'")
    assert maria == [("Maria Gonzalez", "maria.gonzalez@example.com")]


@pytest.mark.parametrize(
    ("order_id", "status", "item", "total", "delivery_date", "city"),
    [
        ("457219", "processing", "a blue denim jacket", "89.99", "2026-12-04", "Leeds"),
        ("830112", "shipped", "a pair of running shoes", "120.00", "2026-12-01", "Boston"),
        ("932017", "delivered", "a coffee grinder", "49.99", "2026-11-21", "Boston"),
        ("550981", "cancelled", "a wireless keyboard", "59.00", None, "Denver"),
        ("812339", "delivered", "a ceramic desk lamp", "64.00", "2026-11-17", "Austin"),
        ("611420", "processing", "two cotton t-shirts", "35.50", "2026-12-05", "Denver"),
    ],
)
async def test_sample_orders(
    shop: Actions, order_id: str, status: str, item: str, total: str, delivery_date: str | None, city: str
) -> None:
    result = await call(shop, "order_status", order_id=order_id)
    assert result.ok, result
    assert result.data["status"] == status
    assert (result.data["item"], result.data["total"], result.data["city"]) == (item, total, city)
    assert result.data["delivery_date"] == delivery_date
    assert date.fromisoformat(result.data["placed_date"]) <= date.fromisoformat(TODAY)


async def test_order_ids_keep_their_digits_only(shop: Actions) -> None:
    for spoken in ("457-219", " 457 219 ", "#457219"):
        assert (await call(shop, "order_status", order_id=spoken)).data["order_id"] == "457219"
    unknown = await call(shop, "order_status", order_id="000000")
    assert unknown == ActionResult(False, {"order_id": "000000"}, "unknown_order")


async def test_cancel_order(shop: Actions, db: Path) -> None:
    result = await call(shop, "cancel_order", order_id="457219")
    assert result == ActionResult(
        True, {"order_id": "457219", "item": "a blue denim jacket", "total": "89.99"}
    )
    assert query(db, "SELECT status, delivery_date FROM orders WHERE order_id = '457219'") == [
        ("cancelled", None)
    ]
    again = await call(shop, "cancel_order", order_id="457219")
    assert again == ActionResult(False, {"order_id": "457219", "status": "cancelled"}, "already_cancelled")


@pytest.mark.parametrize("action", ["cancel_order", "change_order", "change_shipping_address"])
@pytest.mark.parametrize(
    ("order_id", "error"),
    [
        ("830112", "already_shipped"),
        ("932017", "already_delivered"),
        ("550981", "already_cancelled"),
        ("999999", "unknown_order"),
    ],
)
async def test_only_processing_orders_can_be_changed(
    shop: Actions, db: Path, action: str, order_id: str, error: str
) -> None:
    before = query(db, "SELECT * FROM orders")
    slots = {"change_request": "a bigger size", "street": "1 Main Street", "delivery_city": "Austin"}
    result = await call(shop, action, order_id=order_id, **slots)
    assert (result.ok, result.error, result.data["order_id"]) == (False, error, order_id)
    if error != "unknown_order":
        assert result.data["status"] == error.removeprefix("already_")
    assert query(db, "SELECT * FROM orders") == before
    assert query(db, "SELECT count(*) FROM change_requests") == [(0,)]


async def test_change_order_records_the_request(shop: Actions, db: Path) -> None:
    result = await call(shop, "change_order", order_id="611420", change_request="make them both large")
    assert result == ActionResult(True, {"order_id": "611420", "item": "two cotton t-shirts"})
    assert query(db, "SELECT * FROM change_requests") == [("611420", "make them both large", TODAY)]


async def test_change_shipping_address(shop: Actions, db: Path) -> None:
    result = await call(
        shop, "change_shipping_address", order_id="457219", street="9 Briggate", delivery_city="York"
    )
    data = {
        "order_id": "457219",
        "item": "a blue denim jacket",
        "street": "9 Briggate",
        "delivery_city": "York",
    }
    assert result == ActionResult(True, data)
    assert query(db, "SELECT street, city FROM orders WHERE order_id = '457219'") == [("9 Briggate", "York")]
    assert (await call(shop, "order_status", order_id="457219")).data["city"] == "York"


async def test_full_refund_then_track_it(shop: Actions) -> None:
    result = await call(shop, "get_refund", order_id="932017", refund_amount=None)
    assert result.ok, result
    assert result.data["amount"] == "49.99"
    assert result.data["expected_date"] == "2026-12-04"
    assert result.data["refund_id"].isdigit()
    tracked = await call(shop, "track_refund", order_id="932017")
    data = {"order_id": "932017", "amount": "49.99", "status": "requested", "expected_date": "2026-12-04"}
    assert tracked == ActionResult(True, data)
    again = await call(shop, "get_refund", order_id="932017")
    assert (again.ok, again.error, again.data["amount"], again.data["status"]) == (
        False,
        "refund_exists",
        "49.99",
        "requested",
    )


async def test_partial_refund(shop: Actions) -> None:
    result = await call(shop, "get_refund", order_id="529874", refund_amount="$20")
    assert (result.ok, result.data["amount"]) == (True, "20.00")


@pytest.mark.parametrize(
    ("order_id", "amount", "error"),
    [
        ("830112", None, "not_delivered"),
        ("457219", None, "not_delivered"),
        ("550981", None, "already_cancelled"),
        ("812339", None, "refund_exists"),
        ("932017", "49.999", None),  # malformed amount: ActionFailed, see below
        ("932017", "50.00", "amount_too_high"),
        ("123456", None, "unknown_order"),
    ],
)
async def test_refund_failures(
    shop: Actions, db: Path, order_id: str, amount: str | None, error: str
) -> None:
    if error is None:
        with pytest.raises(ActionFailed, match="raised ValueError: refund_amount"):
            await call(shop, "get_refund", order_id=order_id, refund_amount=amount)
        return
    result = await call(shop, "get_refund", order_id=order_id, refund_amount=amount)
    assert (result.ok, result.error, result.data["order_id"]) == (False, error, order_id)
    if error == "amount_too_high":
        assert result.data["total"] == "49.99"
    if error == "not_delivered":
        assert result.data["status"] in {"processing", "shipped"}
    assert query(db, "SELECT count(*) FROM refunds") == [(6,)]


async def test_track_refund(shop: Actions) -> None:
    result = await call(shop, "track_refund", order_id="812339")
    data = {"order_id": "812339", "amount": "64.00", "status": "approved", "expected_date": "2026-12-02"}
    assert result == ActionResult(True, data)
    none = await call(shop, "track_refund", order_id="932017")
    assert none == ActionResult(False, {"order_id": "932017", "status": "delivered"}, "no_refund")
    unknown = await call(shop, "track_refund", order_id="111111")
    assert unknown == ActionResult(False, {"order_id": "111111"}, "unknown_order")


async def test_check_invoice(shop: Actions) -> None:
    paid = await call(shop, "check_invoice", invoice_id="INV52210")
    data = {"invoice_id": "52210", "order_id": "932017", "amount": "49.99", "issued_date": "2026-11-15"}
    assert paid == ActionResult(True, {**data, "status": "paid"})
    unpaid = await call(shop, "check_invoice", invoice_id="37777")
    assert (unpaid.data["order_id"], unpaid.data["amount"], unpaid.data["status"]) == (
        "830112",
        "120.00",
        "unpaid",
    )
    unknown = await call(shop, "check_invoice", invoice_id="99999")
    assert unknown == ActionResult(False, {"invoice_id": "99999"}, "unknown_invoice")


async def test_get_invoice(shop: Actions, db: Path) -> None:
    on_file = await call(shop, "get_invoice", invoice_id="52210", email=None)
    assert on_file == ActionResult(True, {"invoice_id": "52210", "sent_to": "maria.gonzalez@example.com"})
    given = await call(shop, "get_invoice", invoice_id="37 777", email="accounts@example.com")
    assert given == ActionResult(True, {"invoice_id": "37777", "sent_to": "accounts@example.com"})
    assert query(db, "SELECT sent_to FROM invoices WHERE invoice_id = '37777'") == [("accounts@example.com",)]
    unknown = await call(shop, "get_invoice", invoice_id="INV 1")
    assert unknown == ActionResult(False, {"invoice_id": "1"}, "unknown_invoice")


@pytest.mark.parametrize(
    ("action", "slots"),
    [
        ("order_status", {}),
        ("cancel_order", {"order_id": None}),
        ("change_order", {"order_id": "457219"}),
        ("change_shipping_address", {"order_id": "457219", "street": "9 Briggate"}),
        ("check_invoice", {"invoice_id": "  "}),
    ],
)
async def test_missing_required_slot_is_a_back_end_failure(
    shop: Actions, action: str, slots: dict[str, Any]
) -> None:
    with pytest.raises(ActionFailed, match=r"raised ValueError: slot .* is required"):
        await shop.call(action, slots)


def _race(shop: Actions, name: str, slots: dict[str, Any], threads: int = 8) -> list[ActionResult]:
    """Start the same call in several threads at once, each with its own event loop."""
    barrier, results = threading.Barrier(threads), []

    def worker() -> None:
        barrier.wait()
        results.append(asyncio.run(shop.call(name, slots)))

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(30)
    assert len(results) == threads
    return results


def test_concurrent_cancels_succeed_exactly_once(shop: Actions) -> None:
    results = _race(shop, "cancel_order", {"order_id": "611420"})
    assert sum(r.ok for r in results) == 1
    assert {r.error for r in results if not r.ok} == {"already_cancelled"}


def test_concurrent_refunds_open_exactly_one(shop: Actions, db: Path) -> None:
    results = _race(shop, "get_refund", {"order_id": "932017"})
    assert sum(r.ok for r in results) == 1
    assert {r.error for r in results if not r.ok} == {"refund_exists"}
    assert query(db, "SELECT count(*) FROM refunds WHERE order_id = '932017'") == [(1,)]


async def test_existing_database_is_kept_and_seed_database_resets_it(shop: Actions, db: Path) -> None:
    await call(shop, "cancel_order", order_id="457219")
    reloaded = load_actions(SHOP, {"database": str(db), "today": TODAY})
    assert (await call(reloaded, "order_status", order_id="457219")).data["status"] == "cancelled"
    seed_database(db, date.fromisoformat(TODAY))
    assert (await call(reloaded, "order_status", order_id="457219")).data["status"] == "processing"


def test_seeding_is_atomic(db: Path) -> None:
    """Readers polling the file while it is reseeded always find the whole database."""
    seed_database(db)
    stop, seen, errors = threading.Event(), set(), []

    def reader() -> None:
        while not stop.is_set():
            try:
                seen.add(
                    query(db, "SELECT (SELECT count(*) FROM orders), (SELECT count(*) FROM invoices)")[0]
                )
            except sqlite3.Error as exc:
                errors.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for _ in range(15):
            seed_database(db)
    finally:
        stop.set()
        thread.join(10)
    assert errors == []
    assert seen == {(30, 10)}
    assert sorted(p.name for p in db.parent.iterdir()) == ["shop.sqlite"]  # no temp files left over


def test_failed_seeding_leaves_nothing_behind(tmp_path: Path) -> None:
    target = tmp_path / "shop.sqlite"
    target.mkdir()  # os.replace cannot put a file over a directory
    (target / "keep").touch()
    with pytest.raises(OSError):
        seed_database(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shop.sqlite"]
    assert [p.name for p in target.iterdir()] == ["keep"]


@pytest.mark.parametrize(
    ("options", "problem"),
    [({}, "database"), ({"database": "x.sqlite", "today": "29/11/2026"}, "Invalid isoformat")],
)
def test_bad_options_are_domain_errors(tmp_path: Path, options: dict[str, Any], problem: str) -> None:
    options = {k: tmp_path / v if k == "database" else v for k, v in options.items()}
    with pytest.raises(DomainError, match=problem):
        load_actions(SHOP, options)
