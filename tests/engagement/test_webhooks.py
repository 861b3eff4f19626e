"""The web app's webhooks: signed reports, Twilio status callbacks and inbound keywords."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ccm.delivery.events import PhoneDirectory
from ccm.delivery.twilio import sign
from ccm.engagement.app import create_app
from ccm.engagement.tracking import TrackingKey
from ccm.engagement.webhooks import WebhookSettings, report_signature
from ccm.record import Record
from tests.delivery._mail import arf, dsn, verp
from tests.engagement._bodies import Endless, post_in_process
from tests.record._support import entry

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

NOON = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
TOKEN = "twilio-auth-token-for-tests"
SECRET = b"r" * 32
PUBLIC = "https://hooks.example.com"
SID = "SM" + "c" * 32
EMAIL_ID = "e" * 32
SMS_ID = "5" * 32


@pytest.fixture
def rec(tmp_path: Path) -> Iterator[Record]:
    """A record with one email and one sent SMS (MessageSid SID) for customer C1."""
    store = Record(f"sqlite:///{tmp_path / 'record.db'}")
    store.append(entry("C1", message_id=EMAIL_ID, channel="email", created_at=NOON))
    store.append(entry("C1", message_id=SMS_ID, channel="sms", created_at=NOON))
    store.add_event(SMS_ID, "sent", at=NOON, data={"provider_id": SID})
    yield store
    store.close()


@pytest.fixture
def client(rec: Record) -> Iterator[TestClient]:
    settings = WebhookSettings(
        twilio_auth_token=TOKEN, report_secret=SECRET, public_url=PUBLIC,
        directory=PhoneDirectory({"+447700900123": "C1"}),
        clock=lambda: NOW,
    )
    app = create_app(rec, TrackingKey(b"t" * 32), webhooks=settings)
    with TestClient(app, base_url="http://testserver") as test_client:
        yield test_client


NOW = NOON + timedelta(minutes=3)  # the app's clock in ``client``


def report_post(client: TestClient, body: bytes, *, to: str | None = None,
                at: datetime = NOW, secret: bytes = SECRET) -> Any:
    """POST a report signed as a sender does: timestamp ``at``, ``?to=`` when given."""
    stamp = int(at.timestamp())
    headers = {"X-CCM-Timestamp": str(stamp),
               "X-CCM-Signature": report_signature(secret, stamp, body, to=to)}
    return client.post("/events/report", content=body, headers=headers,
                       params={"to": to} if to is not None else None)


def twilio_post(client: TestClient, path: str, params: dict[str, str], *,
                signature: str | None = "auto", token: str = TOKEN) -> Any:
    headers = {}
    if signature == "auto":
        headers["X-Twilio-Signature"] = sign(token, PUBLIC + path, params.items())
    elif signature is not None:
        headers["X-Twilio-Signature"] = signature
    return client.post(path, data=params, headers=headers)


def kinds(rec: Record, mid: str) -> list[str]:
    return [e.kind for e in rec.events(mid)]


def test_signature_matches_twilios_documented_example() -> None:
    """Our signing reproduces the example in Twilio's security documentation."""
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = {"CallSid": "CA1234567890ABCDE", "Caller": "+14158675310", "Digits": "1234",
              "From": "+14158675310", "To": "+18005551212"}
    assert sign("12345", url, params.items()) == "GvWf1cFY/Q7PnoempGyD5oXAezc="


def test_status_callback_becomes_an_event(client: TestClient, rec: Record) -> None:
    """A signed delivered callback adds ``delivered`` to the SMS whose sent event has the sid."""
    response = twilio_post(client, "/twilio/status",
                           {"MessageSid": SID, "MessageStatus": "delivered"})
    assert response.status_code == 200
    assert kinds(rec, SMS_ID) == ["sent", "delivered"]


@pytest.mark.parametrize(
    ("signature", "token"),
    [(None, TOKEN), ("", TOKEN), ("auto", "another-token"), ("bm90IGEgc2lnbmF0dXJl", TOKEN)],
)
def test_unsigned_or_wrongly_signed_callbacks_are_refused_and_logged(
    client: TestClient, rec: Record, caplog: pytest.LogCaptureFixture, signature: str | None,
    token: str,
) -> None:
    """Without a valid X-Twilio-Signature the app answers 403, records nothing, logs no secret."""
    with caplog.at_level(logging.WARNING, logger="ccm.engagement.webhooks"):
        response = twilio_post(client, "/twilio/status",
                               {"MessageSid": SID, "MessageStatus": "delivered"},
                               signature=signature, token=token)
    assert response.status_code == 403
    assert kinds(rec, SMS_ID) == ["sent"]
    logged = caplog.text
    assert "refused" in logged and TOKEN not in logged and SID not in logged
    assert (signature or "@@") not in logged


def test_a_providers_read_receipt_records_no_open(client: TestClient, rec: Record) -> None:
    """Opens and clicks come only from ccm's own tracking (once an hour): a Twilio ``read``
    status (or ``sent``), however often it comes, changes nothing; ``delivered`` is kept once."""
    for status in ("sent", "read", "read", "read"):
        answer = twilio_post(client, "/twilio/status",
                             {"MessageSid": SID, "MessageStatus": status})
        assert (answer.status_code, answer.text) == (200, f"status {status} changes nothing")
    delivered = {"MessageSid": SID, "MessageStatus": "delivered"}
    assert twilio_post(client, "/twilio/status", delivered).status_code == 200
    assert twilio_post(client, "/twilio/status", delivered).status_code == 409
    assert kinds(rec, SMS_ID) == ["sent", "delivered"]


def test_replayed_callback_is_refused(client: TestClient, rec: Record) -> None:
    """The same MessageSid and status a second time answers 409 and adds nothing."""
    params = {"MessageSid": SID, "MessageStatus": "undelivered", "ErrorCode": "30003"}
    assert twilio_post(client, "/twilio/status", params).status_code == 200
    assert twilio_post(client, "/twilio/status", params).status_code == 409
    assert kinds(rec, SMS_ID) == ["sent", "bounced"]


def test_tampered_parameters_break_the_signature(client: TestClient, rec: Record) -> None:
    """Changing a parameter after signing (delivered -> failed) is refused."""
    params = {"MessageSid": SID, "MessageStatus": "delivered"}
    signature = sign(TOKEN, PUBLIC + "/twilio/status", params.items())
    response = twilio_post(client, "/twilio/status", {**params, "MessageStatus": "failed"},
                           signature=signature)
    assert response.status_code == 403 and kinds(rec, SMS_ID) == ["sent"]


def test_inbound_stop_and_start_answer_with_twiml(client: TestClient, rec: Record) -> None:
    """STOP and START change SMS consent and are confirmed in TwiML; HELP gets the help text."""
    stop = twilio_post(client, "/twilio/inbound", {"From": "+447700900123", "Body": " stop "})
    assert stop.status_code == 200 and stop.headers["content-type"].startswith("application/xml")
    assert "<Message>You are unsubscribed" in stop.text
    assert rec.consent_overrides("C1") == {"blocked:sms": False, "sms": False}
    start = twilio_post(client, "/twilio/inbound", {"From": "+447700900123", "Body": "UNSTOP"})
    assert "subscribed again" in start.text
    assert rec.consent_overrides("C1") == {"sms": True}
    help_ = twilio_post(client, "/twilio/inbound", {"From": "+447700900123", "Body": "Help"})
    assert "Reply STOP" in help_.text
    other = twilio_post(client, "/twilio/inbound", {"From": "+447700900123", "Body": "hello"})
    assert other.text.endswith("<Response></Response>")
    assert sorted(kinds(rec, SMS_ID)) == ["opted_in", "opted_out", "sent"]  # same instant
    forged = twilio_post(client, "/twilio/inbound", {"From": "+447700900123", "Body": "STOP"},
                         signature=None)
    assert forged.status_code == 403 and rec.consent_overrides("C1") == {"sms": True}


def test_signed_report_post_records_a_bounce(client: TestClient, rec: Record) -> None:
    """A DSN POSTed with its HMAC signature bounces the message; unsigned ones are refused."""
    body = dsn(EMAIL_ID)
    unsigned = client.post("/events/report", content=body)
    assert unsigned.status_code == 403 and kinds(rec, EMAIL_ID) == []
    signed = report_post(client, body)
    assert signed.status_code == 200
    assert sorted(kinds(rec, EMAIL_ID)) == ["bounced", "suppressed"]
    complaint = arf(EMAIL_ID)
    response = report_post(client, complaint)
    assert response.status_code == 200 and "complained" in kinds(rec, EMAIL_ID)
    bad = report_post(client, b"not a report")
    assert bad.status_code == 422


def test_the_signature_covers_the_envelope_recipient(
    client: TestClient, rec: Record, caplog: pytest.LogCaptureFixture
) -> None:
    """A signed report re-posted with another ``?to=`` (VERP of another message) is refused:
    the query parameter that picks the message is signed with the body."""
    other = "b" * 32
    rec.append(entry("C2", message_id=other, channel="email", created_at=NOON))
    body = dsn(EMAIL_ID, to="postmaster@mail.example.com", returned="")
    stamp = int(NOW.timestamp())
    signature = report_signature(SECRET, stamp, body, to=verp(EMAIL_ID))
    with caplog.at_level(logging.WARNING, logger="ccm.engagement.webhooks"):
        moved = client.post("/events/report", content=body, params={"to": verp(other)},
                            headers={"X-CCM-Timestamp": str(stamp),
                                     "X-CCM-Signature": signature})
        dropped = client.post("/events/report", content=body,
                              headers={"X-CCM-Timestamp": str(stamp),
                                       "X-CCM-Signature": signature})
    assert (moved.status_code, dropped.status_code) == (403, 403)
    assert kinds(rec, other) == [] and kinds(rec, EMAIL_ID) == []
    assert rec.consent_overrides("C2") == {}
    assert "bad-signature" in caplog.text and signature not in caplog.text
    assert verp(other) not in caplog.text
    good = report_post(client, body, to=verp(EMAIL_ID))
    assert good.status_code == 200, good.text
    assert sorted(kinds(rec, EMAIL_ID)) == ["bounced", "suppressed"] and kinds(rec, other) == []


@pytest.mark.parametrize("offset", [timedelta(minutes=-6), timedelta(minutes=6),
                                    timedelta(days=-30)],
                         ids=["old", "future", "a-month-old"])
def test_a_report_outside_five_minutes_is_refused(
    client: TestClient, rec: Record, caplog: pytest.LogCaptureFixture, offset: timedelta
) -> None:
    """A correctly signed report whose timestamp is more than 5 minutes from the app's clock
    (either way) is a replay: 403, nothing recorded; 4 minutes off is still taken."""
    body = dsn(EMAIL_ID)
    with caplog.at_level(logging.WARNING, logger="ccm.engagement.webhooks"):
        response = report_post(client, body, at=NOW + offset)
    assert response.status_code == 403 and kinds(rec, EMAIL_ID) == []
    assert "stale-timestamp" in caplog.text
    step = timedelta(minutes=4)
    within = report_post(client, body, at=NOW + (step if offset > timedelta(0) else -step))
    assert within.status_code == 200 and "bounced" in kinds(rec, EMAIL_ID)


@pytest.mark.parametrize(
    ("headers", "reason"),
    [({"X-CCM-Signature": "v1=" + "0" * 64}, "unsigned"),
     ({"X-CCM-Timestamp": "1772452980"}, "unsigned"),
     ({"X-CCM-Timestamp": "1772452980", "X-CCM-Signature": "v1=" + "0" * 64}, "bad-signature"),
     ({"X-CCM-Timestamp": "soon", "X-CCM-Signature": "v1=" + "0" * 64}, "bad-timestamp"),
     ({"X-CCM-Signature": "sha256=body-only"}, "old-scheme")],
    ids=["no-timestamp", "no-signature", "wrong", "bad-timestamp", "old-scheme"],
)
def test_report_without_a_valid_signature_and_timestamp_is_refused(
    client: TestClient, rec: Record, caplog: pytest.LogCaptureFixture,
    headers: dict[str, str], reason: str,
) -> None:
    """Each way of failing the signature answers 403, records nothing and logs its reason
    (never the signature)."""
    assert int(NOW.timestamp()) == 1772452980
    with caplog.at_level(logging.WARNING, logger="ccm.engagement.webhooks"):
        response = client.post("/events/report", content=dsn(EMAIL_ID), headers=headers)
    assert response.status_code == 403 and kinds(rec, EMAIL_ID) == []
    assert reason in caplog.text and "0" * 64 not in caplog.text
    assert "body-only" not in caplog.text


def test_report_signature_refuses_an_ambiguous_recipient(client: TestClient,
                                                         rec: Record) -> None:
    """A ``to`` with a line break could move bytes between it and the body: not signable,
    and the app refuses one (or two ``to`` parameters) with 403."""
    with pytest.raises(ValueError, match="control characters"):
        report_signature(SECRET, 1, b"x", to="a\nb")
    body = dsn(EMAIL_ID)
    stamp = str(int(NOW.timestamp()))
    for query in ("to=a%0Ab", f"to={verp(EMAIL_ID)}&to={verp(EMAIL_ID)}"):
        response = client.post(f"/events/report?{query}", content=body, headers={
            "X-CCM-Timestamp": stamp,
            "X-CCM-Signature": report_signature(SECRET, int(stamp), body, to=verp(EMAIL_ID))})
        assert response.status_code == 403
    assert kinds(rec, EMAIL_ID) == []


def test_report_about_an_sms_or_a_suppressed_email_is_unmatched(
    client: TestClient, rec: Record
) -> None:
    """A signed DSN naming an SMS message, or an email the policy suppressed, answers 422 and
    blocks nothing."""
    held = "d" * 32
    rec.append(entry("C1", message_id=held, channel="email", status="suppressed",
                     reason="quiet_hours", created_at=NOON))
    for mid in (SMS_ID, held):
        response = report_post(client, dsn(mid, returned=""), to=verp(mid))
        assert response.status_code == 422, response.text
    assert kinds(rec, SMS_ID) == ["sent"] and kinds(rec, held) == []
    assert rec.consent_overrides("C1") == {}


@pytest.mark.parametrize(("path", "limit"), [("/events/report", 2_000_000),
                                             ("/twilio/status", 64_000),
                                             ("/twilio/inbound", 64_000)])
@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_an_oversized_body_is_refused_unread(rec: Record, path: str, limit: int,
                                             declared: bool,
                                             caplog: pytest.LogCaptureFixture) -> None:
    """A 1.5 GB POST answers 413 after at most the limit and one chunk is read; nothing recorded."""
    settings = WebhookSettings(twilio_auth_token=TOKEN, report_secret=SECRET, public_url=PUBLIC)
    app = create_app(rec, TrackingKey(b"t" * 32), webhooks=settings)
    body = Endless(1_500_000_000)
    headers = {"Content-Length": str(body.total)} if declared else {}
    with caplog.at_level(logging.WARNING, logger="ccm.engagement.webhooks"):
        response = post_in_process(app, path, body, headers)
    assert response.status_code == 413
    assert body.sent == 0 if declared else body.sent <= limit + 65_536
    assert "too-large" in caplog.text
    assert kinds(rec, EMAIL_ID) == [] and kinds(rec, SMS_ID) == ["sent"]


def test_a_report_at_the_limit_is_still_read(client: TestClient, rec: Record) -> None:
    """The limit is on size, not on reports: a signed 2 MB body is read and judged on content."""
    body = dsn(EMAIL_ID)
    body += b"\n" * (2_000_000 - len(body))
    response = report_post(client, body)
    assert response.status_code == 200, response.text
    assert sorted(kinds(rec, EMAIL_ID)) == ["bounced", "suppressed"]


def test_a_replayed_inbound_keyword_is_refused_and_changes_nothing(
    client: TestClient, rec: Record, caplog: pytest.LogCaptureFixture
) -> None:
    """STOP, START, STOP, then the captured START again (same MessageSid): 409, the customer
    stays opted out; the log names the reason, never the number or the sid."""
    def keyword(body: str, n: int) -> Any:
        return twilio_post(client, "/twilio/inbound", {
            "From": "+447700900123", "Body": body, "MessageSid": f"SM{n:032d}"})

    assert keyword("STOP", 1).status_code == 200
    start = {"From": "+447700900123", "Body": "START", "MessageSid": f"SM{2:032d}"}
    assert twilio_post(client, "/twilio/inbound", start).status_code == 200
    assert keyword("STOP", 3).status_code == 200
    with caplog.at_level(logging.WARNING, logger="ccm.engagement.webhooks"):
        replay = twilio_post(client, "/twilio/inbound", start)
    assert replay.status_code == 409
    assert rec.consent_overrides("C1") == {"blocked:sms": False, "sms": False}
    # Each keyword taken is kept once (a ``keyword`` event), the replay adds nothing.
    assert sorted(kinds(rec, SMS_ID)) == ["keyword"] * 3 + ["opted_in", "opted_out",
                                                           "opted_out", "sent"]
    assert "replay" in caplog.text and "+447700900123" not in caplog.text
    assert start["MessageSid"] not in caplog.text


def test_stop_from_a_shared_phone_opts_out_every_customer_of_it(
    rec: Record, tmp_path: Path
) -> None:
    """Two customers share one number (``--customers`` file): one STOP opts both out, START
    opts both back in."""
    rec.append(entry("C2", message_id="6" * 32, channel="sms", created_at=NOON))
    people = tmp_path / "fam.jsonl"
    people.write_text("".join(
        f'{{"customer": {{"id": "{c}", "phone": "+44 7700 900123"}}}}\n' for c in ("C1", "C2")),
        "utf-8")
    settings = WebhookSettings(twilio_auth_token=TOKEN, public_url=PUBLIC,
                               directory=PhoneDirectory.from_jsonl(people),
                               clock=lambda: NOON + timedelta(minutes=3))
    app = create_app(rec, TrackingKey(b"t" * 32), webhooks=settings)
    with TestClient(app, base_url="http://testserver") as test_client:
        stop = twilio_post(test_client, "/twilio/inbound",
                           {"From": "+447700900123", "Body": "STOP", "MessageSid": SID})
        assert stop.status_code == 200
        for customer in ("C1", "C2"):
            assert rec.consent_overrides(customer) == {"blocked:sms": False, "sms": False}
        twilio_post(test_client, "/twilio/inbound",
                    {"From": "+447700900123", "Body": "START", "MessageSid": "SM" + "d" * 32})
        for customer in ("C1", "C2"):
            assert rec.consent_overrides(customer) == {"sms": True}


def test_a_replayed_keyword_that_changed_nothing_is_refused_too(
    client: TestClient, rec: Record
) -> None:
    """START from a subscribed customer changes nothing but is kept (a ``keyword`` event); the
    customer then sends STOP; the captured START replayed answers 409 and does not re-subscribe."""
    start = {"From": "+447700900123", "Body": "START", "MessageSid": "SM" + "1" * 32}
    assert twilio_post(client, "/twilio/inbound", start).status_code == 200
    assert rec.consent_overrides("C1") == {}
    stop = {"From": "+447700900123", "Body": "STOP", "MessageSid": "SM" + "2" * 32}
    assert twilio_post(client, "/twilio/inbound", stop).status_code == 200
    assert twilio_post(client, "/twilio/inbound", start).status_code == 409
    assert rec.consent_overrides("C1") == {"blocked:sms": False, "sms": False}
    assert [e.data for e in rec.events(SMS_ID) if e.kind == "keyword"] == [
        {"channel": "sms", "keyword": word, "provider_id": sid, "source": "keyword"}
        for word, sid in (("start", start["MessageSid"]), ("stop", stop["MessageSid"]))]
