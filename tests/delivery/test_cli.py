"""``ccm render --queue`` and ``ccm send`` in-process: sending, dry run, review, resolve, and
every wrong invocation with its exit code and message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ccm.cli import main
from ccm.cli._common import ExitCode
from ccm.delivery import FolderTransport, Sender
from ccm.record import Outbox, Record

from ..examples_helpers import PACKS, TEMPLATES
from ._servers import smtp_server
from .conftest import reminder

AS_OF = "2026-03-02T12:00:00+00:00"


def render_queued(setup: dict[str, object], capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["render", "payment_reminder", "--pack", str(PACKS / "acme"), "--templates",
                 str(TEMPLATES), "--data", str(setup["data"]), "--channel", "email",
                 "--record", str(setup["url"]), "--queue", "--as-of", AS_OF])
    out = capsys.readouterr().out
    assert code == 0 and out.count("queued for 2026-03-02T12:00:00+00:00") == 3


def config(setup: dict[str, object], port: int) -> Path:
    path = Path(str(setup["tmp"])) / "delivery.yaml"
    path.write_text(f"version: 1\nchannels:\n  email:\n    transport: smtp\n"
                    f"    host: 127.0.0.1\n    port: {port}\n    security: none\n"
                    f"    bounce_address: bounces@acme.example\n", "utf-8")
    return path


def test_render_queue_then_dry_run_then_send(setup: dict[str, object],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """Three queued emails are listed by --dry-run and then sent; a second run finds nothing."""
    render_queued(setup, capsys)
    assert main(["send", "--dry-run", "--record", str(setup["url"]), "--as-of", AS_OF,
                 "--json"]) == 0
    due = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [d["state"] for d in due] == ["queued"] * 3
    with smtp_server() as server:
        path = config(setup, server.port)
        assert main(["send", "--config", str(path), "--record", str(setup["url"]),
                     "--as-of", AS_OF]) == 0
        captured = capsys.readouterr()
        assert captured.out.count("sent ") == 3 and "ccm: 3 sent" in captured.err
        assert main(["send", "--config", str(path), "--record", str(setup["url"]),
                     "--as-of", AS_OF]) == 0
        assert "nothing due" in capsys.readouterr().err
    assert len(server.mailbox.messages) == 3


def test_review_and_resolve(setup: dict[str, object], capsys: pytest.CaptureFixture[str]) -> None:
    """An uncertain send shows under --review; --resolve settles it; resolving it again, or an
    unknown id, is refused with CONFLICT and NOT_FOUND."""
    render_queued(setup, capsys)
    with smtp_server() as server:
        server.mailbox.mode = "drop-after-data"
        path = config(setup, server.port)
        assert main(["send", "--config", str(path), "--record", str(setup["url"]),
                     "--as-of", AS_OF, "--limit", "1"]) == 0
    capsys.readouterr()
    assert main(["send", "--review", "--record", str(setup["url"]), "--json"]) == 0
    [item] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert item["state"] == "review" and "may have taken it" in item["error"]
    args = ["send", "--record", str(setup["url"]), "--resolve", item["message_id"], "--as",
            "failed", "--note", "not in the relay log", "--as-of", "2026-03-02T13:00:00"]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == ExitCode.CONFLICT
    assert "is failed; it cannot become failed" in capsys.readouterr().err
    args[4] = "0" * 32
    assert main(args) == ExitCode.NOT_FOUND


def test_a_second_sender_on_sqlite_is_refused(setup: dict[str, object],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """While one sender holds the SQLite record, ccm send exits with CONFLICT and says why."""
    render_queued(setup, capsys)
    record = Record(str(setup["url"]), master_key=setup["key"])  # type: ignore[arg-type]
    holder = Sender(record, {"email": FolderTransport(Path(str(setup["tmp"])) / "out")})
    try:
        with smtp_server() as server:
            code = main(["send", "--config", str(config(setup, server.port)), "--record",
                         str(setup["url"])])
        assert code == ExitCode.CONFLICT
        assert "another sender is running" in capsys.readouterr().err
        assert server.mailbox.messages == []
    finally:
        holder.close()
        record.close()
    assert Outbox(Record(str(setup["url"]))).counts()["queued"] == 3


@pytest.mark.parametrize(("argv", "code", "words"), [
    (["send"], ExitCode.USAGE, "--config delivery.yaml is needed"),
    (["send", "--dry-run", "--review"], ExitCode.USAGE, "choose one of"),
    (["send", "--resolve", "abc"], ExitCode.USAGE, "go together"),
    (["send", "--follow", "--limit", "5"], ExitCode.USAGE,
     "--limit N sends at most N messages and exits; --follow keeps sending until stopped"),
    (["send", "--config", "{tmp}/missing.yaml"], ExitCode.NOT_FOUND,
     "missing.yaml: no such delivery config file"),
    (["send", "--config", "{tmp}/bad.yaml"], ExitCode.BAD_INPUT,
     "channels.email.password_env: environment variable SMTP_PW is not set"),
])
def test_wrong_invocations(setup: dict[str, object], capsys: pytest.CaptureFixture[str],
                           monkeypatch: pytest.MonkeyPatch, argv: list[str], code: int,
                           words: str) -> None:
    """Each mistake gets one line naming what to fix, and its documented exit code."""
    render_queued(setup, capsys)
    tmp = Path(str(setup["tmp"]))
    (tmp / "bad.yaml").write_text(
        "version: 1\nchannels:\n  email: {transport: smtp, host: h, bounce_address: b@x.org, "
        "username: u, password_env: SMTP_PW}\n", "utf-8")
    monkeypatch.delenv("SMTP_PW", raising=False)
    args = [a.replace("{tmp}", str(tmp)) for a in argv] + ["--record", str(setup["url"])]
    assert main(args) == code
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err


def test_no_record_and_queue_without_a_key(setup: dict[str, object],
                                           capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """ccm send on a record that does not exist is NOT_FOUND; render --queue without a master
    key says the outbox needs one."""
    tmp = Path(str(setup["tmp"]))
    assert main(["send", "--dry-run", "--record", f"sqlite:///{tmp / 'none.db'}"]) == \
        ExitCode.NOT_FOUND
    monkeypatch.delenv("CCM_MASTER_KEY_FILE")
    code = main(["render", "payment_reminder", "--pack", str(PACKS / "acme"), "--templates",
                 str(TEMPLATES), "--data", str(setup["data"]), "--channel", "email",
                 "--record", str(setup["url"]), "--queue"])
    assert code == ExitCode.BAD_INPUT and "--queue needs a master key" in \
        capsys.readouterr().err


def test_a_refused_login_stops_the_sender_and_keeps_the_message_queued(
        setup: dict[str, object], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The relay refuses the password: ccm send exits 1 naming the setting (not the
    password), and the message is back in the queue with its attempt not counted."""
    from ._servers import self_signed, server_context

    render_queued(setup, capsys)
    tmp = Path(str(setup["tmp"]))
    cert, key = self_signed(tmp)
    with smtp_server(tls=server_context(cert, key), users={"ccm": "right"}) as server:
        path = tmp / "auth.yaml"
        path.write_text(f"version: 1\nchannels:\n  email:\n    transport: smtp\n"
                        f"    host: 127.0.0.1\n    port: {server.port}\n"
                        f"    username: ccm\n    password_env: SMTP_PW\n    ca_file: {cert}\n"
                        f"    bounce_address: bounces@acme.example\n", "utf-8")
        monkeypatch.setenv("SMTP_PW", "wrong-secret-pw")
        code = main(["send", "--config", str(path), "--record", str(setup["url"]),
                     "--as-of", AS_OF])
    err = capsys.readouterr().err
    assert code == ExitCode.BAD_INPUT and "refused the login" in err
    assert "wrong-secret-pw" not in err and server.mailbox.messages == []
    record = Record(str(setup["url"]))
    items = Outbox(record).items()
    assert [(i.state, i.attempts) for i in items] == [("queued", 0)] * 3
    record.close()


FOLDER_CONFIG = "version: 1\nchannels:\n  email:\n    transport: folder\n    path: {out}\n"


@pytest.mark.parametrize("how", ["option", "env"])
def test_a_relative_config_path_is_read_from_the_current_folder(
        setup: dict[str, object], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    """``--config cfg/delivery.yaml`` (or $CCM_DELIVERY_CONFIG) reads that file relative to
    the current folder -- not cfg/cfg/delivery.yaml -- and its relative ``path`` is relative
    to the config file's folder."""
    render_queued(setup, capsys)
    tmp = Path(str(setup["tmp"]))
    (tmp / "cfg" / "cfg").mkdir(parents=True)
    (tmp / "cfg" / "delivery.yaml").write_text(FOLDER_CONFIG.format(out="outbox"), "utf-8")
    # A decoy where the folder would be applied twice: it must never be read.
    (tmp / "cfg" / "cfg" / "delivery.yaml").write_text(
        FOLDER_CONFIG.format(out="decoy-outbox"), "utf-8")
    monkeypatch.chdir(tmp)
    args = ["send", "--record", str(setup["url"]), "--as-of", AS_OF]
    if how == "option":
        args += ["--config", "cfg/delivery.yaml"]
    else:
        monkeypatch.setenv("CCM_DELIVERY_CONFIG", "cfg/delivery.yaml")
    code = main(args)
    err = capsys.readouterr().err
    assert code == 0, err
    assert "ccm: 3 sent" in err
    assert len(list((tmp / "cfg" / "outbox").iterdir())) == 3
    assert not list(tmp.rglob("decoy-outbox"))


def test_a_config_in_a_parent_folder_is_read(setup: dict[str, object],
                                             capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """``--config ../d2.yaml`` from a subfolder reads the file; it is not refused as outside
    a folder it is in."""
    render_queued(setup, capsys)
    tmp = Path(str(setup["tmp"]))
    (tmp / "cfg").mkdir()
    (tmp / "d2.yaml").write_text(FOLDER_CONFIG.format(out="outbox"), "utf-8")
    monkeypatch.chdir(tmp / "cfg")
    code = main(["send", "--config", "../d2.yaml", "--record", str(setup["url"]),
                 "--as-of", AS_OF])
    err = capsys.readouterr().err
    assert code == 0, err
    assert len(list((tmp / "outbox").iterdir())) == 3


def test_a_relative_config_that_is_a_symlink_out_of_its_folder_is_refused(
        setup: dict[str, object], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The containment rule still holds for a relative path: a config that is a symlink
    leaving its folder is refused (exit 1), naming the file as given."""
    render_queued(setup, capsys)
    tmp = Path(str(setup["tmp"]))
    (tmp / "cfg").mkdir()
    (tmp / "elsewhere.yaml").write_text(FOLDER_CONFIG.format(out="outbox"), "utf-8")
    (tmp / "cfg" / "delivery.yaml").symlink_to(tmp / "elsewhere.yaml")
    monkeypatch.chdir(tmp)
    code = main(["send", "--config", "cfg/delivery.yaml", "--record", str(setup["url"]),
                 "--as-of", AS_OF])
    err = capsys.readouterr().err
    assert code == ExitCode.BAD_INPUT
    assert "cfg/delivery.yaml: refused: resolves outside" in err


@pytest.mark.parametrize(("as_of", "due"), [
    ("2026-03-03", 3),                   # a date alone: midnight UTC
    ("2026-03-02T12:00Z", 3),            # Z, no seconds
    ("2026-03-02 12:00:00+00:00", 3),
    ("2026-03-02T11:59", 0),             # naive: UTC, a minute before they are due
])
def test_as_of_takes_the_iso_forms_of_batch_and_render(
        setup: dict[str, object], capsys: pytest.CaptureFixture[str], as_of: str,
        due: int) -> None:
    """``ccm send --as-of`` reads the same ISO 8601 forms as ``ccm batch`` and ``ccm render``
    (one parser): a date alone, ``Z``, no seconds."""
    render_queued(setup, capsys)
    code = main(["send", "--dry-run", "--record", str(setup["url"]), "--as-of", as_of])
    err = capsys.readouterr().err
    assert code == 0, err
    assert f"ccm: {due} message(s) due" in err


def test_a_wrong_as_of_is_a_usage_error_naming_iso_8601(
        setup: dict[str, object], capsys: pytest.CaptureFixture[str]) -> None:
    """A value that is no date is one line naming the expected form, exit 2, as in batch."""
    code = main(["send", "--dry-run", "--record", str(setup["url"]), "--as-of", "June 1st"])
    err = capsys.readouterr().err
    assert code == ExitCode.USAGE
    assert "'June 1st' is not an ISO 8601 date and time" in err and "strptime" not in err
    assert "does not match the format" not in err


def test_a_missing_config_is_not_found_naming_the_file(
        setup: dict[str, object], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``--config`` (or $CCM_DELIVERY_CONFIG) naming no file: exit 3, one line naming it,
    for a real run and for a dry run alike; nothing is sent."""
    render_queued(setup, capsys)
    missing = Path(str(setup["tmp"])) / "missing.yaml"
    for extra in ([], ["--dry-run"]):
        code = main(["send", "--config", str(missing), "--record", str(setup["url"]),
                     "--as-of", AS_OF, *extra])
        err = capsys.readouterr().err
        assert code == ExitCode.NOT_FOUND, err
        assert err == f"ccm: error: {missing}: no such delivery config file; check the path\n"
    monkeypatch.setenv("CCM_DELIVERY_CONFIG", str(missing))
    assert main(["send", "--record", str(setup["url"]), "--as-of", AS_OF]) == \
        ExitCode.NOT_FOUND
    assert str(missing) in capsys.readouterr().err
    assert Outbox(Record(str(setup["url"]))).counts()["queued"] == 3


def test_the_dry_run_checks_the_config_as_the_real_run_does(
        setup: dict[str, object], capsys: pytest.CaptureFixture[str]) -> None:
    """A config the real send refuses (``rate: -3``) fails the dry run the same way (exit 1,
    the same line), before anything is listed; a good one is said to be valid, and the dry
    run still sends nothing."""
    render_queued(setup, capsys)
    tmp = Path(str(setup["tmp"]))
    bad = tmp / "bad-rate.yaml"
    bad.write_text(FOLDER_CONFIG.format(out="outbox") + "    rate: -3\n", "utf-8")
    base = ["send", "--config", str(bad), "--record", str(setup["url"]), "--as-of", AS_OF]
    assert main(base) == ExitCode.BAD_INPUT
    real = capsys.readouterr()
    assert main([*base, "--dry-run"]) == ExitCode.BAD_INPUT
    dry = capsys.readouterr()
    assert dry.err == real.err and "channels.email" in dry.err and "rate" in dry.err
    assert dry.out == "" and "Traceback" not in dry.err
    good = tmp / "good.yaml"
    good.write_text(FOLDER_CONFIG.format(out="outbox"), "utf-8")
    assert main(["send", "--dry-run", "--config", str(good), "--record", str(setup["url"]),
                 "--as-of", AS_OF]) == 0
    assert f"ccm: 3 message(s) due; delivery config {good} is valid" in capsys.readouterr().err
    assert not (tmp / "outbox").exists()
    assert Outbox(Record(str(setup["url"]))).counts()["queued"] == 3


def test_each_line_reaches_the_log_as_its_message_is_sent(
        setup: dict[str, object], capsys: pytest.CaptureFixture[str]) -> None:
    """``ccm send > send.log 2>&1`` killed with SIGKILL half-way: the log holds a line for
    every message the record says was sent (each line is written when its message is
    settled, not at the end)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    tmp = Path(str(setup["tmp"]))
    data = Path(str(setup["data"]))
    data.write_text("".join(json.dumps(reminder(i)) + "\n" for i in range(8)), "utf-8")
    code = main(["render", "payment_reminder", "--pack", str(PACKS / "acme"), "--templates",
                 str(TEMPLATES), "--data", str(data), "--channel", "email",
                 "--record", str(setup["url"]), "--queue", "--as-of", AS_OF])
    assert code == 0
    capsys.readouterr()
    path = tmp / "slow.yaml"  # 2 a second: 8 messages take about 4 s
    path.write_text(FOLDER_CONFIG.format(out="outbox") + "    rate: 2\n", "utf-8")
    log = tmp / "send.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ccm", "send", "--config", str(path), "--record",
             str(setup["url"]), "--as-of", AS_OF], stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "",
                 "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    try:
        deadline = time.monotonic() + 60
        while log.read_text("utf-8").count("\n") < 2 and proc.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, f"no line before the sender finished:\n{log.read_text()}"
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    record = Record(str(setup["url"]))
    try:
        sent = {i.message_id for i in Outbox(record).items() if i.state == "sent"}
    finally:
        record.close()
    lines = log.read_text("utf-8").splitlines()
    logged = {line.split()[1] for line in lines if line.startswith("sent ")}
    assert 2 <= len(sent) < 8, lines
    assert logged == sent, lines
