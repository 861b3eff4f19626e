"""The contact policy without a record: what the request and the clock decide still applies.

Consent given in the request, quiet hours and the customer's time zone need no
history; only frequency caps and the record's opt-outs and suppressions do
(docs/contact-policy.md#without-a-record).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import ccm
from ccm.cli import main
from ccm.errors import DataError
from tests.examples_helpers import PACKS, TEMPLATES, sample

NOON = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
NIGHT = datetime(2026, 6, 1, 22, 0, tzinfo=UTC)  # 23:00 in London: acme's SMS quiet hours


def _offer(**customer: Any) -> dict[str, Any]:
    request = sample("product_offer")
    request["customer"].update(customer)
    return request


def _engine(now: datetime = NOON) -> ccm.Engine:
    return ccm.Engine(PACKS / "acme", TEMPLATES, record=None, clock=lambda: now)


def test_withheld_consent_suppresses_without_a_record() -> None:
    """A marketing email and SMS to a customer who withheld consent are suppressed, not made."""
    engine = _engine()
    messages = engine.render("product_offer", _offer(consents={"email": False, "sms": False}))
    assert [(m.channel, m.status, m.reason) for m in messages] == [
        ("email", "suppressed", "consent:email"), ("sms", "suppressed", "consent:sms")]
    for m in messages:
        assert m.content == b""
        assert "withheld" in m.meta["explanation"]


def test_quiet_hours_apply_without_a_record() -> None:
    """An SMS at 23:00 local time is deferred (not made), and the decision says until when."""
    m = _engine(NIGHT).render("product_offer", _offer(), "sms")
    assert (m.status, m.reason, m.content) == ("suppressed", "quiet_hours", b"")
    assert m.meta["defer_until"] == "2026-06-02T08:00:00+01:00"
    assert _engine(NIGHT).render("product_offer", _offer(), "email").status == "generated"


def test_unknown_time_zone_is_a_data_error_without_a_record() -> None:
    """An unknown customer.timezone is refused, naming the field, as with a record."""
    with pytest.raises(DataError) as caught:
        _engine().render("product_offer", _offer(timezone="Mars/Olympus"), "sms")
    assert caught.value.path == "$.customer.timezone"


def test_caps_need_the_record() -> None:
    """Without a record there is no history: a cap never stops a message (it counts 0)."""
    engine = _engine()
    for _ in range(3):
        assert engine.render("product_offer", _offer(), "sms").status == "generated"


def test_render_many_without_a_record_applies_the_policy() -> None:
    """render_many without a record is render() in a loop: the same decisions."""
    got = _engine().render_many("product_offer", [_offer(), _offer(consents={})], "email")
    assert [(m.status, m.reason) for m in got] == [("generated", None),
                                                    ("suppressed", "consent:email")]


def test_cli_no_record_prints_suppressed_and_writes_no_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`ccm render --no-record`: a message without consent is printed suppressed, no file."""
    data = tmp_path / "nc.json"
    data.write_text(json.dumps(_offer(consents={"email": False, "sms": False})))
    out = tmp_path / "out"
    code = main(["render", "product_offer", "--pack", str(PACKS / "acme"), "--templates",
                 str(TEMPLATES), "--data", str(data), "--no-record", "--out", str(out),
                 "--json", "--as-of", "2026-06-01T12:00:00Z"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0
    assert [(x["channel"], x["status"], x["reason"], x["path"]) for x in lines] == [
        ("email", "suppressed", "consent:email", None), ("sms", "suppressed", "consent:sms", None)]
    assert not any(out.iterdir())


def test_cli_text_line_of_a_suppressed_sms(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """The text line of a suppressed SMS names the rule and no encoding it never had."""
    data = tmp_path / "night.json"
    data.write_text(json.dumps(_offer()))
    code = main(["render", "product_offer", "--pack", str(PACKS / "acme"), "--templates",
                 str(TEMPLATES), "--data", str(data), "--no-record", "--out",
                 str(tmp_path / "out"), "--channel", "sms", "--as-of", NIGHT.isoformat()])
    out = capsys.readouterr().out
    assert code == 0
    assert out.strip() == ("suppressed product_offer for C-100231 (sms, en_GB): quiet_hours "
                           "until 2026-06-02T08:00:00+01:00")
