"""Real servers for delivery tests: an aiosmtpd SMTP server and a Twilio-shaped HTTP API.

Both listen on 127.0.0.1 on an ephemeral port, in a thread of the test
process, and keep what they received so tests can open it.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import ipaddress
import json
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


@dataclass
class Received:
    """One message as the SMTP server took it."""

    mail_from: str
    rcpt_tos: list[str]
    content: bytes


@dataclass
class Mailbox:
    """An aiosmtpd handler that stores messages, or misbehaves on request.

    ``mode`` is ``None`` (accept), ``"4xx"`` / ``"5xx"`` (refuse the data),
    ``"rcpt-5xx"`` (refuse the recipient), ``"drop-mail"`` (close the
    connection at MAIL FROM, ``drops`` times), or ``"drop-after-data"``
    (store the message, then close the connection without answering).
    """

    messages: list[Received] = field(default_factory=list)
    mode: str | None = None
    drops: int = 1
    sessions: int = 0
    #: Seconds to wait after storing a message before answering (widens the crash window).
    delay: float = 0.0
    transports: list[Any] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope,
                          hostname: str, responses: list[str]) -> list[str]:
        session.host_name = hostname
        return responses

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, mail_options: list[str]) -> str:
        if self.mode == "drop-mail" and self.drops > 0:
            self.drops -= 1
            assert server.transport is not None
            server.transport.close()
            return "421 closing"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if self.mode == "rcpt-5xx":
            return f"550 5.1.1 <{address}>: Recipient address rejected"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.mode == "4xx":
            return "451 4.3.0 Mail server temporarily rejected message"
        if self.mode == "5xx":
            return "554 5.7.1 Message rejected as spam"
        content = envelope.original_content or b""
        with self.lock:
            self.messages.append(Received(str(envelope.mail_from), list(envelope.rcpt_tos),
                                          content))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.mode == "drop-after-data":
            assert server.transport is not None
            server.transport.abort()
            return "250 never seen"
        return f"250 2.0.0 Ok: queued as Q{len(self.messages):05d}"


class _Smtp(SMTP):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        handler = self.event_handler
        if isinstance(handler, Mailbox):
            handler.sessions += 1
            handler.transports.append(transport)
        super().connection_made(transport)


@dataclass
class SmtpServer:
    host: str
    port: int
    mailbox: Mailbox


@contextmanager
def smtp_server(*, tls: ssl.SSLContext | None = None, implicit_tls: bool = False,
                users: dict[str, str] | None = None) -> Iterator[SmtpServer]:
    """An aiosmtpd server on 127.0.0.1:<ephemeral>: STARTTLS when ``tls`` is given (or
    implicit TLS with ``implicit_tls``), AUTH required when ``users`` are given."""
    mailbox = Mailbox()
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, Any] = {}

    def authenticator(server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                      auth_data: Any) -> AuthResult:
        ok = (isinstance(auth_data, LoginPassword) and users is not None
              and users.get(auth_data.login.decode()) == auth_data.password.decode())
        return AuthResult(success=ok, handled=False)

    def factory() -> SMTP:
        kwargs: dict[str, Any] = {"hostname": "mx.test", "ident": "test-mx"}
        if tls is not None and not implicit_tls:
            kwargs.update(tls_context=tls, require_starttls=True)
        if users is not None:
            kwargs.update(authenticator=authenticator, auth_required=True,
                          auth_require_tls=tls is not None)
        return _Smtp(mailbox, **kwargs)

    def run() -> None:
        asyncio.set_event_loop(loop)
        server = loop.run_until_complete(loop.create_server(
            factory, "127.0.0.1", 0, ssl=tls if implicit_tls else None))
        holder["server"] = server
        holder["port"] = server.sockets[0].getsockname()[1]
        ready.set()
        loop.run_forever()
        server.close()
        for transport in mailbox.transports:
            transport.abort()
        # And every socket the loop still holds (a connection whose TLS handshake had not
        # finished never reached connection_made): left open, it would be collected in a
        # later test and fail that one with an "unclosed transport" ResourceWarning.
        for transport in list(getattr(loop, "_transports", {}).values()):
            if not transport.is_closing():
                transport.abort()
        loop.run_until_complete(server.wait_closed())
        loop.run_until_complete(asyncio.sleep(0.05))  # let aborted sessions finish
        for task in asyncio.all_tasks(loop):
            task.cancel()
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield SmtpServer("127.0.0.1", holder["port"], mailbox)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 / localhost, made now with cryptography."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    start = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(start + dt.timedelta(days=365 * 30))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


# --- a Twilio-shaped Messages API ------------------------------------------------


@dataclass
class SmsApi:
    """The state of the fake provider: accounts, what it accepted, and forced answers."""

    account_sid: str
    auth_token: str
    requests: list[dict[str, str]] = field(default_factory=list)
    #: Phone numbers answered with a documented error: number -> (HTTP status, code, text).
    errors: dict[str, tuple[int, int, str]] = field(default_factory=dict)
    #: Answer the next N requests with this HTTP status (429, 503).
    busy: list[int] = field(default_factory=list)
    port: int = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _handler(api: SmsApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            path = f"/2010-04-01/Accounts/{api.account_sid}/Messages.json"
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode()
            expected = "Basic " + base64.b64encode(
                f"{api.account_sid}:{api.auth_token}".encode()).decode()
            if self.headers.get("Authorization") != expected:
                self._send(401, {"code": 20003, "message": "Authenticate", "status": 401,
                                 "more_info": "https://www.twilio.com/docs/errors/20003"})
                return
            if self.path != path:
                self._send(404, {"code": 20404, "message": "The requested resource was not "
                                 "found", "status": 404})
                return
            if self.headers.get("Content-Type") != "application/x-www-form-urlencoded":
                self._send(400, {"code": 21609, "message": "bad content type", "status": 400})
                return
            form = {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}
            if api.busy:
                status = api.busy.pop(0)
                self._send(status, {"code": 20429 if status == 429 else 20500,
                                    "message": "Too Many Requests" if status == 429
                                    else "Internal error", "status": status})
                return
            for needed in ("To", "Body"):
                if not form.get(needed):
                    self._send(400, {"code": 21604 if needed == "To" else 21602,
                                     "message": f"A '{needed}' is required", "status": 400})
                    return
            if not (form.get("From") or form.get("MessagingServiceSid")):
                self._send(400, {"code": 21603, "message": "A 'From' phone number is required",
                                 "status": 400})
                return
            error = api.errors.get(form["To"])
            if error is not None:
                status, code, text = error
                self._send(status, {"code": code, "message": text, "status": status,
                                    "more_info": f"https://www.twilio.com/docs/errors/{code}"})
                return
            api.requests.append(form)
            sid = f"SM{len(api.requests):032x}"
            self._send(201, {"sid": sid, "account_sid": api.account_sid, "to": form["To"],
                             "from": form.get("From"), "body": form["Body"],
                             "status": "queued", "num_segments": "1",
                             "uri": f"{path[:-5]}/{sid}.json"})

    return Handler


@contextmanager
def sms_api(account_sid: str = "AC" + "0" * 32, auth_token: str = "test-token-123"
            ) -> Iterator[SmsApi]:
    """A local HTTP server that implements Twilio's create-Message request and answers."""
    api = SmsApi(account_sid, auth_token)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(api))
    api.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


