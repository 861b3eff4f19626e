"""Reading RFC 3464 bounces and RFC 5965 complaints built per the RFCs."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ccm.delivery.reports import Bounce, Complaint, parse_report
from ccm.errors import InboundError
from tests.delivery._mail import arf, dsn, original_headers

MID = "0123456789abcdef0123456789abcdef"


def test_hard_bounce_by_verp_address() -> None:
    """A 5.1.1 failure delivered to the VERP address is a hard bounce of that message."""
    found = parse_report(dsn(MID))
    assert found == Bounce(MID, "hard", "5.1.1", "failed", "550")


def test_soft_bounce_is_a_4xx_delay() -> None:
    """A 4.2.2 (mailbox full) delay is a soft bounce."""
    found = parse_report(dsn(MID, status="4.2.2", action="delayed",
                             diagnostic="smtp; 452 4.2.2 Mailbox full"))
    assert isinstance(found, Bounce) and (found.kind, found.status) == ("soft", "4.2.2")


def test_message_found_by_envelope_id_then_returned_headers() -> None:
    """Without a VERP address the Original-Envelope-Id, else X-CCM-Message-ID, names the message."""
    by_envid = parse_report(dsn(MID, to="postmaster@mail.example.com", envelope_id=MID,
                                returned=""))
    assert isinstance(by_envid, Bounce) and by_envid.message_id == MID
    headers = original_headers(MID, verp_return=False)
    by_header = parse_report(dsn(MID, to="postmaster@mail.example.com", returned=headers))
    assert isinstance(by_header, Bounce) and by_header.message_id == MID


def test_delivered_dsn_is_not_a_bounce() -> None:
    """A success DSN (Action: delivered, 2.0.0) changes nothing."""
    assert parse_report(dsn(MID, status="2.0.0", action="delivered")) is None


def test_event_data_holds_no_address() -> None:
    """The bounce's event data keeps codes only: not the address, not the diagnostic text."""
    data = parse_report(dsn(MID)).to_data()  # type: ignore[union-attr]
    assert data == {"bounce": "hard", "status": "5.1.1", "action": "failed", "source": "dsn",
                    "smtp_code": "550"}
    assert "eleanor" not in repr(data)


def test_abuse_complaint() -> None:
    """An ARF abuse report about a message sent from its VERP address is a complaint."""
    assert parse_report(arf(MID)) == Complaint(MID, "abuse")


def test_complaint_found_by_original_message_header() -> None:
    """Without a VERP Original-Mail-From, the attached original's X-CCM-Message-ID decides."""
    found = parse_report(arf(MID, mail_from="noreply@mail.example.com"))
    assert found == Complaint(MID, "abuse")


def test_not_spam_feedback_changes_nothing() -> None:
    """A not-spam feedback report is no complaint."""
    assert parse_report(arf(MID, feedback_type="not-spam")) is None


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"Subject: hello\r\n\r\nplain mail", "not-a-report"),
        (b"Content-Type: multipart/report; report-type=disposition-notification; boundary=x\r\n"
         b"\r\n--x--\r\n", "not-a-report"),
        (b"Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n"
         b"\r\n--x\r\nContent-Type: text/plain\r\n\r\nhi\r\n--x--\r\n", "malformed"),
        (dsn(MID, to="postmaster@mail.example.com", returned=""), "unmatched"),
        (b"x" * 2_000_001, "too-large"),
    ],
)
def test_bad_reports_are_refused_with_a_reason(raw: bytes, reason: str) -> None:
    """Mail that is not a report, a report without fields or naming no message is refused."""
    with pytest.raises(InboundError) as caught:
        parse_report(raw, source="box/1.eml")
    assert caught.value.context["reason"] == reason
    assert str(caught.value).startswith("box/1.eml: ")


@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_crash(raw: bytes) -> None:
    """Any bytes either parse or raise InboundError: never another exception."""
    with contextlib.suppress(InboundError):
        parse_report(raw)


@given(st.sampled_from(["4", "5"]), st.integers(0, 9), st.integers(0, 9))
def test_status_class_decides_hard_or_soft(cls: str, sub: int, detail: int) -> None:
    """Every 5.x.x status is hard and every 4.x.x soft."""
    found = parse_report(dsn(MID, status=f"{cls}.{sub}.{detail}"))
    assert isinstance(found, Bounce)
    assert found.kind == ("hard" if cls == "5" else "soft")
