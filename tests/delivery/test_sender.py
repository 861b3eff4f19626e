"""The outbox and the sender: render-and-queue, send through real servers, every transition an
event, retries, failures, review, quiet-hours deferral and crash recovery."""

from __future__ import annotations

import email
import email.policy
import random
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from ccm.delivery import FolderTransport, Retry, Route, Sender
from ccm.delivery.sms import TwilioSettings
from ccm.delivery.smtp import SmtpSettings
from ccm.delivery.verp import message_id_from
from ccm.errors import SenderBusy
from ccm.record import Outbox, Record

from ._servers import SmsApi, SmtpServer, sms_api, smtp_server
from .conftest import KEY, NOON, queue_engine, reminder


class Clock:
    """A settable clock for the sender that ticks one millisecond per reading (so events
    have an order in time)."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now


def smtp_route(server: SmtpServer, **retry: int) -> Route:
    return Route("email", "smtp", SmtpSettings(
        host=server.host, port=server.port, security="none",
        bounce_address="bounces@acme.example", timeout=10), retry=Retry(**retry))


def sms_route(api: SmsApi) -> Route:
    return Route("sms", "twilio", TwilioSettings(
        account_sid=api.account_sid, auth_token=api.auth_token, from_="ACME",
        api_base=api.base))


def kinds(rec: Record, message_id: str) -> list[str]:
    return [e.kind for e in rec.events(message_id)]


def test_a_queued_email_goes_out_once_with_every_transition_on_the_timeline(rec: Record) -> None:
    """Rendering queues the email (due now); the sender hands the exact recorded bytes to the
    SMTP server with a VERP sender, and the timeline shows queued, sending, sent."""
    message = queue_engine(rec).render("payment_reminder", reminder(1), channel="email")
    outbox = Outbox(rec)
    assert outbox.get(message.message_id).state == "queued"  # type: ignore[union-attr]
    assert message.meta["due_at"] == NOON.isoformat()
    with smtp_server() as server, Sender(rec, {"email": smtp_route(server)},
                                         clock=Clock(NOON)) as sender:
        report = sender.send_due()
        assert sender.send_due().counts["sent"] == 0  # nothing left: sent once
    assert report.counts["sent"] == 1
    [got] = server.mailbox.messages
    assert got.content == rec.content(message.message_id)
    assert email.message_from_bytes(got.content, policy=email.policy.default)["To"]
    assert message_id_from(got.mail_from) == message.message_id
    assert got.rcpt_tos == ["c1@example.com"]
    item = outbox.get(message.message_id)
    assert item is not None and (item.state, item.attempts, item.transport) == ("sent", 1, "smtp")
    assert item.provider_id == "Q00001"
    assert kinds(rec, message.message_id) == ["queued", "sending", "sent"]
    assert rec.verify().ok


def test_quiet_hours_defer_into_the_queue_and_a_retry_adds_nothing(rec: Record) -> None:
    """At 22:30 London an SMS is generated and queued for 08:00 (not suppressed); the same
    request again is a duplicate that adds nothing; at 07:59 nothing is due, at 08:00 it is
    sent through the provider."""
    late = datetime(2026, 3, 2, 22, 30, tzinfo=NOON.tzinfo)
    engine = queue_engine(rec, clock=late)
    first = engine.render("payment_reminder", reminder(2), channel="sms", idempotency_key="r-2")
    assert (first.status, first.reason) == ("generated", None)
    assert first.meta["defer_until"] == "2026-03-03T08:00:00+00:00"
    again = engine.render("payment_reminder", reminder(2), channel="sms", idempotency_key="r-2")
    assert (again.status, again.message_id) == ("duplicate", first.message_id)
    timeline = rec.timeline("C-0002").to_dict()["messages"]
    assert len(timeline) == 1 and [e["kind"] for e in timeline[0]["events"]] == ["queued"]
    outbox = Outbox(rec)
    assert outbox.due(now=datetime(2026, 3, 3, 7, 59, tzinfo=NOON.tzinfo)) == []
    clock = Clock(datetime(2026, 3, 3, 8, 0, tzinfo=NOON.tzinfo))
    with sms_api() as api, Sender(rec, {"sms": sms_route(api)}, clock=clock) as sender:
        assert sender.send_due().counts["sent"] == 1
    assert [r["To"] for r in api.requests] == ["+447700900123"]
    assert outbox.get(first.message_id).state == "sent"  # type: ignore[union-attr]


def test_missing_consent_still_suppresses_and_queues_nothing(rec: Record) -> None:
    """A marketing SMS without consent is suppressed as before and never queued."""
    from ..examples_helpers import sample

    request = sample("product_offer")
    request["customer"]["consents"] = {"sms": False}
    message = queue_engine(rec).render("product_offer", request, channel="sms")
    assert (message.status, message.reason) == ("suppressed", "consent:sms")
    assert Outbox(rec).get(message.message_id) is None


def test_the_statement_an_email_attaches_is_recorded_but_not_queued(rec: Record) -> None:
    """Engine.render(channel="email") of a statement records the PDF the email attaches
    (the archived document) but queues only the email; asked for every channel, the PDF is
    a message of its own and queued too."""
    from ..examples_helpers import sample

    engine = queue_engine(rec)
    email_only = engine.render("monthly_statement", sample("monthly_statement"), channel="email")
    outbox = Outbox(rec)
    queued = [(i.channel, i.customer_id) for i in outbox.items(states=["queued"])]
    assert queued == [("email", email_only.customer_id)]
    assert sorted(m.entry.channel for m in rec.timeline(email_only.customer_id).messages) \
        == ["email", "pdf"]

    every = engine.render("monthly_statement", sample("monthly_statement", 1))
    assert {m.channel for m in every if outbox.get(m.message_id) is not None} \
        == {"pdf", "email", "sms"}


def test_temporary_failures_back_off_then_fail_permanent_ones_fail_at_once(rec: Record) -> None:
    """451 puts the message back with a growing, jittered delay until max_attempts, then it
    fails; a 554 fails the next message at once. Each step is an event."""
    engine = queue_engine(rec)
    slow = engine.render("payment_reminder", reminder(3), channel="email")
    clock = Clock(NOON)
    with smtp_server() as server:
        server.mailbox.mode = "4xx"
        sender = Sender(rec, {"email": smtp_route(server, max_attempts=3, backoff=10,
                                                  max_backoff=100)},
                        clock=clock, rng=random.Random(7))
        outbox = Outbox(rec)
        dues = []
        for _ in range(3):
            sender.send_due()
            item = outbox.get(slow.message_id)
            assert item is not None
            dues.append(item.due_at)
            clock.now = item.due_at
        assert item.state == "failed" and item.attempts == 3
        first_wait, second_wait = dues[0] - NOON, dues[1] - dues[0]
        assert timedelta(seconds=5) <= first_wait <= timedelta(seconds=10)
        assert timedelta(seconds=10) <= second_wait <= timedelta(seconds=20)
        server.mailbox.mode = "5xx"
        hard = engine.render("payment_reminder", reminder(4), channel="email")
        assert sender.send_due().counts["failed"] == 1
        sender.close()
    assert kinds(rec, slow.message_id) == ["queued", "sending", "retry", "sending", "retry",
                                           "sending", "failed"]
    assert kinds(rec, hard.message_id) == ["queued", "sending", "failed"]
    failed = outbox.get(hard.message_id)
    assert failed is not None and failed.error is not None and "554" in failed.error
    assert server.mailbox.messages == []


def test_an_uncertain_send_goes_to_review_and_an_operator_settles_it(rec: Record) -> None:
    """The server takes the data and hangs up without answering: the message goes to review,
    is not sent again, and resolving it as sent records the decision."""
    message = queue_engine(rec).render("payment_reminder", reminder(5), channel="email")
    with smtp_server() as server:
        server.mailbox.mode = "drop-after-data"
        with Sender(rec, {"email": smtp_route(server)}, clock=Clock(NOON)) as sender:
            assert sender.send_due().counts["review"] == 1
            server.mailbox.mode = None
            assert sender.send_due().counts == dict.fromkeys(
                ("sent", "retry", "failed", "review", "reconciled"), 0)
    assert len(server.mailbox.messages) == 1
    outbox = Outbox(rec)
    assert [i.message_id for i in outbox.items(states=["review"])] == [message.message_id]
    outbox.resolve(message.message_id, "sent", at=NOON + timedelta(hours=1),
                   note="seen in the relay log")
    assert kinds(rec, message.message_id)[-2:] == ["review", "sent"]


def test_a_message_left_sending_by_a_dead_sender_is_never_resent(rec: Record) -> None:
    """A claim whose sender vanished is found by the next sender: the SMTP transport cannot
    tell, so it goes to review and the mailbox stays empty."""
    message = queue_engine(rec).render("payment_reminder", reminder(6), channel="email")
    Outbox(rec).claim(now=NOON, sender="ghost:1:dead", channels=["email"])
    with smtp_server() as server, Sender(rec, {"email": smtp_route(server)},
                                         clock=Clock(NOON)) as sender:
        report = sender.send_due()
    assert report.counts["review"] == 1 and server.mailbox.messages == []
    assert Outbox(rec).get(message.message_id).state == "review"  # type: ignore[union-attr]


def test_the_folder_transport_reconciles_a_crash_exactly(rec: Record, tmp_path: Path) -> None:
    """Folder delivery is checkable: a message whose file was written before the crash is
    settled as sent, one whose file is missing is queued again and written once."""
    engine = queue_engine(rec)
    done = engine.render("payment_reminder", reminder(7), channel="email")
    lost = engine.render("payment_reminder", reminder(8), channel="email")
    folder = FolderTransport(tmp_path / "out")
    outbox = Outbox(rec)
    claimed = outbox.claim(now=NOON, sender="ghost:2:dead", channels=["email"])
    folder.send(claimed.outgoing)  # type: ignore[union-attr]
    outbox.claim(now=NOON, sender="ghost:2:dead", channels=["email"])
    with Sender(rec, {"email": folder}, clock=Clock(NOON)) as sender:
        report = sender.send_due()
    assert report.counts["reconciled"] == 2 and report.counts["sent"] == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        f"{m.message_id}.eml" for m in (done, lost))
    assert outbox.get(done.message_id).state == "sent"  # type: ignore[union-attr]
    assert (tmp_path / "out" / f"{lost.message_id}.eml").read_bytes() == rec.content(
        lost.message_id)


def test_an_erased_customer_is_not_sent(rec: Record, tmp_path: Path) -> None:
    """Erasure destroys the key the recipient is sealed with and fails the queued message in
    its own transaction: the sender finds nothing due. A message an earlier ccm left queued
    after an erasure (emulated) is failed by the sender when it claims it."""

    from ccm.record.outbox import ERASED
    from ccm.record.schema import outbox

    message = queue_engine(rec).render("payment_reminder", reminder(9), channel="email")
    assert rec.erase("C-0009").unsendable == 1
    item = Outbox(rec).get(message.message_id)
    assert item is not None and (item.state, item.error) == ("failed", ERASED)
    out = tmp_path / "out"
    with Sender(rec, {"email": FolderTransport(out)}, clock=Clock(NOON)) as sender:
        report = sender.send_due()
    assert sum(report.counts.values()) == 0 and not out.exists()
    with rec.engine.begin() as conn:  # as a record erased before erasure failed the queue
        conn.execute(outbox.update().where(outbox.c.message_id == message.message_id)
                     .values(state="queued", error=None))
    with Sender(rec, {"email": FolderTransport(out)}, clock=Clock(NOON)) as sender:
        report = sender.send_due()
    assert report.counts["failed"] == 1 and not out.exists()
    item = Outbox(rec).get(message.message_id)
    assert item is not None and (item.state, item.error) == ("failed", ERASED)


def test_one_sender_at_a_time_on_sqlite(tmp_path: Path) -> None:
    """A second sender on the same SQLite record is refused until the first closes."""
    url = f"sqlite:///{tmp_path / 'record.db'}"
    record = Record(url, master_key=KEY)
    first = Sender(record, {"email": FolderTransport(tmp_path / "out")})
    with pytest.raises(SenderBusy, match="another sender"):
        Sender(Record(url, master_key=KEY), {"email": FolderTransport(tmp_path / "out")})
    first.close()
    Sender(record, {"email": FolderTransport(tmp_path / "out")}).close()
    record.close()


def test_no_address_number_or_content_reaches_the_records_tables(rec: Record) -> None:
    """After sends that fail with replies quoting the recipient (SMTP 550 with the address,
    a provider error with the number), no table holds the address, the number or the text."""
    import sqlalchemy as sa

    engine = queue_engine(rec)
    mail = engine.render("payment_reminder", reminder(11, email="eve.quoted@example.org"),
                         channel="email")
    engine.render("payment_reminder", reminder(11, phone="+447700900777"), channel="sms")
    with smtp_server() as server, sms_api() as api:
        server.mailbox.mode = "rcpt-5xx"
        api.errors["+447700900777"] = (400, 21211, "The 'To' number +447700900777 is not a "
                                       "valid phone number.")
        with Sender(rec, {"email": smtp_route(server), "sms": sms_route(api)},
                    clock=Clock(NOON)) as sender:
            assert sender.send_due().counts["failed"] == 2
    with rec.engine.connect() as conn:
        text = repr([list(conn.execute(sa.text(f"SELECT * FROM {table}")))
                     for table in ("messages", "events", "chain", "outbox", "ccm_meta")])
    for needle in ("eve.quoted", "+447700900777", "447700900777", "7Q2M9X"):
        assert needle not in text
    item = Outbox(rec).get(mail.message_id)
    assert item is not None and item.error is not None and "<address>" in item.error


def test_an_opt_out_after_queueing_stops_a_marketing_message(rec: Record,
                                                             tmp_path: Path) -> None:
    """A marketing SMS deferred by quiet hours, then STOP recorded before it is due: it fails
    with the reason and is never handed over; an operational one still goes."""
    from ..examples_helpers import sample

    late = datetime(2026, 3, 2, 22, 30, tzinfo=NOON.tzinfo)
    engine = queue_engine(rec, clock=late)
    offer = engine.render("product_offer", sample("product_offer"), channel="sms")
    request = reminder(0, id=sample("product_offer")["customer"]["id"])
    operational = engine.render("payment_reminder", request, channel="sms")
    assert offer.status == operational.status == "generated"
    rec.add_event(offer.message_id, "opted_out", at=late + timedelta(minutes=5),
                  data={"channel": "sms"})
    transport = FolderTransport(tmp_path / "out")
    morning = Clock(datetime(2026, 3, 3, 8, 0, tzinfo=NOON.tzinfo))
    with Sender(rec, {"sms": transport}, clock=morning) as sender:
        report = sender.send_due()
    assert report.counts["failed"] == 1 and report.counts["sent"] == 1
    item = Outbox(rec).get(offer.message_id)
    assert item is not None and item.state == "failed" and "withdrawn" in str(item.error)
    assert [p.name for p in (tmp_path / "out").iterdir()] == [f"{operational.message_id}.sms.txt"]


def test_a_pack_that_needs_consent_for_operational_messages_stops_them_once_queued_too(
    rec: Record, tmp_path: Path
) -> None:
    """With ``consent_required: [marketing, operational]`` a queued payment reminder whose
    customer opts out of email before it is sent fails (consent withdrawn), as new renders are
    suppressed. The rule the policy applied is kept in the ``queued`` event."""
    import yaml

    import ccm

    from ..examples_helpers import copy_examples

    pack, templates = copy_examples(tmp_path)
    raw = yaml.safe_load((pack / "pack.yaml").read_text("utf-8"))
    raw.setdefault("policy", {})["consent_required"] = ["marketing", "operational"]
    (pack / "pack.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True), "utf-8")
    engine = ccm.Engine(pack, templates, record=rec, clock=lambda: NOON,
                        options=ccm.RenderOptions(queue=True))
    request = reminder(7, consents={"email": True})
    queued = engine.render("payment_reminder", request, channel="email")
    assert Outbox(rec).get(queued.message_id).state == "queued"  # type: ignore[union-attr]
    rec.add_event(queued.message_id, "opted_out", at=NOON + timedelta(minutes=1),
                  data={"channel": "email"})
    again = engine.render("payment_reminder", request, channel="email")
    assert (again.status, again.reason) == ("suppressed", "consent:email")
    transport = FolderTransport(tmp_path / "out")
    with Sender(rec, {"email": transport}, clock=Clock(NOON + timedelta(minutes=2))) as sender:
        report = sender.send_due()
    assert report.counts["failed"] == 1 and report.counts["sent"] == 0
    item = Outbox(rec).get(queued.message_id)
    assert item is not None and item.state == "failed" and "withdrawn" in str(item.error)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert [e.data for e in rec.events(queued.message_id) if e.kind == "queued"] == [
        {"due_at": NOON.isoformat(), "consent": True}]


def test_a_message_queued_before_the_rule_was_kept_follows_the_default(
    rec: Record, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A queued event without ``consent`` (queued by an older ccm) keeps the old rule: only a
    marketing message needs consent, so an operational reminder still goes after an opt-out."""
    from ccm.render import engine as engine_module
    from ccm.render.recording import queue_for

    monkeypatch.setattr(engine_module, "queue_for",
                        lambda req, channel, due, **_: queue_for(req, channel, due))
    queued = queue_engine(rec).render("payment_reminder", reminder(8), channel="email")
    assert [e.data for e in rec.events(queued.message_id) if e.kind == "queued"] == [
        {"due_at": NOON.isoformat()}]
    rec.add_event(queued.message_id, "opted_out", at=NOON + timedelta(minutes=1),
                  data={"channel": "email"})
    transport = FolderTransport(tmp_path / "out")
    with Sender(rec, {"email": transport}, clock=Clock(NOON + timedelta(minutes=2))) as sender:
        report = sender.send_due()
    assert report.counts["sent"] == 1 and report.counts["failed"] == 0
