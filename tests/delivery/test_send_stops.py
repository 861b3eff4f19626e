"""What is not a message's fault never fails it: ``ccm send`` without the master key, with a
folder it cannot write, or with the relay down stops, puts the message back untouched and
says so with its exit code; a failed message can be queued again; a run in which a message
failed for good exits 1."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest

from ccm.cli import main
from ccm.cli._common import ExitCode
from ccm.delivery import FolderTransport, Sender
from ccm.delivery.smtp import SmtpSettings, SmtpTransport
from ccm.errors import KeyConfigError, PermanentDeliveryError, TransportUnavailable
from ccm.record import Outbox, Record
from ccm.testing import CaptureTransport

from ._servers import smtp_server
from .conftest import NOON
from .test_cli import AS_OF, config, render_queued

FOLDER = "version: 1\nchannels:\n  email: {{transport: folder, path: '{out}'}}\n"


def states(setup: dict[str, object]) -> list[tuple[str, int]]:
    record = Record(str(setup["url"]))
    try:
        return [(i.state, i.attempts) for i in Outbox(record).items()]
    finally:
        record.close()


def send(setup: dict[str, object], path: Path, *more: str) -> int:
    return main(["send", "--config", str(path), "--record", str(setup["url"]),
                 "--as-of", AS_OF, *more])


def errors(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("ccm: error:")]


def free_port() -> int:
    """A local port nothing listens on (connections to it are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- 1. the master key ---------------------------------------------------------------------


def test_send_without_the_master_key_takes_no_message(
        setup: dict[str, object], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """No key in the environment: one line naming the variables, exit 1, every message still
    queued with no attempt counted, nothing written; with the key back, all three go."""
    render_queued(setup, capsys)
    tmp = Path(str(setup["tmp"]))
    path = tmp / "d.yaml"
    path.write_text(FOLDER.format(out=tmp / "drop"), "utf-8")
    monkeypatch.delenv("CCM_MASTER_KEY_FILE")
    assert send(setup, path) == ExitCode.BAD_INPUT
    err = capsys.readouterr().err
    [line] = errors(err)
    assert "CCM_MASTER_KEY_FILE" in line and "CCM_MASTER_KEY" in line
    assert "failed" not in err
    assert states(setup) == [("queued", 0)] * 3
    assert not (tmp / "drop").exists()
    monkeypatch.setenv("CCM_MASTER_KEY_FILE", str(tmp / "master.key"))
    assert send(setup, path) == 0
    assert states(setup) == [("sent", 1)] * 3


def test_the_sender_puts_a_message_back_when_the_key_is_missing(
        setup: dict[str, object], capsys: pytest.CaptureFixture[str]) -> None:
    """The Sender itself (the API): a KeyConfigError while preparing a message leaves it
    queued, untouched, and stops the run with that error."""
    render_queued(setup, capsys)
    record = Record(str(setup["url"]))
    try:
        with Sender(record, {"email": FolderTransport(Path(str(setup["tmp"])) / "drop")},
                    clock=lambda: NOON) as sender, pytest.raises(KeyConfigError):
            sender.send_due()
    finally:
        record.close()
    assert states(setup) == [("queued", 0)] * 3


# -- 2. the folder transport's folder --------------------------------------------------------


def test_a_folder_that_cannot_be_written_stops_the_sender(
        setup: dict[str, object], capsys: pytest.CaptureFixture[str]) -> None:
    """The folder's parent is a file: exit 5, one line naming the folder and what to do, the
    messages queued with no attempt counted -- however many runs; fixed, they all go."""
    render_queued(setup, capsys)
    tmp = Path(str(setup["tmp"]))
    (tmp / "blocker").write_text("not a folder", "utf-8")
    drop = tmp / "blocker" / "drop"
    path = tmp / "d.yaml"
    path.write_text(FOLDER.format(out=drop), "utf-8")
    for _ in range(3):
        assert send(setup, path) == ExitCode.IO_ERROR
        err = capsys.readouterr().err
        [line] = errors(err)
        assert str(drop) in line and "set another path" in line
        assert "3 message(s) left queued" in line
        assert states(setup) == [("queued", 0)] * 3
    (tmp / "blocker").unlink()
    assert send(setup, path) == 0
    assert states(setup) == [("sent", 1)] * 3
    assert len(list(drop.glob("*.eml"))) == 3


# -- 3. the relay ------------------------------------------------------------------------------


def test_a_relay_that_cannot_be_reached_uses_up_no_attempt(
        setup: dict[str, object], capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing listens on the relay's port: with max_attempts 2, two (and more) runs fail
    nothing; each exits 5 naming host:port and how many are left; the relay back, all go."""
    render_queued(setup, capsys)
    tmp = Path(str(setup["tmp"]))
    port = free_port()
    path = config(setup, port)
    path.write_text(path.read_text("utf-8") + "    retry: {max_attempts: 2}\n", "utf-8")
    for _ in range(3):
        assert send(setup, path) == ExitCode.IO_ERROR
        err = capsys.readouterr().err
        [line] = errors(err)
        assert f"127.0.0.1:{port} cannot be reached" in line
        assert "3 message(s) left queued" in line
        assert states(setup) == [("queued", 0)] * 3
    with smtp_server() as server:
        path = config(setup, server.port)
        assert send(setup, path) == 0
    assert states(setup) == [("sent", 1)] * 3
    assert len(server.mailbox.messages) == 3
    del tmp


def test_a_relay_that_goes_away_mid_run_stops_the_run(
        setup: dict[str, object], capsys: pytest.CaptureFixture[str]) -> None:
    """One message goes, then the relay stops: the sender does not walk the rest of the
    queue with "connection refused"; it stops at once, the others queued and uncounted."""
    render_queued(setup, capsys)
    record = Record(str(setup["url"]), master_key=setup["key"])  # type: ignore[arg-type]
    try:
        with smtp_server() as server:
            transport = SmtpTransport(SmtpSettings("127.0.0.1", server.port, security="none",
                                                   bounce_address="bounces@acme.example"))
            sender = Sender(record, {"email": transport}, clock=lambda: NOON)
            assert sender.send_due(limit=1).counts["sent"] == 1
        with sender, pytest.raises(TransportUnavailable) as caught:
            sender.send_due()
        assert f"127.0.0.1:{server.port}" in str(caught.value)
    finally:
        record.close()
    assert sorted(states(setup)) == [("queued", 0), ("queued", 0), ("sent", 1)]


class Flaky(CaptureTransport):
    """Unreachable for the first ``down`` sends, then fine."""

    def __init__(self, down: int) -> None:
        super().__init__()
        self.down = down

    def send(self, message):  # type: ignore[no-untyped-def]
        if self.down:
            self.down -= 1
            raise TransportUnavailable("relay 127.0.0.1:1 cannot be reached", where="x")
        return super().send(message)


def test_follow_waits_with_backoff_and_tries_again(
        setup: dict[str, object], capsys: pytest.CaptureFixture[str]) -> None:
    """``run`` (``--follow``) does not exit on an outage: it waits poll, 2 x poll, ... and
    tries again; the message goes on its first counted attempt."""
    render_queued(setup, capsys)
    record = Record(str(setup["url"]), master_key=setup["key"])  # type: ignore[arg-type]
    stop = threading.Event()
    waits: list[float] = []
    sent: list[str] = []

    def on_result(result: object) -> None:
        sent.append(result.state)  # type: ignore[attr-defined]
        if len(sent) == 3:
            stop.set()

    try:
        with Sender(record, {"email": Flaky(3)}, clock=lambda: NOON) as sender:
            sender.run(stop, poll=0.01, on_result=on_result,
                       on_unavailable=lambda exc, wait: waits.append(wait), max_wait=0.03)
    finally:
        record.close()
    assert waits == [0.01, 0.02, 0.03] and sent == ["sent"] * 3
    assert states(setup) == [("sent", 1)] * 3


# -- 4. failed -> queued -------------------------------------------------------------------------


def fail_one(setup: dict[str, object]) -> str:
    record = Record(str(setup["url"]), master_key=setup["key"])  # type: ignore[arg-type]
    try:
        transport = CaptureTransport()
        transport.fail_next(PermanentDeliveryError("550 no such user", code=550))
        with Sender(record, {"email": transport}, clock=lambda: NOON) as sender:
            result = sender.send_one()
        assert result is not None and result.state == "failed"
        return result.message_id
    finally:
        record.close()


def test_a_failed_message_can_be_queued_again(
        setup: dict[str, object], capsys: pytest.CaptureFixture[str]) -> None:
    """``--resolve ID --as queued`` on a failed message: queued, attempts back to 0; the next
    run sends it."""
    render_queued(setup, capsys)
    message_id = fail_one(setup)
    assert main(["send", "--record", str(setup["url"]), "--resolve", message_id, "--as",
                 "queued", "--note", "address fixed", "--as-of", AS_OF, "--json"]) == 0
    item = json.loads(capsys.readouterr().out)
    assert (item["state"], item["attempts"], item["error"]) == ("queued", 0, None)
    tmp = Path(str(setup["tmp"]))
    path = tmp / "d.yaml"
    path.write_text(FOLDER.format(out=tmp / "drop"), "utf-8")
    assert send(setup, path) == 0
    assert states(setup) == [("sent", 1)] * 3


def test_a_failed_message_of_an_erased_customer_stays_failed(
        setup: dict[str, object], capsys: pytest.CaptureFixture[str]) -> None:
    """The customer was erased since: queueing it again is refused with the reason."""
    render_queued(setup, capsys)
    message_id = fail_one(setup)
    record = Record(str(setup["url"]), master_key=setup["key"])  # type: ignore[arg-type]
    try:
        item = Outbox(record).get(message_id)
        assert item is not None
        record.erase(item.customer_id)
    finally:
        record.close()
    assert main(["send", "--record", str(setup["url"]), "--resolve", message_id, "--as",
                 "queued", "--as-of", AS_OF]) == ExitCode.CONFLICT
    [line] = errors(capsys.readouterr().err)
    assert "cannot be sent again" in line and "erased" in line
    record = Record(str(setup["url"]))
    try:
        item = Outbox(record).get(message_id)
        assert item is not None and item.state == "failed"
    finally:
        record.close()


# -- 5. the exit status ------------------------------------------------------------------------


def test_send_exits_1_when_a_message_failed(
        setup: dict[str, object], capsys: pytest.CaptureFixture[str]) -> None:
    """The relay refuses every recipient for good: ``ccm: 3 failed`` and exit 1."""
    render_queued(setup, capsys)
    with smtp_server() as server:
        server.mailbox.mode = "rcpt-5xx"
        assert send(setup, config(setup, server.port)) == ExitCode.BAD_INPUT
    assert "ccm: 3 failed" in capsys.readouterr().err
    assert [s for s, _ in states(setup)] == ["failed"] * 3


def test_follow_keeps_waiting_for_the_relay_and_stops_cleanly(
        setup: dict[str, object], capsys: pytest.CaptureFixture[str]) -> None:
    """``ccm send --follow`` with the relay down (a real process): it says it will try
    again, does not exit, counts no attempt; SIGTERM stops it with exit 0."""
    import os
    import signal
    import subprocess
    import sys

    render_queued(setup, capsys)
    port = free_port()
    path = config(setup, port)
    env = {**os.environ, "CCM_MASTER_KEY_FILE": str(Path(str(setup["tmp"])) / "master.key")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ccm", "send", "--follow", "--poll", "0.05", "--config",
         str(path), "--record", str(setup["url"]), "--as-of", AS_OF],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")),
                              daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        deadline = time.monotonic() + 20
        while sum("trying again" in line for line in lines) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        reader.join(10)
        proc.stderr.close()  # type: ignore[union-attr]
    rest = "".join(lines)
    assert proc.returncode == 0, rest
    waits = [line for line in lines if "trying again in" in line]
    assert len(waits) >= 3 and f"127.0.0.1:{port} cannot be reached" in waits[0]
    assert "3 message(s) left queued" in waits[0]
    assert "trying again in 0.05s" in waits[0] and "trying again in 0.1s" in waits[1]
    assert states(setup) == [("queued", 0)] * 3
