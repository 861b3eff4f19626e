"""Numbers in delivery.yaml that no sender can use -- YAML's ``.nan`` and ``.inf``, a backoff
or a timeout past what a clock or a socket can hold -- are refused when the config is read,
naming the key, before any message is taken: the queue is left as it was."""

from __future__ import annotations

from pathlib import Path

import pytest

from ccm.cli import main
from ccm.cli._common import ExitCode
from ccm.record import Outbox, Record

from ._servers import smtp_server
from .test_cli import AS_OF, render_queued

BAD = [
    ("rate: .nan", "channels.email.rate", "not a finite number"),
    ("rate: .inf", "channels.email.rate", "not a finite number"),
    ("timeout_seconds: .nan", "channels.email.timeout_seconds", "not a finite number"),
    ("timeout_seconds: 1.0e+300", "channels.email.timeout_seconds", "maximum of 3600"),
    ("retry: {backoff_seconds: .inf}", "channels.email.retry.backoff_seconds",
     "maximum of 2592000"),
    ("retry: {max_backoff_seconds: 1.0e+12}", "channels.email.retry.max_backoff_seconds",
     "maximum of 2592000"),
    ("retry: {backoff_seconds: .nan}", "channels.email.retry.backoff_seconds",
     "not a finite number"),
]


@pytest.mark.parametrize(("setting", "key", "words"), BAD)
def test_a_number_no_sender_can_use_is_refused_before_any_message_is_taken(
        setup: dict[str, object], capsys: pytest.CaptureFixture[str], setting: str, key: str,
        words: str) -> None:
    """``ccm send`` (and its dry run) exits 1 with one line naming the file and the key; the
    relay sees nothing and every message stays queued with no attempt counted -- none is left
    in ``sending`` for the next run to put in review."""
    render_queued(setup, capsys)
    tmp = Path(str(setup["tmp"]))
    with smtp_server() as server:
        path = tmp / "delivery.yaml"
        path.write_text(f"version: 1\nchannels:\n  email:\n    transport: smtp\n"
                        f"    host: 127.0.0.1\n    port: {server.port}\n    security: none\n"
                        f"    bounce_address: bounces@acme.example\n    {setting}\n", "utf-8")
        for extra in (["--dry-run"], [], []):
            code = main(["send", "--config", str(path), "--record", str(setup["url"]),
                         "--as-of", AS_OF, *extra])
            err = capsys.readouterr().err
            assert code == ExitCode.BAD_INPUT, err
            [line] = [x for x in err.splitlines() if x.startswith("ccm: ")]
            # (The schema's own checks name the line of the setting, the 9th.)
            assert (line.startswith((f"ccm: error: {path}: {key}: ",
                                     f"ccm: error: {path}:9: {key}: "))
                    and words in line), line
            assert "internal error" not in err and "Traceback" not in err
        assert server.mailbox.messages == []
    record = Record(str(setup["url"]))
    try:
        assert [(i.state, i.attempts) for i in Outbox(record).items()] == [("queued", 0)] * 3
    finally:
        record.close()
