"""`ccm events bounce` and `ccm record unsuppress`: real report files into a real record."""

from __future__ import annotations

import mailbox
from pathlib import Path
from typing import Any

import pytest

from ccm.cli import main
from ccm.record import Record
from tests.delivery._mail import arf, dsn
from tests.record._support import T0, entry

EMAIL = "a" * 32
OFFER = "b" * 32


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def url(tmp_path: Path) -> str:
    """A SQLite record with an operational email and a marketing email for C1."""
    address = f"sqlite:///{tmp_path / 'record.db'}"
    with Record(address) as rec:
        rec.append(entry("C1", message_id=EMAIL, message_type="operational", created_at=T0))
        rec.append(entry("C1", message_id=OFFER, created_at=T0))
    return address


def test_bounce_files_and_maildir(tmp_path: Path, url: str,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Files and a maildir are read; each report prints one line; the events are in the record."""
    hard = tmp_path / "hard.eml"
    hard.write_bytes(dsn(EMAIL))
    box = mailbox.Maildir(tmp_path / "Maildir", create=True)
    box.add(arf(OFFER))
    code, out, err = run(capsys, "events", "bounce", str(hard), "--maildir",
                         str(tmp_path / "Maildir"), "--record", url, "--at", "2025-03-03T13:00:00")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == f"{hard}: hard bounce 5.1.1; message {EMAIL} (bounced, suppressed)"
    assert lines[1].endswith(f"complaint; message {OFFER} (complained)")
    with Record(url) as rec:
        assert rec.consent_overrides("C1") == {"blocked:email": False, "email": False}
    code, out, _ = run(capsys, "events", "bounce", str(hard), "--record", url, "--at",
                       "2025-03-03")  # the ISO forms --as-of takes elsewhere
    assert code == 0 and out.strip().endswith("(nothing new)")


def test_bad_and_unmatched_reports_are_named_and_skipped(
    tmp_path: Path, url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A hostile file and a report about another record's message fail by name; exit 1."""
    junk = tmp_path / "junk.eml"
    junk.write_bytes(b"\x00\xff" * 100 + b"\r\nSubject: x")
    other = tmp_path / "other.eml"
    other.write_bytes(dsn("c" * 32))
    good = tmp_path / "good.eml"
    good.write_bytes(dsn(EMAIL, status="4.2.2", action="delayed"))
    code, out, err = run(capsys, "events", "bounce", str(junk), str(other), str(good),
                         "--record", url)
    assert code == 1
    assert f"{junk}: not a delivery report" in err
    assert f"{other}: report is about message {'c' * 32}, which is not in this record" in err
    assert "2 report(s) not recorded" in err and "Traceback" not in err
    assert "soft bounce 4.2.2" in out


def test_usage_and_missing_inputs(tmp_path: Path, url: str,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    """No input is a usage error; a missing record or a folder that is no maildir says so."""
    assert run(capsys, "events", "bounce", "--record", url)[0] == 2
    missing = f"sqlite:///{tmp_path / 'nope.db'}"
    hard = tmp_path / "hard.eml"
    hard.write_bytes(dsn(EMAIL))
    code, _, err = run(capsys, "events", "bounce", str(hard), "--record", missing)
    assert code == 3 and "no record at" in err  # NOT_FOUND, as in ccm record
    code, _, err = run(capsys, "events", "bounce", "--maildir", str(tmp_path), "--record", url)
    assert code == 3 and "not a maildir" in err


def test_unsuppress_lifts_a_hard_bounce(tmp_path: Path, url: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """After a hard bounce, `ccm record unsuppress` adds an event and the block is gone."""
    hard = tmp_path / "hard.eml"
    hard.write_bytes(dsn(EMAIL))
    assert run(capsys, "events", "bounce", str(hard), "--record", url)[0] == 0
    code, out, _ = run(capsys, "record", "unsuppress", "C1", "--channel", "email",
                       "--record", url)
    assert code == 0 and "email unsuppressed" in out
    with Record(url) as rec:
        assert rec.consent_overrides("C1") == {}
        assert rec.timeline("C1").summary["suppressed_channels"] == []
    code, _, err = run(capsys, "record", "unsuppress", "C1", "--channel", "email",
                       "--record", url)
    assert code == 3 and "no suppression on email" in err


def test_an_old_bounce_read_again_leaves_the_unsuppress_alone(
    tmp_path: Path, url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """bounce, unsuppress, bounce the same file again (a cron re-reading the maildir): nothing
    new, and the customer stays unblocked, however often it is read."""
    old = tmp_path / "old.eml"
    old.write_bytes(dsn(EMAIL))
    code, out, _ = run(capsys, "events", "bounce", str(old), "--record", url)
    assert code == 0 and out.strip().endswith("(bounced, suppressed)")
    code, out, _ = run(capsys, "record", "unsuppress", "C1", "--channel", "email",
                       "--record", url)
    assert code == 0 and "email unsuppressed" in out
    for _ in range(2):
        code, out, err = run(capsys, "events", "bounce", str(old), "--record", url)
        assert (code, err) == (0, "") and out.strip().endswith("(nothing new)")
        with Record(url) as rec:
            assert rec.consent_overrides("C1") == {}
    code, _, err = run(capsys, "record", "unsuppress", "C1", "--channel", "email",
                       "--record", url)
    assert code == 3 and "no suppression on email" in err  # nothing to lift: still unblocked


def test_a_report_about_an_sms_or_a_held_email_is_unmatched(
    tmp_path: Path, url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A DSN naming an SMS message, or an email that was suppressed, is reported by file
    name as not a generated email and skipped; the next file is still read; exit 1."""
    sms, held = "c" * 32, "d" * 32
    with Record(url) as rec:
        rec.append(entry("C1", message_id=sms, channel="sms", created_at=T0))
        rec.append(entry("C1", message_id=held, status="suppressed", reason="consent:email",
                         created_at=T0))
    files = []
    for name, mid in (("sms.eml", sms), ("held.eml", held), ("good.eml", EMAIL)):
        path = tmp_path / name
        path.write_bytes(dsn(mid))
        files.append(str(path))
    code, out, err = run(capsys, "events", "bounce", *files, "--record", url)
    assert code == 1
    assert f"{files[0]}: report is about message {sms}, which is sms, not email" in err
    assert f"{files[1]}: report is about message {held}, which was suppressed, never sent" in err
    assert "2 report(s) not recorded" in err and "Traceback" not in err
    assert out.strip() == f"{files[2]}: hard bounce 5.1.1; message {EMAIL} (bounced, suppressed)"
    with Record(url) as rec:
        assert [e.kind for e in rec.events(sms)] == [] and rec.events(held) == []


def test_serve_without_a_tracking_key_says_what_to_set(
    url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ccm events serve` without a tracking key fails in one line naming the variable."""
    for name in ("CCM_TRACKING_KEY", "CCM_TRACKING_KEY_FILE", "CCM_MASTER_KEY",
                 "CCM_MASTER_KEY_FILE", "CCM_TWILIO_AUTH_TOKEN", "CCM_REPORT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    code, _, err = run(capsys, "events", "serve", "--record", url, "--port", "1")
    assert code == 1 and "CCM_TRACKING_KEY" in err and "Traceback" not in err


@pytest.mark.parametrize("public_url", [
    "hooks.example.com", "ftp://hooks.example.com", "https://", "https://hooks.example.com?x=1",
    "https://hooks.example.com#top", "https://hooks.example.com:port", "https://hooks .example.com",
    "",
])
def test_serve_refuses_a_public_url_that_is_not_an_address(
    url: str, capsys: pytest.CaptureFixture[str], public_url: str
) -> None:
    """A mistyped ``--public-url`` is a usage error (exit 2) naming the option: Twilio signs the
    URL it calls, so every signature check would have failed, each webhook answered 403."""
    code, _, err = run(capsys, "events", "serve", "--record", url, "--port", "1",
                       "--public-url", public_url)
    assert code == 2, err
    assert "--public-url" in err and "https://hooks.example.com" in err
    assert "Traceback" not in err


def test_render_documents_as_links(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """`ccm render --documents link` writes an email without attachment that links to the
    recorded PDF; without tracking.base_url it fails naming the pack setting."""
    import email
    import email.policy
    import json
    import shutil

    from tests.examples_helpers import PACKS, TEMPLATES, sample

    monkeypatch.setenv("CCM_TRACKING_KEY", "k" * 43)
    pack = tmp_path / "acme"
    shutil.copytree(PACKS / "acme", pack)
    data = tmp_path / "req.json"
    data.write_text(json.dumps(sample("monthly_statement")), "utf-8")
    url = f"sqlite:///{tmp_path / 'r.db'}"
    args = ["render", "monthly_statement", "--pack", str(pack), "--templates", str(TEMPLATES),
            "--data", str(data), "--channel", "email", "--out", str(tmp_path / "out"),
            "--record", url, "--documents", "link", "--as-of", "2026-03-02T12:00:00"]
    code, _, err = run(capsys, *args)
    assert code == 1 and "tracking.base_url" in err and "Traceback" not in err
    with (pack / "pack.yaml").open("a", encoding="utf-8") as fh:
        fh.write("\ntracking:\n  base_url: https://t.example.com\n  pixel: false\n")
    url = f"sqlite:///{tmp_path / 'r2.db'}"  # the failed run recorded its PDF in r.db
    args[args.index("--record") + 1] = url
    code, _, err = run(capsys, *args)
    assert code == 0, err
    (eml,) = (tmp_path / "out").rglob("*.eml")
    parsed = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    assert list(parsed.iter_attachments()) == []  # type: ignore[attr-defined]
    assert "https://t.example.com/d/" in parsed.get_body(("html",)).get_content()  # type: ignore[attr-defined]
    with Record(url) as rec:
        channels = sorted(i.entry.channel for i in rec.timeline("C-100231").messages)
    assert channels == ["email", "pdf"]


def _served(tmp_path: Path, url: str, key: Any, path: str) -> tuple[int, str]:
    """``ccm events serve`` started as a user would (its own process, a free port): the
    status of one GET of ``path`` and everything the server printed once stopped."""
    import os
    import socket
    import subprocess
    import sys
    import time

    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path),
           "PYTHONPATH": os.environ.get("PYTHONPATH", ""), "CCM_TRACKING_KEY": key.to_base64()}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ccm", "events", "serve", "--record", url, "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    return answer.status_code, (out + err).decode("utf-8", "replace")


def test_the_served_app_logs_no_token(tmp_path: Path, url: str) -> None:
    """`ccm events serve` writes no access log: its lines would carry the links' tokens and
    the report's parameters. Requests are answered; no output holds the path."""
    from ccm.render.links import TrackingKey

    token = "TOKEN" + "x" * 40
    status, text = _served(tmp_path, url, TrackingKey.generate(), f"/o/{token}.gif?u=SECRETQ")
    assert status < 500  # a made-up token: refused, but answered
    assert "Uvicorn running" in text or "Application startup" in text, text
    assert token not in text and "SECRETQ" not in text and "GET /" not in text


def test_the_served_app_logs_its_own_warnings(tmp_path: Path, url: str) -> None:
    """`ccm events serve` shows ccm's own log lines on stderr: a signed open token for a
    message not in the record is logged as a warning, without the token. ccm's loggers had
    only a NullHandler, so the app's warnings and errors (too many wrong answers on a document
    link, a record that cannot be read) went nowhere."""
    from datetime import UTC, datetime

    from ccm.render.links import TrackingKey, sign

    with Record(url):
        pass
    key = TrackingKey.generate()
    # Issued in 2100 (valid for a day from then): valid whatever the server's clock says now.
    token = sign("open", "M-NOT-IN-RECORD", key=key, ttl_days=1,
                 now=datetime(2100, 1, 1, tzinfo=UTC))
    status, text = _served(tmp_path, url, key, f"/o/{token}")
    assert status == 200
    assert "WARNING:  open for a message not in the record" in text, text
    assert token not in text


@pytest.mark.parametrize("public_url", ["https://hooks.example.com", "http://127.0.0.1:8080",
                                        "https://hooks.example.com/ccm/", "https://[::1]:8443"])
def test_serve_takes_a_public_url_with_a_path_or_port(public_url: str) -> None:
    from ccm.cli.events import _public_url

    assert _public_url(public_url) == public_url
