"""A caller's mistakes with the Engine API are ccm's own errors naming the argument.

Each test drives the documented API as an application developer would and
makes one mistake: the error is a :class:`ccm.CCMError` (never a raw
``TypeError``/``AttributeError``/``ValueError`` from inside), names the
argument or field and says what to do, and records nothing on the way.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import ccm
from ccm.errors import ConfigError, DataError, UnknownChannel
from tests.examples_helpers import PACKS, TEMPLATES, daytime, engine, sample


def _sms() -> dict[str, Any]:
    return sample("payment_reminder")


# -- a Request built by hand is checked as a mapping is --------------------------


@pytest.mark.parametrize(
    ("customer", "path"),
    [
        ({"phone": "+447700900123"}, r"\$\.customer: 'id' is required"),
        ({"id": None, "phone": "+447700900123"}, r"\$\.customer\.id"),
        ({"id": "", "phone": "+447700900123"}, r"\$\.customer\.id"),
        ({"id": "C-1", "phone": "+447700900123", "consents": "all"}, r"\$\.customer\.consents"),
        ({"id": "C-1", "phone": "+447700900123", "locale": 5}, r"\$\.customer\.locale"),
    ],
)
def test_hand_made_request_is_validated(customer: dict[str, Any], path: str) -> None:
    """A ccm.Request with a missing or mistyped customer field is refused as the same
    request as a dict is, naming the field (it rendered for customer '' before, or
    failed with an AttributeError)."""
    request = ccm.Request(customer=customer, data=_sms()["data"])
    with pytest.raises(DataError, match=path):
        engine().render("payment_reminder", request, channel="sms")
    with pytest.raises(DataError, match=path):
        engine().render("payment_reminder", request.to_dict(), channel="sms")


@pytest.mark.parametrize("customer", [None, "C-1", ["C-1"]])
def test_hand_made_request_customer_not_a_mapping(customer: Any) -> None:
    """Request(customer=None) is a DataError at $.customer, not an AttributeError."""
    request = ccm.Request(customer=customer, data={})
    with pytest.raises(DataError, match=r"\$\.customer: must be of type object"):
        engine().render("payment_reminder", request, channel="sms")


def test_hand_made_request_integer_id_is_text(tmp_path: Path) -> None:
    """An integer id in a hand-made Request is recorded as text, as from a dict, so
    record.timeline("5") finds the message (it was recorded under the int before)."""
    req = _sms()
    req["customer"]["id"] = 5
    eng = ccm.Engine(PACKS / "acme", TEMPLATES, record=tmp_path / "r.db", clock=daytime)
    message = eng.render("payment_reminder", ccm.Request(req["customer"], req["data"]), "sms")
    assert message.customer_id == "5"
    assert eng.record is not None
    assert [i.entry.message_id for i in eng.record.timeline("5").messages] == [message.message_id]
    assert req["customer"]["id"] == 5  # the caller's dict is left as it was


# -- the clock ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "what"),
    [
        (datetime(2026, 6, 1, 12, 0), "a naive datetime"),  # the mistake: no tzinfo
        ("2026-06-01T12:00:00Z", "str"),
    ],
)
def test_clock_that_returns_no_aware_datetime(value: Any, what: str, tmp_path: Path) -> None:
    """A clock returning a naive datetime (or no datetime) is a ConfigError naming
    ``clock`` and the fix, before anything is recorded; it was a ValueError from the
    contact policy or an AttributeError from the message id."""
    eng = ccm.Engine(PACKS / "acme", TEMPLATES, record=tmp_path / "r.db", clock=lambda: value)
    with pytest.raises(ConfigError, match=rf"clock.*{what}.*tzinfo=UTC") as info:
        eng.render("payment_reminder", _sms(), channel="sms")
    assert not isinstance(info.value, ccm.MessageError)
    assert eng.record is not None
    assert eng.record.timeline(_sms()["customer"]["id"]).messages == ()


def test_aware_clock_in_another_zone_is_fine() -> None:
    """Any aware datetime is accepted (not only UTC)."""
    from zoneinfo import ZoneInfo

    berlin = datetime(2026, 6, 1, 14, 0, tzinfo=ZoneInfo("Europe/Berlin"))
    eng = ccm.Engine(PACKS / "acme", TEMPLATES, record=None, clock=lambda: berlin)
    assert eng.render("payment_reminder", _sms(), channel="sms").status == "generated"


# -- the constructor's arguments -----------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"pack": None}, "pack"),
        ({"pack": 5}, "pack"),
        ({"templates": None}, "templates"),
        ({"record": 5}, "record"),
        ({"options": {"queue": True}}, "options"),
        ({"clock": datetime(2026, 6, 1, tzinfo=UTC)}, "clock"),
        ({"run_id": 7}, "run_id"),
    ],
)
def test_engine_arguments_of_the_wrong_type(kwargs: dict[str, Any], named: str) -> None:
    """A wrong type for an Engine argument is a ConfigError naming the argument and
    the types it takes, not a TypeError from pathlib or an AttributeError later."""
    args: dict[str, Any] = {"pack": PACKS / "acme", "templates": TEMPLATES, "record": None}
    args.update(kwargs)
    with pytest.raises(ConfigError, match=rf"^Engine\({named}=\.\.\.\): .*got \w+"):
        ccm.Engine(args.pop("pack"), args.pop("templates"), **args)


def test_render_many_needs_one_channel(tmp_path: Path) -> None:
    """render_many without a channel name is UnknownChannel listing the template's
    channels (it was a TypeError with a record, a list of lists without one)."""
    for record in (None, tmp_path / "r.db"):
        eng = ccm.Engine(PACKS / "acme", TEMPLATES, record=record, clock=daytime)
        with pytest.raises(UnknownChannel, match=r"needs one channel name.* has: email, sms"):
            eng.render_many("payment_reminder", [_sms()], None)  # type: ignore[arg-type]


def test_render_many_chunk_size() -> None:
    """chunk_size below 1 is a ConfigError naming it (a bare ValueError before)."""
    with pytest.raises(ConfigError, match=r"render_many\(chunk_size=0\): .*at least 1"):
        engine().render_many("payment_reminder", [copy.deepcopy(_sms())], "sms", chunk_size=0)


# -- RenderOptions ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"document_delivery": "links"},
         r"document_delivery='links'\): must be 'attach' or 'link'"),
        ({"time_budget": "30"}, r"time_budget=\.\.\.\): give a number of seconds; got str"),
        ({"time_budget": float("nan")}, r"time_budget=nan\): must be a positive, finite"),
        ({"time_budget": float("inf")}, r"time_budget=inf\): must be a positive, finite"),
        ({"time_budget": 0}, r"time_budget=0\): must be a positive, finite"),
        ({"max_value_size": 10}, r"max_value_size=10\): must be at least 1024"),
        ({"max_value_size": float("nan")}, r"max_value_size=\.\.\.\): give a whole number"),
        ({"max_output_chars": 4096.5}, r"max_output_chars=\.\.\.\): give a whole number"),
        ({"max_output_chars": True}, r"max_output_chars=\.\.\.\): give a whole number"),
    ],
)
def test_render_options_refuse_bad_values(kwargs: dict[str, Any], message: str) -> None:
    """RenderOptions refuse a value they cannot use with a ConfigError (and ValueError)
    naming the option: ``document_delivery="links"`` was accepted and attached the
    confidential PDF it was meant to link (the check sat after a return), and a str
    budget was a TypeError from a comparison."""
    with pytest.raises(ConfigError, match=message) as info:
        ccm.RenderOptions(**kwargs)
    assert isinstance(info.value, ValueError)
