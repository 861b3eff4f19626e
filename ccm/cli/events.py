"""``ccm events ...``: delivery events back into the record, and the web app that takes them.

* ``ccm events bounce FILE... [--maildir DIR]`` reads DSN bounces and ARF
  complaints from files or a maildir and adds their events (docs/events.md).
* ``ccm events serve`` runs the web app: tracking, the report, status and
  inbound SMS webhooks, and the retrieval page; secrets come from the
  environment only.
* ``ccm record unsuppress CUSTOMER --channel email`` (mounted under
  ``ccm record``) lifts a hard-bounce suppression.
"""

from __future__ import annotations

import errno
import importlib.util
import mailbox
import os
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ccm.cli._common import (
    ExistingFile,
    ExitCode,
    Fail,
    IsoDateTime,
    echo,
    exit_code_for,
    lock_timeout,
    shown,
)
from ccm.errors import CCMError, InboundError, MessageNotFound

if TYPE_CHECKING:
    from ccm.record import Record

__all__ = ["events", "unsuppress_cmd"]

#: Environment variables holding the webhook secrets (never options: they would show in ps).
TWILIO_TOKEN_ENV = "CCM_TWILIO_AUTH_TOKEN"
REPORT_SECRET_ENV = "CCM_REPORT_SECRET"
EXTRA_HINT = "pip install 'ccm-engine[tracking]'"


def _record_url(value: str | None) -> str:
    from ccm.render.engine import default_record_url

    return value or default_record_url()


def _at(value: datetime | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


_record_option = click.option(
    "--record", "record_url", default=None, metavar="URL",
    help="Record URL [default: $CCM_RECORD_URL or sqlite:///ccm-record.db].")
_at_option = click.option(
    "--at", "at", default=None, metavar="DATETIME",
    type=IsoDateTime(),
    help="When the events happened, ISO 8601; naive means UTC [default: now].")


def _open(url: str | None) -> Record:
    from ccm.record import Record

    try:
        return Record(_record_url(url), create=False, lock_timeout=lock_timeout())
    except CCMError as exc:
        raise Fail(str(exc), exit_code_for(exc)) from exc


@click.group("events")
def events() -> None:
    """Delivery events back into the record: bounces, complaints, callbacks, keywords."""


def _reports(files: tuple[Path, ...], maildir: Path | None) -> Iterator[tuple[str, bytes]]:
    for path in files:
        try:
            yield str(path), path.read_bytes()
        except OSError as exc:
            raise Fail(f"{path}: cannot read ({exc.strerror})", ExitCode.IO_ERROR) from exc
    if maildir is not None:
        if not (maildir / "new").is_dir() or not (maildir / "cur").is_dir():
            raise Fail(f"{maildir}: not a maildir (needs new/ and cur/ folders)",
                       ExitCode.NOT_FOUND)
        box = mailbox.Maildir(maildir, factory=None, create=False)
        for key in sorted(box.keys()):
            with box.get_file(key) as fh:
                yield f"{maildir}/{key}", fh.read()


@events.command("bounce")
@click.argument("files", nargs=-1, type=ExistingFile())
@click.option("--maildir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also read every message of this maildir (new/ and cur/).")
@_record_option
@_at_option
def bounce_cmd(files: tuple[Path, ...], maildir: Path | None, record_url: str | None,
               at: datetime | None) -> None:
    """Read DSN bounces (RFC 3464) and ARF complaints (RFC 5965) into the record.

    Each report is one line of output; one read before adds nothing (even
    after ccm record unsuppress). A report that cannot be read, names a
    message this record does not hold, or names one that is not a generated
    email (an SMS, a PDF, a suppressed email) is reported and skipped; the
    exit status is then 1.
    """
    if not files and maildir is None:
        raise click.UsageError("give report FILEs or --maildir DIR")
    from ccm.delivery.events import record_report_bytes

    now = _at(at)
    failed = 0
    rec = _open(record_url)
    try:
        for name, raw in _reports(files, maildir):
            try:
                outcome = record_report_bytes(rec, raw, now=now, source=name)
            except (InboundError, MessageNotFound) as exc:
                failed += 1
                echo(f"ccm: error: {exc}", err=True)
                continue
            added = ", ".join(outcome.added) or "nothing new"
            target = f" message {outcome.message_id}" if outcome.message_id else ""
            echo(f"{name}: {outcome.note};{target} ({added})")
    finally:
        rec.close()
    if failed:
        raise Fail(f"{failed} report(s) not recorded (see above)", ExitCode.BAD_INPUT)


@events.command("serve")
@_record_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to listen on (put a TLS-terminating proxy in front).")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@click.option("--key-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Tracking key file [default: $CCM_TRACKING_KEY or $CCM_TRACKING_KEY_FILE].")
@click.option("--public-url", default=None, metavar="URL",
              callback=lambda _c, _p, v: _public_url(v),
              help="The app's address as providers call it (Twilio signs that URL).")
@click.option("--customers", type=ExistingFile(),
              default=None, help="Request file (JSON Lines) whose phones map STOP/START "
                                 "to customers.")
@click.option("--pack", "pack_dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Brand pack: its name and palette style the pages, its "
                                 "password hint shows on the retrieval page.")
def serve_cmd(record_url: str | None, host: str, port: int, key_file: Path | None,
              public_url: str | None, customers: Path | None, pack_dir: Path | None) -> None:
    """Serve tracking, the webhooks and retrieval pages into the record.

    The Twilio routes need $CCM_TWILIO_AUTH_TOKEN, the report POST needs
    $CCM_REPORT_SECRET; the retrieval and web-version pages are served when
    the master key is set ($CCM_MASTER_KEY or $CCM_MASTER_KEY_FILE).
    """
    missing = [m for m in ("starlette", "uvicorn") if importlib.util.find_spec(m) is None]
    if missing:
        raise Fail(f"ccm events serve needs {', '.join(missing)}; run: {EXTRA_HINT}")
    from ccm.delivery.events import PhoneDirectory
    from ccm.engagement.app import serve
    from ccm.engagement.retrieval import RetrievalSettings
    from ccm.engagement.webhooks import WebhookSettings
    from ccm.record.keys import ENV_KEY, ENV_KEY_FILE

    token = os.environ.get(TWILIO_TOKEN_ENV) or None
    secret = os.environ.get(REPORT_SECRET_ENV)
    try:
        directory = PhoneDirectory.from_jsonl(customers) if customers else None
        settings = WebhookSettings(
            twilio_auth_token=token,
            report_secret=secret.encode("utf-8") if secret else None,
            directory=directory,
            public_url=public_url,
        )
        brand = None
        retrieval = None
        rule = None
        if pack_dir is not None:
            from ccm.pack import load_pack
            from ccm.render.security import PasswordRule

            pack = load_pack(pack_dir)
            brand = {"name": pack.name, "palette": pack.palette}
            raw_rule = pack.security.get("pdf_password")
            rule = PasswordRule.from_mapping(raw_rule) if raw_rule else None
        if os.environ.get(ENV_KEY) or os.environ.get(ENV_KEY_FILE):
            if pack_dir is not None and rule is not None:
                default = pack.default_locale
                retrieval = RetrievalSettings(
                    hint_for=lambda loc: rule.hint_for(loc or default, default))
            else:
                retrieval = RetrievalSettings()
        serve(_record_url(record_url), host, port, brand=brand,
              key_file=str(key_file) if key_file else None, webhooks=settings,
              retrieval=retrieval)
    except CCMError as exc:
        raise Fail(str(exc)) from exc
    except SystemExit as exc:
        if exc.code != UVICORN_STARTUP_FAILURE:
            raise
        raise Fail(*cannot_listen(host, port)) from None


def _public_url(value: str | None) -> str | None:
    """``--public-url``: an http(s) address with a host and no query (Twilio signs the URL
    it calls, which is this plus the route: a typo would fail every signature check)."""
    if value is None:
        return None
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        parts = None
    if (parts is None or parts.scheme not in ("http", "https") or not parts.hostname
            or parts.query or parts.fragment or "\\" in value or any(c.isspace() for c in value)):
        raise click.BadParameter(
            "give the app's address as providers call it, e.g. https://hooks.example.com "
            "(http or https, a host, an optional path; no query)", param_hint="--public-url")
    return value


#: uvicorn's exit status when it cannot start (it logs the reason, then ``sys.exit(3)``): left
#: as it is, ccm would exit 3, "not found", with no ``ccm: error:`` line.
UVICORN_STARTUP_FAILURE = 3


def cannot_listen(host: str, port: int) -> tuple[str, ExitCode]:
    """Why the app could not listen on ``host:port`` (found by binding it), and the exit code:
    CONFLICT when another process listens there, BAD_INPUT for a host this machine does not
    have, IO_ERROR when the system refuses (a privileged port)."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except socket.gaierror:
        return (f"cannot listen on {where}: no such host name; check --host", ExitCode.BAD_INPUT)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return (f"cannot listen on {where}: another process listens there; stop it or "
                    "choose another --port", ExitCode.CONFLICT)
        if exc.errno == errno.EADDRNOTAVAIL:
            return (f"cannot listen on {where}: this machine has no such address; check "
                    "--host", ExitCode.BAD_INPUT)
        if exc.errno in (errno.EACCES, errno.EPERM):
            return (f"cannot listen on {where}: permission denied (ports below 1024 need "
                    "privileges); choose another --port, or put a proxy in front",
                    ExitCode.IO_ERROR)
        return (f"cannot listen on {where}: {exc.strerror or type(exc).__name__}",
                ExitCode.IO_ERROR)
    return (f"the app did not start on {where} (the line above says why)", ExitCode.IO_ERROR)


@click.command("unsuppress")
@click.argument("customer")
@click.option("--channel", required=True, type=click.Choice(["email", "sms", "pdf"]),
              help="The channel whose suppression (a hard bounce) to lift.")
@_record_option
@_at_option
def unsuppress_cmd(customer: str, channel: str, record_url: str | None,
                   at: datetime | None) -> None:
    """Lift the suppression of CUSTOMER's CHANNEL after a hard bounce (an event on the timeline)."""
    from ccm.delivery.events import unsuppress

    rec = _open(record_url)
    try:
        outcome = unsuppress(rec, customer, channel, now=_at(at))
    except MessageNotFound as exc:
        raise Fail(f"{exc}; nothing to do", ExitCode.NOT_FOUND) from exc
    except CCMError as exc:
        raise Fail(str(exc)) from exc
    finally:
        rec.close()
    echo(f"customer {shown(customer)}: {outcome.note} (event on message {outcome.message_id})")
