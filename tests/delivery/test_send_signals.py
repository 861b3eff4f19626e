"""Stopping ``ccm send`` with SIGTERM or Ctrl-C never leaves a message in ``sending`` for the
next run to put in review: the message the relay is taking is settled first (exit 143 / 130),
and one still waiting for its rate limit goes back to the queue untouched. Real sender
processes against the real SMTP server."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from ccm.delivery import Route, Sender
from ccm.delivery.smtp import SmtpSettings
from ccm.record import MasterKey, Outbox, Record

from ._servers import SmtpServer, smtp_server
from .conftest import NOON, queue_engine, reminder
from .test_processes import AS_OF, delivered, wait_for, write_config

pytestmark = pytest.mark.slow


def queued(tmp_path: Path, env: dict[str, str], n: int) -> tuple[str, Record, list[str]]:
    url = f"sqlite:///{tmp_path / 'record.db'}"
    record = Record(url, master_key=MasterKey.from_file(env["CCM_MASTER_KEY_FILE"]))
    made = queue_engine(record).render_many(
        "payment_reminder", [reminder(i) for i in range(n)], "email")
    return url, record, [m.message_id for m in made]


def start(config: Path, url: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "ccm", "send", "--config", str(config), "--record", url,
         "--as-of", AS_OF], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(server: SmtpServer, config: Path, url: str, env: dict[str, str],
           ids: list[str], record: Record) -> None:
    """A second run sends the rest; the relay then holds every message exactly once, and the
    record says sent for each, none in review, its chains intact."""
    again = start(config, url, env)
    _, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    assert delivered(server) == Counter(dict.fromkeys(ids, 1))
    counts = Outbox(record).counts()
    assert (counts["sent"], counts["review"], counts["sending"]) == (len(ids), 0, 0)
    assert record.verify().ok


def test_sigterm_while_the_relay_takes_a_message_settles_it_then_stops(
        tmp_path: Path, env: dict[str, str]) -> None:
    """SIGTERM while the relay holds a message before answering: ``ccm send`` waits for the
    answer, records ``sent``, takes no other message and exits 143 saying how many are left;
    nothing is in review, and the next run sends the rest once each."""
    url, record, ids = queued(tmp_path, env, 4)
    with smtp_server() as server:
        server.mailbox.delay = 1.0  # stored, then answered a second later: the kill lands here
        config = write_config(tmp_path, server)
        proc = start(config, url, env)
        wait_for(lambda: sum(delivered(server).values()) == 1, proc)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 128 + signal.SIGTERM, err
        assert "ccm: stopped by SIGTERM after the message in hand; 3 message(s) left queued" \
            in err and "Traceback" not in err
        assert out.startswith("sent ") and out.count("\n") == 1
        items = {i.message_id: i for i in Outbox(record).items()}
        [first] = delivered(server)
        assert first is not None
        assert (items[first].state, items[first].attempts) == ("sent", 1)
        assert sorted((i.state, i.attempts) for m, i in items.items() if m != first) == \
            [("queued", 0)] * 3
        finish(server, config, url, env, ids, record)
    record.close()


def test_ctrl_c_while_waiting_for_the_rate_limit_puts_the_message_back(
        tmp_path: Path, env: dict[str, str]) -> None:
    """Ctrl-C while the next message waits for the route's rate limit: that message was never
    handed over, so it goes back to the queue untouched (not to review) and ``ccm send``
    exits 130 after the summary."""
    url, record, ids = queued(tmp_path, env, 3)
    with smtp_server() as server:
        config = write_config(tmp_path, server)
        config.write_text(config.read_text("utf-8") + "    rate: 0.001\n", "utf-8")
        proc = start(config, url, env)
        outbox = Outbox(record)
        # One sent, the next claimed and waiting ~1000 s for the limit.
        wait_for(lambda: (outbox.counts()["sent"], outbox.counts()["sending"]) == (1, 1), proc)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 128 + signal.SIGINT, err
        assert "ccm: 1 sent" in err and "stopped by SIGINT" in err and "Traceback" not in err
        assert sorted((i.state, i.attempts) for i in outbox.items()) == \
            [("queued", 0), ("queued", 0), ("sent", 1)]
        assert sum(delivered(server).values()) == 1
        config.write_text(config.read_text("utf-8").replace("rate: 0.001", "rate: 1000"),
                          "utf-8")
        finish(server, config, url, env, ids, record)
    record.close()


def test_an_interrupt_before_the_transport_has_the_message_puts_it_back(
        rec: Record) -> None:
    """In the API too: an interrupt raised while a message waits for its rate limit leaves
    it ``queued`` with its attempt not counted, and the next sender delivers it -- once."""
    ids = [m.message_id for m in queue_engine(rec).render_many(
        "payment_reminder", [reminder(i) for i in range(2)], "email")]

    def interrupted(_seconds: float) -> None:
        raise KeyboardInterrupt

    with smtp_server() as server:
        settings = SmtpSettings(host=server.host, port=server.port, security="none",
                                bounce_address="bounces@acme.example")
        route = Route("email", "smtp", settings, rate=0.001)
        with Sender(rec, {"email": route}, clock=lambda: NOON, sleep=interrupted) as sender, \
                pytest.raises(KeyboardInterrupt):
            sender.send_due()
        outbox = Outbox(rec)
        assert sorted((i.state, i.attempts) for i in outbox.items()) == \
            [("queued", 0), ("sent", 1)]
        [back] = outbox.items(states=["queued"])
        assert [e.kind for e in rec.events(back.message_id)] == ["queued", "sending", "retry"]
        with Sender(rec, {"email": Route("email", "smtp", settings)},
                    clock=lambda: NOON) as sender:
            assert sender.send_due().counts == {"sent": 1, "retry": 0, "failed": 0,
                                                "review": 0, "reconciled": 0}
        assert delivered(server) == Counter(dict.fromkeys(ids, 1))
