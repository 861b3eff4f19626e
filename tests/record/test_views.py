"""The single view: timeline, DSAR export and engagement features."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest

from ccm.record import Record
from ccm.record.views import FEATURE_COLUMNS

from ._support import T0, entry


@pytest.fixture
def story(record: Record) -> Record:
    """One customer over two weeks on three channels, with events, a suppression and an opt-out."""
    record.append(entry("C1", message_id="s1", channel="pdf", message_type="operational",
                        journey="billing", template="statement", created_at=T0),
                  content=b"%PDF-1.7 statement", archival=b"%PDF-1.7 pdfa")
    record.append(entry("C1", message_id="e1", channel="email", created_at=T0 + timedelta(days=2),
                        pack_version="1.1.0"),
                  content=b"Subject: Offer\r\n\r\nHello")
    record.append(entry("C1", message_id="t1", channel="sms", created_at=T0 + timedelta(days=1)),
                  content="Hi – 20% off".encode())
    record.append(entry("C1", message_id="t2", channel="sms", status="suppressed",
                        reason="quiet_hours", created_at=T0 + timedelta(days=3)))
    record.append(entry("C2", message_id="x1", channel="email", created_at=T0), content=b"C2")
    record.add_event("e1", "delivered", at=T0 + timedelta(days=2, minutes=1))
    record.add_event("e1", "clicked", at=T0 + timedelta(days=2, hours=3),
                     data={"url": "https://acme.example/offer"})
    record.add_event("e1", "opened", at=T0 + timedelta(days=2, hours=1))
    record.add_event("t1", "opted_out", at=T0 + timedelta(days=1, hours=1))
    return record


def test_timeline_is_in_time_order_across_channels(story: Record) -> None:
    """Messages of every channel come in created order, each with its events in time order."""
    doc = story.timeline("C1").to_dict()
    assert doc["customer_id"] == "C1"
    assert [m["message_id"] for m in doc["messages"]] == ["s1", "t1", "e1", "t2"]
    email = doc["messages"][2]
    assert [e["kind"] for e in email["events"]] == ["delivered", "opened", "clicked"]
    assert email["events"][2]["data"] == {"url": "https://acme.example/offer"}
    required = {"message_id", "channel", "template", "template_version", "pack", "pack_version",
                "message_type", "journey", "locale", "status", "reason", "created_at", "events"}
    assert all(required <= set(m) for m in doc["messages"])
    assert doc["messages"][3]["reason"] == "quiet_hours"


def test_timeline_summary(story: Record) -> None:
    """The summary counts, rates engagement, dates last contact and lists pack versions."""
    s = story.timeline("C1").summary
    assert (s["messages"], s["generated"], s["suppressed"]) == (4, 3, 1)
    assert s["by_channel"] == {"email": 1, "pdf": 1, "sms": 1}
    assert s["by_message_type"] == {"marketing": 2, "operational": 1}
    assert s["by_journey"] == {"billing": 1, "retention": 2}
    assert s["suppressed_by_reason"] == {"quiet_hours": 1}
    assert s["engagement_rate"] == {"email": 1.0, "pdf": 0.0, "sms": 0.0}
    assert s["last_contact"]["email"] == (T0 + timedelta(days=2)).isoformat()
    assert s["pack_versions"] == ["acme@1.0.0", "acme@1.1.0"]
    assert s["opted_out"] == ["sms"]
    assert s["erased_at"] is None


def test_unknown_customer_has_an_empty_timeline(story: Record) -> None:
    """A customer with no messages gets an empty timeline, not an error."""
    doc = story.timeline("nobody").to_dict()
    assert doc["messages"] == [] and doc["summary"]["generated"] == 0


def test_export_holds_content_until_erased(story: Record) -> None:
    """The export decrypts content (text for email and SMS, base64 for PDF) until erasure."""
    doc = story.export("C1")
    by_id = {m["message_id"]: m for m in doc["messages"]}
    assert by_id["t1"]["content"] == {"status": "archived",
                                      "media_type": "text/plain; charset=utf-8",
                                      "encoding": "text", "data": "Hi – 20% off"}
    assert by_id["e1"]["content"]["data"].startswith("Subject: Offer")
    pdf = by_id["s1"]
    assert base64.b64decode(pdf["content"]["data"]) == b"%PDF-1.7 statement"
    assert base64.b64decode(pdf["archival"]["data"]) == b"%PDF-1.7 pdfa"
    assert by_id["t2"]["content"] == {"status": "not archived"}
    assert by_id["e1"]["idempotency_key"] and by_id["e1"]["events"]
    assert "C2" not in repr(doc)

    story.erase("C1")
    after = story.export("C1")
    assert {m["content"]["status"] for m in after["messages"]} == {"erased", "not archived"}
    assert after["erasures"] and after["summary"]["erased_at"]


def test_features_one_row_per_customer(story: Record) -> None:
    """features() gives every column for every customer: counts, rates and recency."""
    rows = {r["customer_id"]: r for r in story.features(now=T0 + timedelta(days=10))}
    assert set(rows) == {"C1", "C2"}
    c1 = rows["C1"]
    assert tuple(c1) == FEATURE_COLUMNS
    assert (c1["generated"], c1["suppressed"], c1["engaged"]) == (3, 1, 1)
    assert c1["email_clicked"] == 1 and c1["email_opened"] == 1
    assert c1["email_engagement_rate"] == 1.0 and c1["pdf_engagement_rate"] == 0.0
    assert c1["sms_opted_out"] == 1 and c1["sms_suppressed"] == 1
    assert c1["recency_days"] == 8 and c1["pdf_recency_days"] == 10
    assert c1["marketing_generated"] == 2 and c1["marketing_engagement_rate"] == 0.5
    assert c1["operational_recency_days"] == 10
    assert rows["C2"]["sms_engagement_rate"] is None and rows["C2"]["sms_recency_days"] is None


def test_a_view_is_engagement_in_the_timeline_features_and_report(record: Record) -> None:
    """An email read in its web version, or a document retrieved through its link, was
    engaged with as surely as an opened one: the timeline, the features and the organisation
    report count it (they showed "engagement: email 0%" after web and link views)."""
    from ccm.engagement.reports.queries import collect_report

    record.append(entry("C7", message_id="w1", channel="email", created_at=T0),
                  content=b"Subject: Statement\r\n\r\nHello")
    record.append(entry("C7", message_id="w2", channel="email", created_at=T0),
                  content=b"Subject: Offer\r\n\r\nHello")
    record.add_event("w1", "sent", at=T0 + timedelta(minutes=1))
    record.add_event("w2", "sent", at=T0 + timedelta(minutes=1))
    record.add_event("w1", "viewed", at=T0 + timedelta(hours=1), data={"via": "web"})
    summary = record.timeline("C7").summary
    assert summary["engaged"] == {"email": 1} and summary["engagement_rate"] == {"email": 0.5}
    (row,) = record.features(now=T0 + timedelta(days=1))
    assert (row["engaged"], row["email_engagement_rate"]) == (1, 0.5)
    (email,) = [c for c in collect_report(record).engagement if c.channel == "email"]
    assert (email.sent, email.engaged, email.rate) == (2, 1, 0.5)
