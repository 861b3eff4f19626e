"""Consent from the record: opting in again is an event, and the latest consent event wins."""

from __future__ import annotations

from datetime import timedelta

from click.testing import CliRunner

from ccm.cli.record import record as record_group
from ccm.record import Record
from ccm.record.policy import Policy

from ._support import T0, entry

POLICY = Policy.from_mapping({"consent_required": ["marketing"]})
CUSTOMER = {"id": "C1", "consents": {"email": False}}  # what an upstream system still says


def _decide(rec: Record) -> bool:
    return POLICY.evaluate(customer=CUSTOMER, message_type="marketing", channel="email",
                           now=T0, counter=lambda cap: 0,
                           consent_overrides=rec.consent_overrides("C1")).allowed


def test_opting_in_again_is_an_event_and_the_latest_wins(record: Record) -> None:
    """opted_out then opted_in: the timeline shows both, consent is back, the policy allows;
    a later opt-out withdraws it again."""
    record.append(entry("C1", message_id="m1", created_at=T0))
    record.append(entry("C1", message_id="m2", channel="sms", created_at=T0))
    record.add_event("m1", "opted_out", at=T0 + timedelta(days=1))
    assert record.consent_overrides("C1") == {"email": False}
    assert not _decide(record)
    record.add_event("m1", "opted_in", at=T0 + timedelta(days=2))
    assert record.consent_overrides("C1") == {"email": True}
    assert _decide(record)
    timeline = record.timeline("C1")
    assert [e.kind for e in timeline.messages[0].events] == ["opted_out", "opted_in"]
    assert timeline.summary["opted_out"] == []
    record.add_event("m2", "complained", at=T0 + timedelta(days=3), data={"channel": "email"})
    assert record.consent_overrides("C1") == {"email": False}
    assert record.consent_overrides_many(["C1", "C9"]) == {"C1": {"email": False}, "C9": {}}
    assert not _decide(record)


def test_the_order_is_the_events_time_not_the_insertion_order(record: Record) -> None:
    """An opt-in recorded late but dated before the opt-out does not override it."""
    record.append(entry("C1", message_id="m1", created_at=T0))
    record.add_event("m1", "opted_out", at=T0 + timedelta(days=2))
    record.add_event("m1", "opted_in", at=T0 + timedelta(days=1))
    assert record.consent_overrides("C1") == {"email": False}
    assert record.timeline("C1").summary["opted_out"] == ["email"]


def test_opted_in_from_the_command_line(record: Record, record_url: str) -> None:
    """`ccm record event ID opted_in` records the event (for a START reply, a preference page)."""
    record.append(entry("C1", message_id="m1", created_at=T0))
    record.add_event("m1", "opted_out", at=T0)
    result = CliRunner().invoke(record_group, ["event", "m1", "opted_in", "--at",
                                               "2025-03-04T10:00:00+00:00",
                                               "--record", record_url])
    assert result.exit_code == 0, result.output
    assert record.consent_overrides("C1") == {"email": True}


def test_many_customers_consent_read_at_once_is_each_ones_consent(record: Record) -> None:
    """consent_overrides_many answers for each customer what consent_overrides answers, over
    opt-outs, opt-ins, complaints, suppressions, other events and events at one instant."""
    import random

    rng = random.Random(12)
    kinds = ["opted_out", "opted_in", "complained", "suppressed", "unsuppressed", "opened",
             "delivered"]
    customers = [f"C{i}" for i in range(8)]
    for n in range(60):
        customer = rng.choice(customers[:6])  # C6 and C7 have no events
        message_id = f"m{n}"
        record.append(entry(customer, message_id=message_id, created_at=T0,
                            channel=rng.choice(("sms", "email"))))
        for _ in range(rng.randint(0, 3)):
            kind = rng.choice(kinds)
            data = {"channel": rng.choice(("sms", "email"))} if rng.random() < 0.3 else None
            record.add_event(message_id, kind, at=T0 + timedelta(hours=rng.randint(0, 5)),
                             data=data)
    many = record.consent_overrides_many([*customers, "C1"])
    assert many == {c: record.consent_overrides(c) for c in customers}
    assert any(many.values())
