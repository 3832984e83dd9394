"""The shop domain's back end: a real SQLite database of a small online store, seeded with sample data.

A company replaces this file (or uses webhooks) to reach its own systems; this one exists so the default
domain works end to end offline, and so conversation tests have fixed records to talk about. Seed dates are
relative to the business "today" (`options["today"]`, an ISO date, else the real date), so the data stays
plausible whenever it is created. Fixed sample records (d = days from today when seeded):

    ====== ========== ======================== ====== ============================================
    order  status     item                     total  notes
    ====== ========== ======================== ====== ============================================
    457219 processing a blue denim jacket       89.99 Leeds; can be cancelled / changed / readdressed
    830112 shipped    a pair of running shoes  120.00 Boston; delivery d+2; invoice 37777 unpaid
    932017 delivered  a coffee grinder          49.99 Boston; no refund yet; invoice 52210 paid
    550981 cancelled  a wireless keyboard       59.00 Denver
    812339 delivered  a ceramic desk lamp       64.00 refund 700101 64.00 approved, expected d+3
    611420 processing two cotton t-shirts       35.50 Denver
    ====== ========== ======================== ====== ============================================

    invoice 52210: order 932017, 49.99, paid      invoice 37777: order 830112, 120.00, unpaid
    customer 1: Maria Gonzalez, maria.gonzalez@example.com (orders 830112, 932017)

Around them: 12 customers, 30 orders in every status, refunds in every status, 10 invoices. All emails are
at example.com and all phone numbers in the fictional 555-01xx range.

Actions (slot names in brackets) answer `ActionResult`s with dates as "YYYY-MM-DD" and amounts as "49.99":
order_status(order_id), cancel_order(order_id), change_order(order_id, change_request),
change_shipping_address(order_id, street, delivery_city), get_refund(order_id, refund_amount?),
track_refund(order_id), check_invoice(invoice_id), get_invoice(invoice_id, email?). Ids keep their digits
only ("INV 52210" -> "52210"). order_exists(order_id) and invoice_exists(invoice_id) are the slots' look-ups
(slots.yaml): `ok` says whether the number exists and nothing else, so trying the readings of a misheard
number tells the caller nothing about someone else's order. Each call opens its own connection (actions
run in worker threads) and does its check and write in one IMMEDIATE transaction, so concurrent calls cannot
both cancel one order.
"""

from __future__ import annotations

import os
import re
import sqlite3
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

from voicebot.dialogue.actions import ActionResult, Actions

_SCHEMA = """
CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL, phone TEXT NOT NULL,
    city TEXT NOT NULL);
CREATE TABLE orders (order_id TEXT PRIMARY KEY, customer_id INTEGER NOT NULL REFERENCES customers(id),
    item TEXT NOT NULL, total REAL NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('processing', 'shipped', 'delivered', 'cancelled')),
    placed_date TEXT NOT NULL, delivery_date TEXT, street TEXT NOT NULL, city TEXT NOT NULL);
CREATE TABLE refunds (refund_id INTEGER PRIMARY KEY,
    order_id TEXT NOT NULL UNIQUE REFERENCES orders(order_id), amount REAL NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('requested', 'approved', 'paid')),
    requested_date TEXT NOT NULL, expected_date TEXT NOT NULL);
CREATE TABLE invoices (invoice_id TEXT PRIMARY KEY, order_id TEXT NOT NULL REFERENCES orders(order_id),
    amount REAL NOT NULL, issued_date TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('paid', 'unpaid')), sent_to TEXT);
CREATE TABLE change_requests (order_id TEXT NOT NULL REFERENCES orders(order_id), request TEXT NOT NULL,
    created TEXT NOT NULL);
"""

_CUSTOMERS = [  # id, name, email user, phone, city
    (1, "Maria Gonzalez", "maria.gonzalez", "+1 617 555 0101", "Boston"),
    (2, "James Carter", "james.carter", "+1 303 555 0102", "Denver"),
    (3, "Aisha Khan", "aisha.khan", "+1 212 555 0103", "Leeds"),
    (4, "Tom Becker", "tom.becker", "+1 512 555 0104", "Austin"),
    (5, "Linda Park", "linda.park", "+1 206 555 0105", "Seattle"),
    (6, "David Okafor", "david.okafor", "+1 312 555 0106", "Chicago"),
    (7, "Sophie Martin", "sophie.martin", "+1 503 555 0107", "Portland"),
    (8, "Raj Patel", "raj.patel", "+1 404 555 0108", "Atlanta"),
    (9, "Emma Wilson", "emma.wilson", "+1 305 555 0109", "Miami"),
    (10, "Lucas Rossi", "lucas.rossi", "+1 415 555 0110", "San Francisco"),
    (11, "Hannah Schmidt", "hannah.schmidt", "+1 612 555 0111", "Minneapolis"),
    (12, "Carlos Mendes", "carlos.mendes", "+1 702 555 0112", "Las Vegas"),
]

_ORDERS = [  # order_id, customer, item, total, status, placed d, delivery d (None: cancelled), street, city
    ("457219", 3, "a blue denim jacket", 89.99, "processing", -1, 5, "12 Park Row", "Leeds"),
    ("830112", 1, "a pair of running shoes", 120.00, "shipped", -4, 2, "48 Beacon Street", "Boston"),
    ("932017", 1, "a coffee grinder", 49.99, "delivered", -14, -8, "48 Beacon Street", "Boston"),
    ("550981", 2, "a wireless keyboard", 59.00, "cancelled", -10, None, "7 Larimer Street", "Denver"),
    ("812339", 4, "a ceramic desk lamp", 64.00, "delivered", -20, -12, "305 Congress Avenue", "Austin"),
    ("611420", 2, "two cotton t-shirts", 35.50, "processing", 0, 6, "7 Larimer Street", "Denver"),
    ("104882", 5, "a rain jacket", 75.00, "processing", -2, 4, "900 Pine Street", "Seattle"),
    ("118305", 6, "a set of kitchen knives", 139.00, "processing", -1, 5, "20 Wacker Drive", "Chicago"),
    ("127746", 7, "a yoga mat", 25.00, "processing", 0, 7, "14 Alder Street", "Portland"),
    ("203918", 8, "a pair of headphones", 199.99, "shipped", -3, 1, "88 Peachtree Street", "Atlanta"),
    ("219054", 9, "a beach towel", 19.50, "shipped", -5, 3, "6 Ocean Drive", "Miami"),
    ("226671", 10, "a leather wallet", 45.00, "shipped", -2, 2, "310 Market Street", "San Francisco"),
    ("302457", 11, "a winter coat", 210.00, "delivered", -30, -22, "55 Nicollet Mall", "Minneapolis"),
    ("318842", 12, "a travel backpack", 95.00, "delivered", -25, -18, "3 Fremont Street", "Las Vegas"),
    ("325190", 5, "a water bottle", 15.99, "delivered", -12, -6, "900 Pine Street", "Seattle"),
    ("341776", 6, "a cast iron pan", 42.00, "delivered", -40, -33, "20 Wacker Drive", "Chicago"),
    ("358203", 7, "a wool scarf", 29.90, "delivered", -18, -11, "14 Alder Street", "Portland"),
    ("366914", 8, "a smart watch", 249.00, "delivered", -35, -28, "88 Peachtree Street", "Atlanta"),
    ("402785", 9, "a pair of sandals", 39.99, "cancelled", -9, None, "6 Ocean Drive", "Miami"),
    ("415530", 10, "a phone case", 12.99, "cancelled", -6, None, "310 Market Street", "San Francisco"),
    ("503611", 11, "a table lamp", 58.00, "processing", -1, 6, "55 Nicollet Mall", "Minneapolis"),
    ("517248", 12, "a baseball cap", 22.00, "shipped", -4, 1, "3 Fremont Street", "Las Vegas"),
    ("529874", 1, "a reading lamp", 34.50, "delivered", -45, -38, "48 Beacon Street", "Boston"),
    ("636502", 3, "a pair of hiking boots", 149.00, "delivered", -16, -9, "12 Park Row", "Leeds"),
    ("648117", 4, "a bluetooth speaker", 79.99, "processing", 0, 5, "305 Congress Avenue", "Austin"),
    ("702364", 5, "a linen shirt", 48.00, "shipped", -3, 2, "900 Pine Street", "Seattle"),
    ("715839", 6, "a coffee table book", 32.00, "delivered", -22, -15, "20 Wacker Drive", "Chicago"),
    ("726045", 7, "a set of bath towels", 54.00, "cancelled", -15, None, "14 Alder Street", "Portland"),
    ("804426", 8, "a laptop sleeve", 27.50, "delivered", -28, -20, "88 Peachtree Street", "Atlanta"),
    ("915738", 9, "a kettle", 36.00, "processing", -2, 4, "6 Ocean Drive", "Miami"),
]

_REFUNDS = [  # refund_id, order_id, amount, status, requested d, expected d
    (700101, "812339", 64.00, "approved", -5, 3),
    (700102, "302457", 210.00, "paid", -20, -13),
    (700103, "318842", 40.00, "requested", -1, 6),
    (700104, "341776", 42.00, "paid", -30, -24),
    (700105, "366914", 249.00, "approved", -4, 4),
    (700106, "636502", 149.00, "requested", -2, 5),
]

_INVOICES = [  # invoice_id, order_id, status (amount = order total, issued = placed date)
    ("52210", "932017", "paid"),
    ("37777", "830112", "unpaid"),
    ("41005", "457219", "unpaid"),
    ("41018", "611420", "unpaid"),
    ("43321", "812339", "paid"),
    ("44802", "203918", "unpaid"),
    ("45536", "302457", "paid"),
    ("46190", "366914", "paid"),
    ("47233", "529874", "paid"),
    ("48875", "636502", "paid"),
]


def seed_database(path: Path, today: date | None = None) -> None:
    """(Re)create a freshly seeded database at `path`, atomically: readers see the old or whole new file."""
    today = today or date.today()

    def day(offset: int | None) -> str | None:
        return None if offset is None else (today + timedelta(days=offset)).isoformat()

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with closing(sqlite3.connect(tmp_name)) as conn, conn:
            conn.executescript(_SCHEMA)
            conn.executemany(
                "INSERT INTO customers VALUES (?, ?, ?, ?, ?)",
                [(i, name, f"{user}@example.com", phone, city) for i, name, user, phone, city in _CUSTOMERS],
            )
            conn.executemany(
                "INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(o, c, it, t, s, day(p), day(d), st, ci) for o, c, it, t, s, p, d, st, ci in _ORDERS],
            )
            conn.executemany(
                "INSERT INTO refunds VALUES (?, ?, ?, ?, ?, ?)",
                [(r, o, a, s, day(q), day(e)) for r, o, a, s, q, e in _REFUNDS],
            )
            conn.executemany(
                "INSERT INTO invoices SELECT ?, order_id, total, placed_date, ?, NULL FROM orders "
                "WHERE order_id = ?",
                [(inv, status, order) for inv, order, status in _INVOICES],
            )
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class _Shop:
    path: Path
    today_iso: str | None

    def today(self) -> date:
        # Read per call: a long-running bot without a fixed "today" must not freeze the date at start-up.
        return date.fromisoformat(self.today_iso) if self.today_iso else date.today()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One connection per call; BEGIN IMMEDIATE so a check and the write after it cannot interleave."""
        with closing(sqlite3.connect(self.path, timeout=5, isolation_level=None)) as conn:
            conn.row_factory = sqlite3.Row
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")


def _required(slots: Mapping[str, Any], name: str) -> str:
    value = slots.get(name)
    if value is None or not str(value).strip():
        raise ValueError(f"slot {name!r} is required")
    return str(value).strip()


def _optional(slots: Mapping[str, Any], name: str) -> str | None:
    value = slots.get(name)
    text = "" if value is None else str(value).strip()
    return text or None


def _digits(value: str) -> str:
    return re.sub(r"[^0-9]", "", value)


def _money(amount: float) -> str:
    return f"{amount:.2f}"


def _parse_amount(text: str) -> Decimal:
    cleaned = text.replace(",", "").strip().lstrip("$£€").strip()
    if not re.fullmatch(r"\d+(\.\d{1,2})?", cleaned) or Decimal(cleaned) <= 0:
        raise ValueError(f"refund_amount {text!r} is not a positive amount")
    return Decimal(cleaned)


def _working_days_after(start: date, days: int) -> date:
    current = start
    while days:
        current += timedelta(days=1)
        if current.weekday() < 5:
            days -= 1
    return current


def _order(conn: sqlite3.Connection, slots: Mapping[str, Any]) -> tuple[str, sqlite3.Row | None]:
    order_id = _digits(_required(slots, "order_id"))
    row = conn.execute("SELECT * FROM orders WHERE order_id = ?", (order_id,)).fetchone()
    return order_id, row


def order_status(shop: _Shop, slots: Mapping[str, Any]) -> ActionResult:
    with shop.transaction() as conn:
        order_id, row = _order(conn, slots)
    if row is None:
        return ActionResult(False, {"order_id": order_id}, "unknown_order")
    keys = ("status", "item", "placed_date", "delivery_date", "city")
    return ActionResult(
        True, {"order_id": order_id, "total": _money(row["total"]), **{k: row[k] for k in keys}}
    )


def order_exists(shop: _Shop, slots: Mapping[str, Any]) -> ActionResult:
    with shop.transaction() as conn:
        _, row = _order(conn, slots)
    return ActionResult(True) if row is not None else ActionResult(False, error="unknown_order")


def _update_processing(
    shop: _Shop, slots: Mapping[str, Any], write: Callable[[sqlite3.Connection, sqlite3.Row], dict[str, Any]]
) -> ActionResult:
    """Shared guard of cancel/change/readdress: only a processing order may still be touched."""
    with shop.transaction() as conn:
        order_id, row = _order(conn, slots)
        if row is None:
            return ActionResult(False, {"order_id": order_id}, "unknown_order")
        status = row["status"]
        if status != "processing":  # already_shipped, already_delivered, already_cancelled
            return ActionResult(False, {"order_id": order_id, "status": status}, f"already_{status}")
        data = write(conn, row)
    return ActionResult(True, {"order_id": order_id, "item": row["item"], **data})


def cancel_order(shop: _Shop, slots: Mapping[str, Any]) -> ActionResult:
    def write(conn: sqlite3.Connection, order: sqlite3.Row) -> dict[str, Any]:
        sql = "UPDATE orders SET status = 'cancelled', delivery_date = NULL WHERE order_id = ?"
        conn.execute(sql, (order["order_id"],))
        return {"total": _money(order["total"])}

    return _update_processing(shop, slots, write)


def change_order(shop: _Shop, slots: Mapping[str, Any]) -> ActionResult:
    request = _required(slots, "change_request")

    def write(conn: sqlite3.Connection, order: sqlite3.Row) -> dict[str, Any]:
        created = shop.today().isoformat()
        conn.execute("INSERT INTO change_requests VALUES (?, ?, ?)", (order["order_id"], request, created))
        return {}

    return _update_processing(shop, slots, write)


def change_shipping_address(shop: _Shop, slots: Mapping[str, Any]) -> ActionResult:
    street, city = _required(slots, "street"), _required(slots, "delivery_city")

    def write(conn: sqlite3.Connection, order: sqlite3.Row) -> dict[str, Any]:
        sql = "UPDATE orders SET street = ?, city = ? WHERE order_id = ?"
        conn.execute(sql, (street, city, order["order_id"]))
        return {"street": street, "delivery_city": city}

    return _update_processing(shop, slots, write)


def get_refund(shop: _Shop, slots: Mapping[str, Any]) -> ActionResult:
    amount_text = _optional(slots, "refund_amount")
    wanted = _parse_amount(amount_text) if amount_text else None
    with shop.transaction() as conn:
        order_id, row = _order(conn, slots)
        if row is None:
            return ActionResult(False, {"order_id": order_id}, "unknown_order")
        base = {"order_id": order_id, "status": row["status"]}
        if row["status"] == "cancelled":
            return ActionResult(False, base, "already_cancelled")
        if row["status"] != "delivered":
            return ActionResult(False, base, "not_delivered")
        existing = conn.execute("SELECT * FROM refunds WHERE order_id = ?", (order_id,)).fetchone()
        if existing is not None:
            data = {"order_id": order_id, "amount": _money(existing["amount"]), "status": existing["status"]}
            return ActionResult(False, {**data, "expected_date": existing["expected_date"]}, "refund_exists")
        total = Decimal(_money(row["total"]))
        if wanted is not None and wanted > total:
            return ActionResult(False, {**base, "total": str(total)}, "amount_too_high")
        amount = total if wanted is None else wanted
        today = shop.today()
        expected = _working_days_after(today, 5).isoformat()
        cursor = conn.execute(
            "INSERT INTO refunds (order_id, amount, status, requested_date, expected_date) "
            "VALUES (?, ?, 'requested', ?, ?)",
            (order_id, float(amount), today.isoformat(), expected),
        )
    data = {"refund_id": str(cursor.lastrowid), "amount": _money(float(amount)), "expected_date": expected}
    return ActionResult(True, {"order_id": order_id, **data})


def track_refund(shop: _Shop, slots: Mapping[str, Any]) -> ActionResult:
    with shop.transaction() as conn:
        order_id, row = _order(conn, slots)
        refund = conn.execute("SELECT * FROM refunds WHERE order_id = ?", (order_id,)).fetchone()
    if row is None:
        return ActionResult(False, {"order_id": order_id}, "unknown_order")
    if refund is None:
        return ActionResult(False, {"order_id": order_id, "status": row["status"]}, "no_refund")
    state = {"status": refund["status"], "expected_date": refund["expected_date"]}
    return ActionResult(True, {"order_id": order_id, "amount": _money(refund["amount"]), **state})


def _invoice(conn: sqlite3.Connection, slots: Mapping[str, Any]) -> tuple[str, sqlite3.Row | None]:
    invoice_id = _digits(_required(slots, "invoice_id"))
    row = conn.execute(
        "SELECT invoices.*, customers.email FROM invoices JOIN orders USING (order_id) "
        "JOIN customers ON customers.id = orders.customer_id WHERE invoice_id = ?",
        (invoice_id,),
    ).fetchone()
    return invoice_id, row


def check_invoice(shop: _Shop, slots: Mapping[str, Any]) -> ActionResult:
    with shop.transaction() as conn:
        invoice_id, row = _invoice(conn, slots)
    if row is None:
        return ActionResult(False, {"invoice_id": invoice_id}, "unknown_invoice")
    data = {"order_id": row["order_id"], "amount": _money(row["amount"]), "issued_date": row["issued_date"]}
    return ActionResult(True, {"invoice_id": invoice_id, **data, "status": row["status"]})


def invoice_exists(shop: _Shop, slots: Mapping[str, Any]) -> ActionResult:
    with shop.transaction() as conn:
        _, row = _invoice(conn, slots)
    return ActionResult(True) if row is not None else ActionResult(False, error="unknown_invoice")


def get_invoice(shop: _Shop, slots: Mapping[str, Any]) -> ActionResult:
    email = _optional(slots, "email")
    with shop.transaction() as conn:
        invoice_id, row = _invoice(conn, slots)
        if row is None:
            return ActionResult(False, {"invoice_id": invoice_id}, "unknown_invoice")
        sent_to = email or row["email"]
        conn.execute("UPDATE invoices SET sent_to = ? WHERE invoice_id = ?", (sent_to, invoice_id))
    return ActionResult(True, {"invoice_id": invoice_id, "sent_to": sent_to})


_ACTIONS: dict[str, Callable[[_Shop, Mapping[str, Any]], ActionResult]] = {
    fn.__name__: fn
    for fn in (
        order_status,
        cancel_order,
        change_order,
        change_shipping_address,
        get_refund,
        track_refund,
        check_invoice,
        get_invoice,
        order_exists,
        invoice_exists,
    )
}


def register(actions: Actions, options: Mapping[str, Any]) -> None:
    """Register the shop's actions on `options["database"]`, creating and seeding it on first use."""
    if "database" not in options:
        raise ValueError('the shop domain needs options["database"] (the SQLite file path)')
    path = Path(options["database"])
    today_iso = options.get("today")
    today = date.fromisoformat(str(today_iso)) if today_iso else None  # a bad date fails here, not mid-call
    if not path.exists():
        seed_database(path, today)
    shop = _Shop(path, today.isoformat() if today else None)
    for name, fn in _ACTIONS.items():
        actions.register(name, partial(fn, shop))
