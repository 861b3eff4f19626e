"""Sender throughput: queued emails sent through one reused SMTP connection, and to a folder.

    python benchmarks/delivery_bench.py [N]

Renders N payment-reminder emails into a SQLite record with queueing on, then
times ``Sender.send_due()`` (wall clock: the SMTP server runs in a thread of
this process) against a local aiosmtpd server and against the folder
transport. Prints messages per second; each message is two committed
transactions (sending, sent) with their events and chain links.
"""

from __future__ import annotations

import asyncio
import copy
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiosmtpd.smtp import SMTP, Envelope, Session  # noqa: E402

import ccm  # noqa: E402
from ccm.delivery import FolderTransport, Route, Sender  # noqa: E402
from ccm.delivery.smtp import SmtpSettings  # noqa: E402
from ccm.record import MasterKey, Outbox, Record  # noqa: E402

NOON = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


class _Count:
    def __init__(self) -> None:
        self.n = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.n += 1
        return "250 OK"


def _server(handler: _Count) -> tuple[int, asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    port: list[int] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        srv = loop.run_until_complete(loop.create_server(lambda: SMTP(handler), "127.0.0.1", 0))
        port.append(srv.sockets[0].getsockname()[1])
        ready.set()
        loop.run_forever()

    threading.Thread(target=run, daemon=True).start()
    ready.wait()
    return port[0], loop


def _queue(folder: Path, n: int) -> Record:
    import json

    record = Record(f"sqlite:///{folder / 'record.db'}", master_key=MasterKey.generate())
    engine = ccm.Engine(ROOT / "brand_packs" / "acme", ROOT / "templates", record=record,
                        clock=lambda: NOON, options=ccm.RenderOptions(queue=True))
    sample = json.loads(next((ROOT / "templates" / "payment_reminder" / "samples")
                             .glob("01_*.json")).read_text("utf-8"))
    requests = []
    for i in range(n):
        req = copy.deepcopy(sample)
        req["customer"].update(id=f"B-{i:06d}", email=f"b{i}@example.com")
        requests.append(req)
    engine.render_many("payment_reminder", requests, "email")
    return record


def main(n: int) -> None:
    handler = _Count()
    port, loop = _server(handler)
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("smtp", "folder"):
            folder = Path(tmp) / name
            folder.mkdir()
            record = _queue(folder, n)
            route = (Route("email", "smtp", SmtpSettings(
                host="127.0.0.1", port=port, security="none",
                bounce_address="bounces@acme.example")) if name == "smtp"
                else FolderTransport(folder / "out"))
            with Sender(record, {"email": route}, clock=lambda: NOON) as sender:
                start = time.perf_counter()
                report = sender.send_due()
                seconds = time.perf_counter() - start
            assert report.counts["sent"] == n and Outbox(record).counts()["sent"] == n
            print(f"{name:6} {n} messages in {seconds:.2f} s wall: {n / seconds:.0f} messages/s")
            record.close()
    loop.call_soon_threadsafe(loop.stop)
    assert handler.n == n


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
