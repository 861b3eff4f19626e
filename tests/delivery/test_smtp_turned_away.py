"""A relay that answers but will not serve -- ``421`` at the greeting, or something that is
not SMTP on that port -- stops ``ccm send`` with a line that says what it answered (not a
bare exception class name), exit 5, and the queue untouched."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from ccm.cli import main
from ccm.cli._common import ExitCode

from .test_cli import AS_OF, config, render_queued
from .test_send_stops import states


@contextmanager
def answering(first: bytes) -> Iterator[int]:
    """A TCP server on 127.0.0.1 that answers every connection with ``first`` and closes."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.05)  # a closed listener does not wake accept(): look at `done`
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.sendall(first)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        done.set()
        thread.join(10)
        listener.close()


@pytest.mark.parametrize(("first", "words"), [
    (b"421 4.3.2 Too busy, try later\r\n",
     "turned the connection away: it answered 421 4.3.2 Too busy, try later"),
    (b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
     "does not speak SMTP (its answer has no reply code); check host and port"),
])
def test_a_relay_that_turns_us_away_is_named_with_its_answer(
        setup: dict[str, object], capsys: pytest.CaptureFixture[str], first: bytes,
        words: str) -> None:
    """One ``ccm: error:`` line naming host:port and what the server answered, exit 5
    (IO_ERROR); every message stays queued with no attempt counted."""
    render_queued(setup, capsys)
    with answering(first) as port:
        code = main(["send", "--config", str(config(setup, port)), "--record",
                     str(setup["url"]), "--as-of", AS_OF])
    err = capsys.readouterr().err
    assert code == ExitCode.IO_ERROR, err
    [line] = [x for x in err.splitlines() if x.startswith("ccm: ")]
    assert line.startswith(f"ccm: error: SMTP server 127.0.0.1:{port} {words}")
    assert "3 message(s) left queued" in line and "SMTPConnectError" not in line
    assert states(setup) == [("queued", 0)] * 3
