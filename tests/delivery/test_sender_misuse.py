"""A caller's mistakes with the documented Sender API are ccm's own errors naming the
argument (they were a TypeError, an AttributeError from deep in a send, or silence)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import ccm
from ccm.delivery import FolderTransport, Sender
from ccm.errors import ConfigError
from ccm.record import Outbox
from ccm.testing import memory_record
from tests.examples_helpers import PACKS, TEMPLATES

NOON = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
REQUEST = {"customer": {"id": "C-1001", "email": "alice@example.com", "locale": "en_GB",
                        "timezone": "Europe/London", "consents": {"email": True}},
           "data": {"amount": 86.4, "currency": "GBP", "due_date": "2026-03-20",
                    "days_overdue": 3, "pay_url": "https://pay.example.com/r/7Q2M9X"}}


@pytest.mark.parametrize(
    ("record", "routes", "named"),
    [
        (None, {}, r"Sender\(record=\.\.\.\): give a ccm\.record\.Record .*got NoneType"),
        ("sqlite:///x.db", {}, r"Sender\(record=\.\.\.\): .*got str"),
        ("RECORD", ["TRANSPORT"], r"Sender\(routes=\.\.\.\): .*got list"),
        ("RECORD", {"fax": "TRANSPORT"},
         r"Sender\(routes=\.\.\.\): no channel 'fax'.*email, pdf, sms"),
        ("RECORD", {"email": "out/"}, r"Sender\(routes=\.\.\.\): the route for 'email' .*got str"),
    ],
)
def test_sender_arguments_of_the_wrong_type(record: Any, routes: Any, named: str,
                                            tmp_path: Path) -> None:
    """A record that is no Record, routes that are no mapping, an unknown channel or a
    route that is no transport are a ConfigError naming the argument and the fix."""
    real = memory_record()
    transport = FolderTransport(tmp_path)
    record = real if record == "RECORD" else record
    if isinstance(routes, list):
        routes = [transport]
    elif routes:
        routes = {k: transport if v == "TRANSPORT" else v for k, v in routes.items()}
    with pytest.raises(ConfigError, match=named):
        Sender(record, routes, clock=lambda: NOON)


def test_sender_clock_without_zone(tmp_path: Path) -> None:
    """A sender clock returning a naive datetime is a ConfigError naming the clock; the
    queued message stays queued, untouched (it was a ValueError from the outbox)."""
    record = memory_record()
    engine = ccm.Engine(PACKS / "acme", TEMPLATES, record=record, clock=lambda: NOON,
                        options=ccm.RenderOptions(queue=True))
    message = engine.render("payment_reminder", REQUEST, channel="email")
    naive = datetime(2026, 3, 2, 12, 0)  # the mistake: no tzinfo
    with (Sender(record, {"email": FolderTransport(tmp_path)}, clock=lambda: naive) as sender,
          pytest.raises(ConfigError, match=r"Sender\(clock=\.\.\.\) returned a naive")):
        sender.send_due()
    item = Outbox(record).get(message.message_id)
    assert item is not None
    assert item.state == "queued"
    assert list(tmp_path.iterdir()) == []
