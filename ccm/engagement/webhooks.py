"""Webhooks of the web app: delivery reports, provider status callbacks, inbound SMS.

Mounted by :func:`ccm.engagement.app.create_app` when configured
(:class:`WebhookSettings`)::

    POST /events/report[?to=R]   a DSN or ARF report (message/rfc822 body), signed
                                 X-CCM-Timestamp: <unix seconds>
                                 X-CCM-Signature: v1=<hex HMAC-SHA256(secret,
                                     "<timestamp>.<R>\\n<body>")>
    POST /twilio/status          a Twilio status callback, X-Twilio-Signature checked
    POST /twilio/inbound         an inbound SMS (STOP/START/HELP), answered with TwiML

Every request is authenticated before any field is believed: a missing or
wrong signature answers 403 and records nothing. A report's signature
(:func:`report_signature`, the scheme of :func:`ccm.delivery.webhook.sign`)
covers the timestamp, the ``to`` query parameter (the envelope recipient,
which can pick the message) and the body; a timestamp more than 5 minutes
from the app's clock (``WebhookSettings.report_tolerance``) either way is
refused, so a captured report cannot be replayed later or pointed at
another message. A body over the route's
limit (2 MB for a report, 64 KB for a Twilio form) answers 413 before the
signature is checked, and is never read past the limit
(:func:`ccm.engagement.bodies.read_body`). A replayed status callback
(the same MessageSid and status again, or a copy arriving at the same moment as
the first) answers 409, one about a message sent too long ago 410; both record
nothing. So does a replayed inbound STOP or START (a MessageSid already
recorded): 409, nothing recorded; of copies of one keyword arriving at the same
moment one is taken, the others answer 409. A keyword from a number several
customers share changes every one of them. No provider webhook records
``opened`` or ``clicked`` (a ``read`` status changes nothing): those come only
from the tracking routes, at most once an hour. Refusals are logged at WARNING by
``ccm.engagement.webhooks`` with the reason and the client address only:
never a signature, a token, a phone number or a form value.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

from ccm.delivery.events import (
    CALLBACK_MAX_AGE,
    CustomerDirectory,
    Refused,
    record_keyword,
    record_report_bytes,
    record_status,
)
from ccm.delivery.reports import MAX_REPORT_BYTES
from ccm.delivery.twilio import check_signature, keyword, twiml
from ccm.delivery.webhook import sign, verify_signature
from ccm.engagement.bodies import BodyTooLarge, read_body
from ccm.errors import InboundError, MessageNotFound

try:
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, Response
    from starlette.routing import Route
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "ccm.engagement.webhooks needs the tracking extra: pip install 'ccm-engine[tracking]'"
    ) from exc

__all__ = ["WebhookSettings", "report_signature", "routes"]

logger = logging.getLogger("ccm.engagement.webhooks")
logger.addHandler(logging.NullHandler())

_NO_STORE = {"Cache-Control": "no-store, private"}
_MAX_FORM_BYTES = 64_000
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

#: How far a report's ``X-CCM-Timestamp`` may be from the app's clock, either way.
REPORT_TOLERANCE = timedelta(minutes=5)

#: Answers to the SMS keywords (CTIA: confirm an opt-out and an opt-in, say how to get help).
STOP_TEXT = ("You are unsubscribed and will receive no more messages from us. "
             "Reply START to subscribe again.")
START_TEXT = "You are subscribed again. Reply STOP to unsubscribe, HELP for help."
HELP_TEXT = "Reply STOP to unsubscribe, START to subscribe again. Msg&data rates may apply."


@dataclass(frozen=True)
class WebhookSettings:
    """What the webhooks need; a route whose secret is ``None`` is not mounted.

    ``public_url`` is the app's address as the provider calls it (behind a
    proxy the request's own URL differs, and Twilio signs the URL it called).
    ``clock`` is injected in tests. ``report_tolerance`` is how far a report's
    timestamp may be from ``clock`` (either way) for it to be taken.
    """

    twilio_auth_token: str | None = field(default=None, repr=False)
    report_secret: bytes | None = field(default=None, repr=False)
    directory: CustomerDirectory | None = None
    public_url: str | None = None
    max_age: timedelta = CALLBACK_MAX_AGE
    report_tolerance: timedelta = REPORT_TOLERANCE
    stop_text: str = STOP_TEXT
    start_text: str = START_TEXT
    help_text: str = HELP_TEXT
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))


def _signed_report(to: str | None, body: bytes) -> bytes:
    """What a report's signature covers after the timestamp: ``<to>\\n<body>``."""
    to = to or ""
    if _CONTROL.search(to):
        raise ValueError("the envelope recipient (to) must not contain control characters")
    return to.encode("utf-8") + b"\n" + body


def report_signature(secret: bytes, timestamp: int, body: bytes, *, to: str | None = None) -> str:
    """The ``X-CCM-Signature`` header value of a report POST (``v1=<hex>``).

    ``timestamp`` (unix seconds) is sent as ``X-CCM-Timestamp``; ``to`` is the
    ``?to=`` query parameter (the envelope recipient), ``None`` when the POST
    has none. The HMAC-SHA256 covers ``"<timestamp>.<to>\\n<body>"``, so none of
    them can be changed after signing. Raises :class:`ValueError` for a ``to``
    with a control character (it would make the signed text ambiguous).
    """
    return sign(secret, timestamp, _signed_report(to, body))


def _client(request: Request) -> str:
    return request.client.host if request.client else "?"


def _refuse(request: Request, status: int, reason: str, text: str) -> Response:
    logger.warning("refused %s %s from %s: %s", request.method, request.url.path,
                   _client(request), reason)
    return PlainTextResponse(text, status_code=status, headers=_NO_STORE)


def _public_url(settings: WebhookSettings, request: Request) -> str:
    if settings.public_url:
        query = f"?{request.url.query}" if request.url.query else ""
        return settings.public_url.rstrip("/") + request.url.path + query
    return str(request.url)


async def _form(request: Request) -> list[tuple[str, str]] | None:
    """The ``application/x-www-form-urlencoded`` fields Twilio posts (``None``: too large)."""
    try:
        body = await read_body(request, _MAX_FORM_BYTES)
    except BodyTooLarge:
        return None
    try:
        return parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=200)
    except (UnicodeDecodeError, ValueError):
        return []


def routes(store: Any, settings: WebhookSettings) -> list[Route]:
    """The webhook routes for ``store`` (a :class:`ccm.record.Record`)."""
    out: list[Route] = []

    async def report(request: Request) -> Response:
        assert settings.report_secret is not None
        try:
            body = await read_body(request, MAX_REPORT_BYTES)
        except BodyTooLarge:
            return _refuse(request, 413, "too-large", "report too large")
        given = request.headers.get("x-ccm-signature", "")
        stamp = request.headers.get("x-ccm-timestamp", "")
        if given.startswith("sha256="):
            return _refuse(request, 403, "old-scheme: sha256= signs the body only; sign with "
                           "report_signature (v1=, X-CCM-Timestamp)", "signature required")
        if not given or not stamp:
            return _refuse(request, 403, "unsigned", "signature and timestamp required")
        recipients = request.query_params.getlist("to")
        if len(recipients) > 1 or any(_CONTROL.search(r) for r in recipients):
            return _refuse(request, 403, "bad-to", "one envelope recipient (to) at most")
        envelope = recipients[0] if recipients else None
        if not _TIMESTAMP.fullmatch(stamp):
            return _refuse(request, 403, "bad-timestamp", "timestamp required (unix seconds)")
        now = settings.clock()
        tolerance = settings.report_tolerance.total_seconds()
        if abs(now.timestamp() - int(stamp)) > tolerance:
            return _refuse(request, 403, "stale-timestamp",
                           "timestamp too far from the server's clock")
        if not verify_signature(settings.report_secret, stamp, _signed_report(envelope, body),
                                given, now=now.timestamp(), tolerance=tolerance):
            return _refuse(request, 403, "bad-signature", "signature required")
        try:
            outcome = await run_in_threadpool(
                record_report_bytes, store, body, now=now, envelope_to=envelope
            )
        except InboundError as exc:
            return _refuse(request, 422, f"report: {exc.context.get('reason')}", str(exc))
        except MessageNotFound:
            return _refuse(request, 404, "unknown-message", "message not in the record")
        return PlainTextResponse(outcome.note or "ok", headers=_NO_STORE)

    async def status(request: Request) -> Response:
        assert settings.twilio_auth_token is not None
        params = await _form(request)
        if params is None:
            return _refuse(request, 413, "too-large", "form too large")
        signature = request.headers.get("x-twilio-signature")
        if not check_signature(settings.twilio_auth_token, _public_url(settings, request),
                               params, signature):
            return _refuse(request, 403, "unsigned" if not signature else "bad-signature",
                           "signature required")
        named = request.query_params.get("m")
        try:
            outcome = await run_in_threadpool(
                lambda: record_status(store, dict(params), now=settings.clock(),
                                      message_id=named, max_age=settings.max_age)
            )
        except Refused as exc:
            code = {"replay": 409, "too-old": 410, "unknown": 404}.get(exc.reason, 422)
            return _refuse(request, code, exc.reason, str(exc))
        return PlainTextResponse(outcome.note or "ok", headers=_NO_STORE)

    async def inbound(request: Request) -> Response:
        assert settings.twilio_auth_token is not None
        params = await _form(request)
        if params is None:
            return _refuse(request, 413, "too-large", "form too large")
        signature = request.headers.get("x-twilio-signature")
        if not check_signature(settings.twilio_auth_token, _public_url(settings, request),
                               params, signature):
            return _refuse(request, 403, "unsigned" if not signature else "bad-signature",
                           "signature required")
        form = dict(params)
        word = keyword(form.get("Body", ""))
        answer: str | None = None
        if word == "help":
            answer = settings.help_text
        elif word in ("stop", "start"):
            answer = settings.stop_text if word == "stop" else settings.start_text
            if settings.directory is None:
                logger.warning("inbound %s not recorded: no customer directory configured", word)
            else:
                try:
                    outcome = await run_in_threadpool(
                        lambda: record_keyword(store, settings.directory,  # type: ignore[arg-type]
                                               form.get("From", ""), word, now=settings.clock(),
                                               provider_id=form.get("MessageSid") or None)
                    )
                except Refused as exc:
                    return _refuse(request, 409, exc.reason, str(exc))
                logger.info("inbound %s: %s", word, outcome.note)
        return Response(twiml(answer), media_type="application/xml", headers=_NO_STORE)

    if settings.report_secret is not None:
        out.append(Route("/events/report", report, methods=["POST"]))
    if settings.twilio_auth_token is not None:
        out.append(Route("/twilio/status", status, methods=["POST"]))
        out.append(Route("/twilio/inbound", inbound, methods=["POST"]))
    return out
