"""Helpers for the record tests: entries to append, and the worker processes.

Workers are top-level functions so ``multiprocessing`` (spawn) can import
them in a fresh interpreter: each opens its own :class:`Record` by URL.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from ccm.record import Entry, MasterKey, Record
from ccm.record.policy import Cap

#: A fixed moment the tests build times from.
T0 = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def entry(
    customer_id: str = "C1",
    *,
    message_id: str | None = None,
    key: str | None = None,
    params: str = "p",
    channel: str = "email",
    message_type: str = "marketing",
    status: str = "generated",
    reason: str | None = None,
    created_at: datetime | None = None,
    template: str = "offer",
    journey: str = "retention",
    pack_version: str = "1.0.0",
    segment: str | None = None,
) -> Entry:
    """An entry with sensible defaults; ``params`` is hashed into ``params_sha256``."""
    mid = message_id or uuid.uuid4().hex
    return Entry(
        message_id=mid,
        idempotency_key=key or f"key:{mid}",
        params_sha256=hashlib.sha256(params.encode()).hexdigest(),
        customer_id=customer_id,
        channel=channel,
        template=template,
        template_version="2",
        pack="acme",
        pack_version=pack_version,
        message_type=message_type,
        journey=journey,
        locale="en_GB",
        created_at=created_at or datetime.now(UTC),
        status=status,
        reason=reason,
        content_sha256=None,
        archival_sha256=None,
        sources_sha256="5" * 64,
        archive_ref=None,
        segment=segment,
    )


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


def raw_rows(rec: Record, table: str) -> list[dict[str, Any]]:
    """Every row of a record table, as the database holds it."""
    with rec.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.text(f"SELECT * FROM {table}"))]


def raw_sql(rec: Record, *statements: str, **params: Any) -> None:
    """Run statements straight against the database, as a tamperer would."""
    with rec.engine.begin() as conn:
        for statement in statements:
            conn.execute(sa.text(statement), params)


# -- worker processes ----------------------------------------------------------------


def append_loop(url: str, key_text: str, worker: int, customers: list[str], count: int,
                out: Any) -> None:
    """Append ``count`` messages (with content) round-robin over ``customers``; report ids."""
    record = Record(url, master_key=MasterKey.from_text(key_text))
    made = []
    for i in range(count):
        cid = customers[i % len(customers)]
        e = entry(cid, message_id=f"w{worker}-{i}", message_type="operational")
        record.append(e, content=f"worker {worker} message {i}".encode())
        made.append(e.message_id)
    record.close()
    out.put((worker, made))


def cap_race(url: str, worker: int, barrier: Any, out: Any) -> None:
    """Wait for every worker, then append one capped marketing message for one customer."""
    record = Record(url)
    cap = Cap(name="marketing-weekly", max=3, window_days=7, message_type="marketing")
    e = entry("RACE", message_id=f"race-{worker}")
    barrier.wait()
    result = record.append(e, caps=[cap])
    record.close()
    out.put((result.status, result.reason))


def append_forever(url: str, key_text: str, started: Any) -> None:
    """Append (with content and archival copies) until killed; ``started`` counts commits."""
    record = Record(url, master_key=MasterKey.from_text(key_text))
    i = 0
    while True:
        cid = f"K{i % 5}"
        record.append(entry(cid, message_id=f"kill-{i}", message_type="operational"),
                      content=b"x" * 2048 + str(i).encode(), archival=b"%PDF-1.7 " * 100)
        if i % 3 == 0:
            record.add_event(f"kill-{i}", "sent")
        i += 1
        started.value = i
        if i > 100_000:  # pragma: no cover - the test kills us long before
            return
        time.sleep(0)
