"""``ccm.testing``: the in-memory record and message capture that applications test with."""

from __future__ import annotations

from datetime import UTC, datetime

import ccm
from ccm.testing import capture_messages, memory_record

from ..examples_helpers import PACKS, TEMPLATES, sample

NOON = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def test_memory_record_behaves_like_the_real_one() -> None:
    """Through an engine, the in-memory record archives content, dedupes keys and enforces caps."""
    record = memory_record()
    engine = ccm.Engine(PACKS / "acme", TEMPLATES, record=record, clock=lambda: NOON)
    request = sample("product_offer")
    first = engine.render("product_offer", request, channel="sms", idempotency_key="a")
    again = engine.render("product_offer", request, channel="sms", idempotency_key="a")
    capped = engine.render("product_offer", request, channel="sms", idempotency_key="b")
    assert (first.status, again.status, capped.status) == ("generated", "duplicate", "suppressed")
    assert capped.reason == "cap:marketing-sms-weekly"
    assert record.content(first.message_id) == first.content
    assert record.verify().ok
    record.close()


def test_memory_record_without_archive_keeps_entries_only() -> None:
    """memory_record(with_archive=False) records every entry but no content."""
    record = memory_record(with_archive=False)
    engine = ccm.Engine(PACKS / "acme", TEMPLATES, record=record, clock=lambda: NOON)
    made = engine.render("product_offer", sample("product_offer"), channel="email")
    assert record.get(made.message_id).archive_ref is None
    record.close()


def test_capture_collects_what_the_engine_finishes_inside_the_block() -> None:
    """What the engine renders inside the block is captured; a message the policy stopped before
    rendering is not (the record has it), and nothing after the block is."""
    engine = ccm.Engine(PACKS / "acme", TEMPLATES, record=memory_record(), clock=lambda: NOON)
    request = sample("product_offer")
    no_sms = {**request, "customer": {**request["customer"], "consents": {"email": True}}}
    with capture_messages(engine) as sent:
        engine.render("product_offer", no_sms)
    engine.render("product_offer", request, channel="email")
    assert [(m.channel, m.status) for m in sent] == [("email", "generated")]
    customer = request["customer"]["id"]
    assert engine.record is not None
    assert engine.record.timeline(customer).summary["suppressed_by_reason"] == {"consent:sms": 1}
