"""The SMTP transport against a real aiosmtpd server: reuse, VERP, TLS, AUTH and every refusal."""

from __future__ import annotations

import email
import email.policy
import uuid
from pathlib import Path

import pytest

from ccm.delivery.smtp import SmtpSettings, SmtpTransport
from ccm.delivery.verp import message_id_from
from ccm.errors import (
    DeliveryConfigError,
    DeliveryUncertain,
    PermanentDeliveryError,
    TemporaryDeliveryError,
)
from ccm.message import Outgoing

from ._servers import self_signed, server_context, smtp_server

EML = (b"From: Acme <billing@acme.example>\r\nTo: Bob <bob@example.com>\r\n"
       b"Subject: Your statement\r\nMessage-ID: <x@acme.example>\r\n\r\n"
       b"Hello Bob,\r\n.leading dot stays\r\n")


def outgoing(recipient: str = "bob@example.com", content: bytes = EML) -> Outgoing:
    return Outgoing(message_id=uuid.uuid4().hex, customer_id="C-1", channel="email",
                    recipient=recipient, content=content)


def settings(port: int, **kw: object) -> SmtpSettings:
    base: dict[str, object] = {"host": "127.0.0.1", "port": port, "security": "none",
                               "bounce_address": "bounces@acme.example", "timeout": 10.0}
    base.update(kw)
    return SmtpSettings(**base)  # type: ignore[arg-type]


def test_messages_share_one_connection_and_carry_a_verp_sender() -> None:
    """Three messages go over one connection; each envelope sender names its message id and
    the stored bytes parse back to the same email."""
    with smtp_server() as server:
        transport = SmtpTransport(settings(server.port))
        sent = [outgoing() for _ in range(3)]
        receipts = [transport.send(m) for m in sent]
        transport.close()
    assert transport.connections == 1 and server.mailbox.sessions == 1
    got = server.mailbox.messages
    assert [message_id_from(r.mail_from) for r in got] == [m.message_id for m in sent]
    assert all(r.rcpt_tos == ["bob@example.com"] for r in got)
    parsed = email.message_from_bytes(got[0].content, policy=email.policy.default)
    assert parsed["Subject"] == "Your statement"
    assert ".leading dot stays" in parsed.get_content()
    assert [r.provider_id for r in receipts] == ["Q00001", "Q00002", "Q00003"]


def test_a_dropped_connection_before_the_content_is_reopened() -> None:
    """The server closes the connection at MAIL FROM: the transport reconnects and the
    message arrives once."""
    with smtp_server() as server:
        transport = SmtpTransport(settings(server.port))
        transport.send(outgoing())
        server.mailbox.mode, server.mailbox.drops = "drop-mail", 1
        transport.send(outgoing())
        transport.close()
    assert len(server.mailbox.messages) == 2 and transport.connections == 2


def test_a_server_that_keeps_dropping_is_a_temporary_failure() -> None:
    """Dropped twice before the content: a temporary failure, nothing stored."""
    with smtp_server() as server:
        server.mailbox.mode, server.mailbox.drops = "drop-mail", 5
        transport = SmtpTransport(settings(server.port))
        with pytest.raises(TemporaryDeliveryError) as info:
            transport.send(outgoing())
    assert server.mailbox.messages == [] and "dropped" in str(info.value)


@pytest.mark.parametrize(("mode", "error", "code"), [
    ("4xx", TemporaryDeliveryError, 451),
    ("5xx", PermanentDeliveryError, 554),
    ("rcpt-5xx", PermanentDeliveryError, 550),
])
def test_refusals_map_to_temporary_or_permanent(mode: str, error: type[Exception],
                                                code: int) -> None:
    """451 is temporary, 550/554 permanent; the error keeps the code but never the address,
    and the connection stays usable for the next message."""
    with smtp_server() as server:
        server.mailbox.mode = mode
        transport = SmtpTransport(settings(server.port))
        with pytest.raises(error) as info:
            transport.send(outgoing())
        assert info.value.code == code  # type: ignore[attr-defined]
        assert "bob@example.com" not in str(info.value)
        server.mailbox.mode = None
        transport.send(outgoing())
        transport.close()
    assert transport.connections == 1 and len(server.mailbox.messages) == 1


def test_a_drop_after_the_content_is_uncertain() -> None:
    """The server took the data and closed without a reply: the transport says it cannot
    tell (review), not "try again"."""
    with smtp_server() as server:
        server.mailbox.mode = "drop-after-data"
        transport = SmtpTransport(settings(server.port))
        with pytest.raises(DeliveryUncertain):
            transport.send(outgoing())
    assert len(server.mailbox.messages) == 1


def test_nobody_listening_is_temporary() -> None:
    """A refused connection is a temporary failure naming the server."""
    with smtp_server() as server:
        port = server.port
    with pytest.raises(TemporaryDeliveryError, match=f"127.0.0.1:{port}"):
        SmtpTransport(settings(port)).send(outgoing())


def test_starttls_with_auth_against_a_self_signed_certificate(tmp_path: Path) -> None:
    """STARTTLS is required and AUTH follows it; trusting the test's own certificate via
    ca_file makes it work, and the password never shows in the settings' repr."""
    cert, key = self_signed(tmp_path)
    with smtp_server(tls=server_context(cert, key), users={"ccm": "s3cret-pw"}) as server:
        s = settings(server.port, security="starttls", username="ccm", password="s3cret-pw",
                     ca_file=str(cert))
        transport = SmtpTransport(s)
        transport.send(outgoing())
        transport.close()
    assert len(server.mailbox.messages) == 1
    assert "s3cret-pw" not in repr(s)


def test_implicit_tls(tmp_path: Path) -> None:
    """security: tls speaks TLS from the first byte (port 465 style)."""
    cert, key = self_signed(tmp_path)
    with smtp_server(tls=server_context(cert, key), implicit_tls=True) as server:
        transport = SmtpTransport(settings(server.port, security="tls", ca_file=str(cert)))
        transport.send(outgoing())
        transport.close()
    assert len(server.mailbox.messages) == 1


def test_an_untrusted_certificate_and_a_wrong_password_are_config_errors(tmp_path: Path) -> None:
    """Without ca_file the self-signed certificate is refused; a wrong password is refused
    by the server; both are configuration errors naming the key to fix, without the password."""
    cert, key = self_signed(tmp_path)
    with smtp_server(tls=server_context(cert, key), users={"ccm": "right"}) as server:
        with pytest.raises(DeliveryConfigError) as untrusted:
            SmtpTransport(settings(server.port, security="starttls")).send(outgoing())
        assert untrusted.value.key == "ca_file"  # type: ignore[attr-defined]
        wrong = settings(server.port, security="starttls", username="ccm",
                         password="wrong-pw", ca_file=str(cert))
        with pytest.raises(DeliveryConfigError) as refused:
            SmtpTransport(wrong).send(outgoing())
        assert "wrong-pw" not in str(refused.value)
    assert server.mailbox.messages == []


def test_starttls_missing_is_refused_not_downgraded() -> None:
    """A server without STARTTLS is never used in clear when starttls was asked for."""
    with smtp_server() as server, pytest.raises(DeliveryConfigError, match="STARTTLS"):
        SmtpTransport(settings(server.port, security="starttls")).send(outgoing())
    assert server.mailbox.messages == []
