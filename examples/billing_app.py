"""A billing application: on an invoice event, render the statement PDF and its email.

This is how an application embeds ccm: load the engine once at start-up, call
``render`` per event, hand the email to your mail transport. The record entry
is committed before ``render`` returns, so the message can be sent safely; a
retried event with the same idempotency key returns the recorded message
instead of making a second one.

    python examples/billing_app.py --out out/billing
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import ccm  # noqa: E402
from ccm._util import atomic_write  # noqa: E402


class OutboxTransport:
    """Stands in for SMTP: writes each email it is given into a folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.sent: list[Path] = []

    def send(self, message: ccm.Message) -> Path:
        path = atomic_write(self.folder / f"{message.message_id}.eml", message.content)
        self.sent.append(path)
        return path


def on_invoice_issued(
    engine: ccm.Engine, transport: OutboxTransport, event: dict
) -> list[ccm.Message]:
    """Handle one ``invoice.issued`` event: statement email (with the PDF attached) and SMS."""
    request = {"customer": event["customer"], "data": event["statement"]}
    messages = []
    for channel in ("email", "sms"):
        message = engine.render("monthly_statement", request, channel=channel,
                                idempotency_key=f"invoice:{event['invoice_id']}")
        if message.status == "generated" and channel == "email":
            transport.send(message)
        messages.append(message)
    return messages


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "billing")
    parser.add_argument("--as-of", type=datetime.fromisoformat, default=None,
                        help="the time the contact policy sees (ISO 8601) [default: now]")
    args = parser.parse_args(argv)
    as_of = args.as_of
    sample = sorted((ROOT / "templates" / "monthly_statement" / "samples").glob("*.json"))[0]
    request = json.loads(sample.read_text("utf-8"))
    event = {"invoice_id": "INV-2026-10-0001", "customer": request["customer"],
             "statement": request["data"]}

    args.out.mkdir(parents=True, exist_ok=True)  # the record opens files in existing folders
    engine = ccm.Engine(ROOT / "brand_packs" / "acme", ROOT / "templates",
                        record=f"sqlite:///{args.out / 'record.db'}",
                        clock=None if as_of is None else (lambda: as_of))
    transport = OutboxTransport(args.out / "outbox")
    first = on_invoice_issued(engine, transport, event)
    retry = on_invoice_issued(engine, transport, event)  # the event bus delivered it twice
    for message in first + retry:
        print(f"{message.channel:6} {message.status:10} {message.message_id}")
    print(f"emails handed to the transport: {len(transport.sent)}")
    assert engine.record is not None
    engine.record.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
