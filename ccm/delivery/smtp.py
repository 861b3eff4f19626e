"""SMTP transport (stdlib :mod:`smtplib`): STARTTLS or implicit TLS, AUTH, one reused connection.

Each message goes out as ``MAIL FROM:<bounce+<message id>@domain>`` (VERP,
:func:`ccm.delivery.verp.bounce_address`), ``RCPT TO:<recipient>`` and
``DATA`` with the recorded .eml bytes. The connection stays open across
messages and is opened again when the server dropped it.

How an answer maps to the delivery errors:

==========================================  ====================================
what happened                               raised
==========================================  ====================================
cannot connect (refused, DNS, timeout)      :class:`TransportUnavailable` (stop)
turned away (421 at the greeting, not SMTP) :class:`TransportUnavailable` (stop)
4xx before the content                      :class:`TemporaryDeliveryError`
dropped before the content was handed over  reconnect once, then temporary
5xx to MAIL, RCPT or DATA                   :class:`PermanentDeliveryError`
4xx / 5xx after the content                 temporary / permanent (nothing kept)
dropped or timed out after the content      :class:`DeliveryUncertain` (review)
AUTH refused                                :class:`DeliveryConfigError` (stop)
==========================================  ====================================

Logging (logger ``ccm.delivery.smtp``): DEBUG per connection and message
(message id and reply code only), never an address, content or password.
"""

from __future__ import annotations

import logging
import re
import smtplib
import ssl
from dataclasses import dataclass, field
from typing import Literal

from ccm.delivery.transport import scrub
from ccm.delivery.verp import bounce_address
from ccm.errors import (
    DeliveryConfigError,
    DeliveryUncertain,
    PermanentDeliveryError,
    TemporaryDeliveryError,
    TransportUnavailable,
)
from ccm.message import Outgoing, Receipt

__all__ = ["SmtpSettings", "SmtpTransport"]

logger = logging.getLogger("ccm.delivery.smtp")
logger.addHandler(logging.NullHandler())

Security = Literal["starttls", "tls", "none"]

_LINE_END = re.compile(rb"\r\n|\n|\r(?!\n)")
_LEADING_DOT = re.compile(rb"(?m)^\.")


@dataclass(frozen=True)
class SmtpSettings:
    """Where and how to reach the SMTP server.

    ``security``: ``starttls`` (upgrade a plain connection; refused when
    the server does not offer it), ``tls`` (implicit TLS, port 465) or
    ``none`` (a relay on localhost). ``bounce_address`` is the VERP base
    (``bounces@example.com``); ``ca_file`` trusts a private CA in addition
    to none of the system's (testing, internal relays). ``password`` never
    appears in ``repr``.
    """

    host: str
    port: int = 587
    security: Security = "starttls"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    bounce_address: str = ""
    timeout: float = 30.0
    ca_file: str | None = None
    local_hostname: str | None = None

    def __post_init__(self) -> None:
        if self.security not in ("starttls", "tls", "none"):
            raise ValueError(f"security must be starttls, tls or none, not {self.security!r}")
        if not 0 < self.port < 65536:
            raise ValueError("port must be 1-65535")
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        bounce_address(self.bounce_address, "0" * 32)  # raises ValueError when malformed

    def ssl_context(self) -> ssl.SSLContext:
        """Certificate and host name checks on; ``ca_file`` replaces the system's trust store."""
        if self.ca_file:
            return ssl.create_default_context(cafile=self.ca_file)
        return ssl.create_default_context()


class SmtpTransport:
    """Send email over SMTP with one connection reused across messages (not thread-safe)."""

    name = "smtp"

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings
        self._conn: smtplib.SMTP | None = None
        self.connections = 0  #: how many connections were opened (tests, metrics)

    # -- connection -------------------------------------------------------------

    def _open(self) -> smtplib.SMTP:
        s = self.settings
        conn: smtplib.SMTP | None = None
        try:
            if s.security == "tls":
                conn = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout,
                                        local_hostname=s.local_hostname,
                                        context=s.ssl_context())
            else:
                conn = smtplib.SMTP(s.host, s.port, timeout=s.timeout,
                                    local_hostname=s.local_hostname)
            conn.ehlo()
            if s.security == "starttls":
                if not conn.has_extn("starttls"):
                    raise DeliveryConfigError(
                        f"SMTP server {s.host}:{s.port} does not offer STARTTLS; set security: "
                        "tls (port 465) or, for a local relay only, security: none",
                        key="security",
                    )
                conn.starttls(context=s.ssl_context())
                conn.ehlo()
            if s.username is not None and s.password is not None:
                conn.login(s.username, s.password)
        except BaseException:
            if conn is not None:
                conn.close()
            raise
        self.connections += 1
        logger.debug("connected to %s:%d (%s)", s.host, s.port, s.security)
        return conn

    def _connect(self, message_id: str) -> smtplib.SMTP:
        """Open, secure and log in; translate what went wrong into the delivery errors."""
        s = self.settings
        try:
            return self._open()
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryConfigError(
                f"SMTP server {s.host}:{s.port} refused the login of {s.username!r} "
                f"({exc.smtp_code}); check the username and the password variable",
                key="username",
            ) from None
        except smtplib.SMTPNotSupportedError:
            raise DeliveryConfigError(
                f"SMTP server {s.host}:{s.port} offers no AUTH on this connection; "
                "use security: starttls or tls", key="security",
            ) from None
        except ssl.SSLCertVerificationError as exc:
            raise DeliveryConfigError(
                f"SMTP server {s.host}:{s.port}: TLS certificate not trusted "
                f"({exc.verify_message}); set ca_file for a private CA", key="ca_file",
            ) from None
        except smtplib.SMTPResponseException as exc:
            # It answered, but will not take mail now (421 busy, 554 no service) or is not
            # an SMTP server at all (the wrong port): say what it answered.
            raise TransportUnavailable(
                f"SMTP server {s.host}:{s.port} {_turned_away(exc)}",
                transport=self.name, message_id=message_id, code=None,
                where=f"{s.host}:{s.port}",
            ) from None
        except (OSError, smtplib.SMTPException) as exc:
            # Refused, no such host, timed out, or dropped at the greeting: no message
            # was handed over, and none will be until the relay is back.
            raise TransportUnavailable(
                f"SMTP server {s.host}:{s.port} cannot be reached: {_why(exc)}",
                transport=self.name, message_id=message_id, code=None,
                where=f"{s.host}:{s.port}",
            ) from None

    def close(self) -> None:
        """QUIT and close the connection, if one is open."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.quit()
        except (OSError, smtplib.SMTPException):
            conn.close()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    # -- sending ----------------------------------------------------------------

    def send(self, message: Outgoing) -> Receipt:
        """MAIL, RCPT, DATA on the open connection (reopened once when it was dropped)."""
        if not message.recipient:
            raise PermanentDeliveryError(
                f"message {message.message_id} has no recipient address",
                transport=self.name, message_id=message.message_id, code=None)
        sender = bounce_address(self.settings.bounce_address, message.message_id)
        for attempt in (1, 2):
            conn = self._conn or self._connect(message.message_id)
            self._conn = conn
            try:
                self._envelope(conn, sender, message)
                break
            except (smtplib.SMTPServerDisconnected, OSError) as exc:
                # Nothing of the content went out: safe to reconnect and try again.
                self._drop()
                if attempt == 2:
                    raise TemporaryDeliveryError(
                        f"SMTP connection dropped before the message was sent: {_why(exc)}",
                        transport=self.name, message_id=message.message_id, code=None,
                    ) from None
                logger.debug("connection dropped; reconnecting for %s", message.message_id)
        return self._data(conn, message)

    def _envelope(self, conn: smtplib.SMTP, sender: str, message: Outgoing) -> None:
        options = ["BODY=8BITMIME"] if conn.has_extn("8bitmime") else []
        code, reply = conn.mail(sender, options)
        if code != 250:
            self._refused(conn, code, reply, message, "MAIL FROM")
        code, reply = conn.rcpt(str(message.recipient))
        if code not in (250, 251):
            self._refused(conn, code, reply, message, "RCPT TO")
        code, reply = conn.docmd("DATA")
        if code != 354:
            self._refused(conn, code, reply, message, "DATA")

    def _data(self, conn: smtplib.SMTP, message: Outgoing) -> Receipt:
        """Send the content and read the final reply: any break here is uncertain."""
        payload = _LINE_END.sub(b"\r\n", message.content)
        payload = _LEADING_DOT.sub(b"..", payload)  # RFC 5321 4.5.2 dot-stuffing
        if not payload.endswith(b"\r\n"):
            payload += b"\r\n"
        try:
            conn.send(payload + b".\r\n")
            code, reply = conn.getreply()
        except (TimeoutError, smtplib.SMTPServerDisconnected, OSError) as exc:
            self._drop()
            raise DeliveryUncertain(
                f"SMTP connection broke after the content of message {message.message_id} was "
                f"handed over ({_why(exc)}); the server may have taken it",
                transport=self.name, message_id=message.message_id, code=None,
            ) from None
        if code != 250:
            self._refused(conn, code, reply, message, "end of DATA")
        text = reply.decode("utf-8", "replace")
        logger.debug("sent %s (%d)", message.message_id, code)
        return Receipt(self.name, provider_id=_queue_id(text), status="accepted",
                       detail=f"{code} {_short(text)}")

    def _refused(self, conn: smtplib.SMTP, code: int, reply: bytes, message: Outgoing,
                 stage: str) -> None:
        text = _short(reply.decode("utf-8", "replace"))
        if code == -1 or code == 421:
            self._drop()  # the server is closing the channel
        else:
            try:
                conn.rset()
            except (smtplib.SMTPException, OSError):
                self._drop()
        error = PermanentDeliveryError if 500 <= code < 600 else TemporaryDeliveryError
        raise error(f"SMTP server answered {code} to {stage} for message {message.message_id}: "
                    f"{text}", transport=self.name, message_id=message.message_id, code=code)


def _queue_id(reply: str) -> str | None:
    """The server's queue id from a ``250 ... queued as ABC123`` style reply, if any."""
    words = reply.replace("<", " ").replace(">", " ").split()
    for marker in ("as", "id=", "queued"):
        for i, word in enumerate(words[:-1]):
            if word.lower() == marker:
                return words[i + 1].strip(".,;")
    return None


def _short(text: str) -> str:
    """A reply on one line, at most 200 characters, with any quoted address blanked."""
    return scrub(text)


def _turned_away(exc: smtplib.SMTPResponseException) -> str:
    """What a server that answered but would not serve us said, for the operator."""
    if exc.smtp_code < 200:  # smtplib's -1: the answer began with no SMTP reply code
        return ("does not speak SMTP (its answer has no reply code); check host and port "
                "(587 for starttls, 465 for tls, 25 for a local relay)")
    raw = exc.smtp_error
    text = scrub(raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw), 120)
    return f"turned the connection away: it answered {exc.smtp_code} {text}"


def _why(exc: BaseException) -> str:
    return type(exc).__name__ + (f": {exc.strerror}" if isinstance(exc, OSError)
                                 and exc.strerror else "")
