"""customer.email, customer.phone and customer.timezone are checked with the request's shape.

A bad value is a DataError naming the field and the rule, raised before anything is
rendered or recorded, and never repeating the value (it is personal data).
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
from ccm.render.smsplan import SmsPlan
from ccm.render.template import validate_request
from tests.examples_helpers import PACKS, TEMPLATES, sample

NOON = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def _offer(**customer: Any) -> dict[str, Any]:
    request = sample("product_offer")
    request["customer"].update(customer)
    return request


@pytest.mark.parametrize(("field", "value"), [
    ("email", "secret@@example.com"),
    ("email", "A <a@x.example>, b@x.example"),
    ("email", "secret@example.com, other@example.com"),
    ("email", "secret person@example.com"),
    ("email", "secret@localhost"),
    ("email", "secret@example.com\n"),
    ("phone", "SECRETPHONE 0123"),
    ("phone", "+44 7700 900123"),
    ("phone", "+4477009001234567"),
    ("phone", "07700900123"),
    ("phone", "+447700900123\n"),
    ("timezone", "Mars/Olympus"),
    ("timezone", "../../etc/passwd"),
    ("timezone", "America"),  # a folder of zones, not a zone
])
def test_a_bad_contact_field_names_the_field_not_the_value(field: str, value: str) -> None:
    """The request is refused naming $.customer.<field>; the message holds none of the value."""
    with pytest.raises(DataError) as caught:
        validate_request(_offer(**{field: value}))
    assert caught.value.path == f"$.customer.{field}"
    assert str(caught.value).startswith(f"$.customer.{field}: must be")
    for part in value.replace("<", " ").replace(",", " ").split():
        assert part not in str(caught.value)


@pytest.mark.parametrize(("field", "value"), [
    ("email", "o'brien+offers@mail.example.co.uk"),
    ("email", ""),
    ("phone", "+13125550123"),
    ("phone", "+4412345678"),
    ("phone", ""),
    ("timezone", "America/Argentina/Buenos_Aires"),
    ("timezone", ""),
])
def test_good_contact_fields_pass(field: str, value: str) -> None:
    """Plain addresses, E.164 numbers, IANA zones and empty values (none given) are accepted."""
    assert validate_request(_offer(**{field: value})).customer[field] == value


def test_every_example_sample_validates() -> None:
    """The example templates' samples keep validating."""
    samples = sorted(TEMPLATES.glob("*/samples/*.json"))
    assert samples
    for path in samples:
        validate_request(json.loads(path.read_text("utf-8")))


def test_engine_refuses_a_bad_phone_before_rendering() -> None:
    """Engine.render raises the DataError; nothing is made for the bad number."""
    engine = ccm.Engine(PACKS / "acme", TEMPLATES, record=None, clock=lambda: NOON)
    with pytest.raises(DataError) as caught:
        engine.render("product_offer", _offer(phone="SECRETPHONE 0123"), "sms")
    assert caught.value.path == "$.customer.phone"
    assert "SECRETPHONE" not in str(caught.value)


def test_the_sms_plan_declines_what_the_full_path_refuses() -> None:
    """The batch's fast SMS path leaves bad phones and time zones to the full path's error."""
    engine = ccm.Engine(PACKS / "acme", TEMPLATES, record=None, clock=lambda: NOON)
    plan = SmsPlan.build(engine, "product_offer")
    assert plan is not None
    assert plan.request(_offer()) is not None
    assert plan.request(_offer(phone="SECRETPHONE 0123")) is None
    assert plan.request(_offer(timezone="Mars/Olympus")) is None


def test_cli_names_the_email_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`ccm render`: exit 1, one line naming file, line and $.customer.email; no value, no file."""
    data = tmp_path / "bad.json"
    data.write_text(json.dumps(_offer(email="secret@@example.com")))
    out = tmp_path / "out"
    code = main(["render", "product_offer", "--pack", str(PACKS / "acme"), "--templates",
                 str(TEMPLATES), "--data", str(data), "--no-record", "--out", str(out),
                 "--as-of", "2026-06-01T12:00:00Z"])
    _, err = capsys.readouterr()
    assert code == 1
    assert "$.customer.email: must be one plain address" in err
    assert f"{data}:1:" in err and "secret" not in err
    assert not any(out.iterdir())


@pytest.mark.parametrize("value", [
    "+447700900123", "+447700900123\n", "+44 7700 900123", "", "SECRETPHONE 0123",
    "a@b.example", "a@b.example\n", "a$b@x.example", "secret@@example.com", "a b@x.example",
])
def test_the_fast_validator_agrees_with_jsonschema(value: str) -> None:
    """fastjsonschema (the batch's check) and jsonschema give the same answer for phone and
    email values: the pattern has no ``$`` (which fastjsonschema reads as \\Z, jsonschema not)."""
    import jsonschema

    from ccm._schema import load_schema
    from ccm.render.template import request_fast_validator

    fast = request_fast_validator()
    assert fast is not None
    for field in ("phone", "email"):
        request = _offer(**{field: value})
        try:
            fast(request)
            fast_ok = True
        except Exception:
            fast_ok = False
        slow_ok = jsonschema.Draft202012Validator(load_schema("request")).is_valid(request)
        assert fast_ok == slow_ok, field
