"""Copies of one provider webhook arriving at the same moment -- an inbound SMS keyword (one
MessageSid), a status callback -- through the web app in threads, and from several
processes, on SQLite and PostgreSQL. Exactly one is taken; the others are replays that
record nothing."""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from ccm.delivery.events import Refused, record_keyword
from ccm.delivery.twilio import sign
from ccm.engagement.app import create_app
from ccm.engagement.tracking import TrackingKey
from ccm.engagement.webhooks import WebhookSettings
from ccm.record import Record
from tests.record._support import entry

NOON = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
TOKEN = "twilio-auth-token-for-tests"
PUBLIC = "https://hooks.example.com"
PHONE = "+447700900123"
SMS_IDS = ("5" * 32, "6" * 32)  # the latest SMS of C1 and of C2
SPAWN = multiprocessing.get_context("spawn")


class Gate:
    """A customer directory whose lookup waits until ``parties`` callers are in it.

    ``record_keyword`` asks the directory after its replay check and before it adds
    anything: every copy of the keyword is then past the check before any adds, the
    moment a check-then-add lets all of them through.
    """

    def __init__(self, barrier: Any, customers: tuple[str, ...] = ("C1",)) -> None:
        self.barrier = barrier
        self.customers = customers

    def customers_for_phone(self, phone: str) -> tuple[str, ...]:
        self.barrier.wait()
        return self.customers if phone == PHONE else ()

    def customer_for_phone(self, phone: str) -> str | None:
        return self.customers_for_phone(phone)[0] if phone == PHONE else None


@pytest.fixture
def rec(record_url: str) -> Iterator[Record]:
    """A record (SQLite and PostgreSQL) where C1 and C2 (one family phone) each have an SMS."""
    store = Record(record_url)
    for customer, message_id in zip(("C1", "C2"), SMS_IDS, strict=True):
        store.append(entry(customer, message_id=message_id, channel="sms", created_at=NOON))
    yield store
    store.close()


def keyword_events(rec: Record) -> list[tuple[str, str, str | None]]:
    """(message, kind, sid) of every event the keywords added, in order."""
    return [(e.message_id[:1], e.kind, (e.data or {}).get("provider_id"))
            for mid in SMS_IDS for e in rec.events(mid)]


def post_at_once(app: Any, form: dict[str, str], n: int,
                 path: str = "/twilio/inbound") -> list[int]:
    """POST ``form`` (signed as Twilio signs it) ``n`` times concurrently; the statuses."""
    headers = {"X-Twilio-Signature": sign(TOKEN, PUBLIC + path, form.items())}

    async def run() -> list[int]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://testserver") as client:
            answers = await asyncio.gather(*(
                client.post(path, data=form, headers=headers) for _ in range(n)))
        return [a.status_code for a in answers]

    return asyncio.run(run())


class GatedRecord:
    """A record whose ``events(message_id)`` waits until ``parties`` callers are in it.

    A status callback reads the message's events to refuse a replay, then adds: every
    copy is past that read before any adds.
    """

    def __init__(self, record: Record, barrier: Any) -> None:
        self._record = record
        self._barrier = barrier

    def __getattr__(self, name: str) -> Any:
        return getattr(self._record, name)

    def events(self, message_id: str) -> Any:
        self._barrier.wait()
        return self._record.events(message_id)


@pytest.mark.parametrize(("status", "code", "added"), [
    ("delivered", "", ["delivered"]),
    ("undelivered", "30005", ["bounced", "suppressed"]),
    ("failed", "21610", ["failed", "opted_out"]),
])
def test_one_status_callback_posted_eight_times_at_once_is_recorded_once(
    rec: Record, status: str, code: str, added: list[str]
) -> None:
    """Eight copies of one status callback, all past the replay read before any is recorded:
    one answers 200, seven 409, and the status (with what it causes) is recorded once."""
    n = 8
    sid = "SM" + "a" * 32
    rec.add_event(SMS_IDS[0], "sent", at=NOON, data={"provider_id": sid})
    settings = WebhookSettings(twilio_auth_token=TOKEN, public_url=PUBLIC,
                               clock=lambda: NOON + timedelta(minutes=3))
    gated = GatedRecord(rec, threading.Barrier(n, timeout=30))
    app = create_app(gated, TrackingKey(b"t" * 32), webhooks=settings)
    form = {"MessageSid": sid, "MessageStatus": status, **({"ErrorCode": code} if code else {})}
    statuses = post_at_once(app, form, n, "/twilio/status")
    assert sorted(statuses) == [200] + [409] * (n - 1)
    assert [e.kind for e in rec.events(SMS_IDS[0])] == ["sent", *added]
    assert rec.verify().ok


@pytest.mark.parametrize("customers", [("C1",), ("C1", "C2")], ids=["one", "family"])
@pytest.mark.parametrize("body", ["STOP", "START"])
def test_one_keyword_posted_eight_times_at_once_is_taken_once(
    rec: Record, customers: tuple[str, ...], body: str
) -> None:
    """Eight copies of one STOP (or of a START that changes nothing) reach the app together,
    all past the replay check before any is recorded: one answers 200, seven 409, and the
    record holds one ``keyword`` event for the sid (and one ``opted_out`` per customer)."""
    n = 8
    gate = Gate(threading.Barrier(n, timeout=30), customers)
    settings = WebhookSettings(twilio_auth_token=TOKEN, public_url=PUBLIC, directory=gate,
                               clock=lambda: NOON + timedelta(minutes=3))
    app = create_app(rec, TrackingKey(b"t" * 32), webhooks=settings)
    sid = "SM" + "e" * 32
    statuses = post_at_once(app, {"From": PHONE, "Body": body, "MessageSid": sid}, n)
    assert sorted(statuses) == [200] + [409] * (n - 1)
    changes = [(m[:1], "opted_out", sid) for m in SMS_IDS[:len(customers)]] \
        if body == "STOP" else []
    assert sorted(keyword_events(rec)) == sorted([("5", "keyword", sid), *changes])
    if body == "STOP":
        for customer in customers:
            assert rec.consent_overrides(customer) == {"blocked:sms": False, "sms": False}
    assert rec.verify().ok


def _take(url: str, barrier: Any, sid: str, out: Any) -> None:
    """A worker process: its own record connection, one STOP; puts 'taken' or the refusal."""
    store = Record(url)
    try:
        record_keyword(store, Gate(barrier), PHONE, "stop", now=NOON, provider_id=sid)
        out.put("taken")
    except Refused as exc:
        out.put(exc.reason)
    finally:
        store.close()


@pytest.mark.slow
def test_one_keyword_from_four_processes_at_once_is_taken_once(
    rec: Record, record_url: str
) -> None:
    """Four processes (as four web app workers would) handle the same STOP together: one
    takes it, three are refused as replays; one ``opted_out`` and one ``keyword`` event."""
    n = 4
    barrier = SPAWN.Barrier(n, timeout=60)
    out = SPAWN.Queue()
    sid = "SM" + "f" * 32
    procs = [SPAWN.Process(target=_take, args=(record_url, barrier, sid, out)) for _ in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        if p.is_alive():  # pragma: no cover - only when something hangs
            p.kill()
            pytest.fail(f"worker {p.pid} hung")
        assert p.exitcode == 0, f"worker exited with {p.exitcode}"
    assert sorted(out.get(timeout=5) for _ in range(n)) == ["replay"] * (n - 1) + ["taken"]
    assert sorted(keyword_events(rec)) == [("5", "keyword", sid), ("5", "opted_out", sid)]
    assert rec.consent_overrides("C1") == {"blocked:sms": False, "sms": False}
    assert rec.verify().ok
