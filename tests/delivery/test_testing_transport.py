"""``ccm.testing.CaptureTransport`` behind a real Sender and an in-memory record."""

from __future__ import annotations

from datetime import timedelta

import ccm
from ccm.delivery import Sender
from ccm.errors import PermanentDeliveryError, TemporaryDeliveryError
from ccm.record import Outbox
from ccm.testing import CaptureTransport, memory_record

from ..examples_helpers import PACKS, TEMPLATES
from .conftest import NOON, reminder


def test_capture_transport_sees_what_would_go_out_and_can_fail_on_demand() -> None:
    """An application's test queues messages, makes one send fail for now and a later one for
    good, and reads what was captured and what the record says."""
    record = memory_record()
    engine = ccm.Engine(PACKS / "acme", TEMPLATES, record=record, clock=lambda: NOON,
                        options=ccm.RenderOptions(queue=True))
    sms = engine.render("payment_reminder", reminder(1), channel="sms")
    mail = engine.render("payment_reminder", reminder(2), channel="email")
    transport = CaptureTransport()
    transport.fail_next(TemporaryDeliveryError("busy", code=451))
    clock = [NOON]
    with Sender(record, {"sms": transport, "email": transport},
                clock=lambda: clock[0]) as sender:
        first = sender.send_due()
        clock[0] = NOON + timedelta(hours=2)
        second = sender.send_due()
        late = engine.render("payment_reminder", reminder(3), channel="email")
        transport.fail_next(PermanentDeliveryError("no such user", code=550))
        third = sender.send_due()
    assert (first.counts["retry"], first.counts["sent"], second.counts["sent"]) == (1, 1, 1)
    assert third.counts["failed"] == 1
    assert sorted(m.message_id for m in transport.sent) == sorted([sms.message_id,
                                                                   mail.message_id])
    assert {m.recipient for m in transport.sent} == {"+447700900123", "c2@example.com"}
    assert Outbox(record).get(late.message_id).state == "failed"  # type: ignore[union-attr]
    assert transport.closed
    record.close()
