"""Real sender processes against the real SMTP server: SIGKILL at random moments never sends a
message twice and loses none; four senders on PostgreSQL share the queue without double
sending and stop cleanly on SIGTERM."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from ccm.delivery.verp import message_id_from
from ccm.record import MasterKey, Outbox, Record

from ._servers import SmtpServer, smtp_server
from .conftest import NOON, queue_engine, reminder

AS_OF = "2026-03-02T12:00:00+00:00"
pytestmark = pytest.mark.slow


def write_config(tmp_path: Path, server: SmtpServer) -> Path:
    path = tmp_path / "delivery.yaml"
    path.write_text(f"version: 1\nchannels:\n  email:\n    transport: smtp\n"
                    f"    host: 127.0.0.1\n    port: {server.port}\n    security: none\n"
                    f"    bounce_address: bounces@acme.example\n", "utf-8")
    return path


def sender(config: Path, url: str, env: dict[str, str], *, follow: bool = True
           ) -> subprocess.Popen[str]:
    args = [sys.executable, "-m", "ccm", "send", "--config", str(config), "--record", url,
            "--as-of", AS_OF]
    if follow:
        args += ["--follow", "--poll", "0.05"]
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)


def wait_for(condition: object, proc: subprocess.Popen[str] | None = None,
             limit: float = 120.0) -> None:
    """Poll ``condition()`` until true (a guard against hanging, not a timing assertion)."""
    end = time.monotonic() + limit
    while not condition():  # type: ignore[operator]
        if proc is not None and proc.poll() is not None:
            return
        if time.monotonic() > end:
            raise AssertionError("gave up waiting")
        time.sleep(0.01)


def delivered(server: SmtpServer) -> Counter[str | None]:
    with server.mailbox.lock:
        return Counter(message_id_from(m.mail_from) for m in server.mailbox.messages)


def test_sigkill_at_any_moment_never_sends_twice_and_loses_nothing(
        tmp_path: Path, env: dict[str, str]) -> None:
    """Senders killed with SIGKILL mid-run, then restarted: the mailbox never holds a message
    twice, every message ends sent or in review, and once review is settled (resent only when
    the mailbox lacks it) the mailbox holds each message exactly once."""
    url = f"sqlite:///{tmp_path / 'record.db'}"
    record = Record(url, master_key=MasterKey.from_file(env["CCM_MASTER_KEY_FILE"]))
    engine = queue_engine(record)
    ids = [m.message_id for m in engine.render_many(
        "payment_reminder", [reminder(i) for i in range(12)], "email")]
    rng = random.Random(13)
    with smtp_server() as server:
        server.mailbox.delay = 0.03  # the server holds each message a moment before answering
        config = write_config(tmp_path, server)
        for _ in range(3):
            before = sum(delivered(server).values())
            proc = sender(config, url, env)
            wait_for(lambda before=before: sum(delivered(server).values()) > before, proc)
            time.sleep(rng.uniform(0.0, 0.06))
            proc.kill()
            proc.communicate()
            assert max(delivered(server).values(), default=0) <= 1
        final = sender(config, url, env, follow=False)
        _, err = final.communicate(timeout=120)
        assert final.returncode == 0, err
        outbox = Outbox(record)
        counts = outbox.counts()
        assert counts["queued"] == counts["sending"] == counts["failed"] == 0
        assert counts["sent"] + counts["review"] == len(ids)
        got = delivered(server)
        assert max(got.values()) == 1
        for item in outbox.items(states=["sent"]):
            assert got[item.message_id] == 1
        # The operator's review: what reached the mailbox was sent; the rest goes again.
        for item in outbox.items(states=["review"]):
            decision = "sent" if got[item.message_id] else "queued"
            outbox.resolve(item.message_id, decision, at=NOON, note="checked the relay")
        again = sender(config, url, env, follow=False)
        again.communicate(timeout=120)
        assert again.returncode == 0
        assert delivered(server) == Counter(dict.fromkeys(ids, 1))
    assert outbox.counts()["sent"] == len(ids)
    assert record.verify().ok
    record.close()


@pytest.mark.postgres
@pytest.mark.parametrize("record_url", ["postgres"], indirect=True)
def test_four_senders_on_postgresql_deliver_each_message_exactly_once(
        tmp_path: Path, env: dict[str, str], record_url: str) -> None:
    """Four ``ccm send --follow`` processes wait on one PostgreSQL outbox; forty messages are
    queued; each reaches the SMTP server exactly once, the work is shared, and SIGTERM stops
    every sender cleanly (exit 0, nothing left in sending)."""
    record = Record(record_url, master_key=MasterKey.from_file(env["CCM_MASTER_KEY_FILE"]))
    with smtp_server() as server:
        server.mailbox.delay = 0.02
        config = write_config(tmp_path, server)
        procs = [sender(config, record_url, env) for _ in range(4)]
        try:
            for proc in procs:  # each says it is running before anything is queued
                assert proc.stderr is not None
                assert "sending from" in proc.stderr.readline()
            made = queue_engine(record).render_many(
                "payment_reminder", [reminder(i) for i in range(40)], "email")
            outbox = Outbox(record)
            wait_for(lambda: outbox.counts()["sent"] == 40)
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                proc.communicate(timeout=60)
            codes = [proc.returncode for proc in procs]
        assert codes == [0, 0, 0, 0]
        assert delivered(server) == Counter(dict.fromkeys((m.message_id for m in made), 1))
    senders = {e.data["sender"] for m in made for e in record.events(m.message_id)
               if e.kind == "sending" and e.data}
    assert len(senders) >= 2
    assert outbox.counts()["sending"] == 0 and record.verify().ok
    record.close()
