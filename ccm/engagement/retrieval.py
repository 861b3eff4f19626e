"""Retrieval: a confidential PDF behind a signed, expiring link, and hosted web versions.

Mounted by :func:`ccm.engagement.app.create_app` when the app has a record
opened with the master key (:class:`RetrievalSettings`)::

    GET  /d/{token}   the retrieval page: the password hint and one field
    POST /d/{token}   the answer; right -> the PDF (as archived, still encrypted
                      with the same password), wrong -> the page again
    GET  /w/{token}   an email's hosted web version ("view in browser")

The answer is checked by opening the archived, encrypted PDF with it (the
pack's password rule made that password at render time); nothing about the
customer is stored or compared in the app. A retrieval or a web view adds a
``viewed`` event (``{"via": "link"}`` / ``{"via": "web"}``), at most one of
each per message per :data:`~ccm.engagement.tracking.REPEAT_WINDOW` (an
hour): a reload or a flood of requests on one link gets the same answer and
adds nothing more to the append-only record.

Wrong answers are rate-limited in memory (:class:`AttemptLimiter`): at most
``max_failures_per_message`` (5) wrong answers per message and
``max_failures_per_client`` (20) per client address in a sliding
``window`` (15 minutes); beyond that the page answers 429 until the window
has passed. Each answer takes its try from both counts *before* it is
checked (in the event loop, with no ``await`` between the two), so answers
sent at the same moment cannot all pass the limit while the first ones are
still being checked; a right answer gives its try back to the client and
clears the message's count. The limits are per app process: with N
processes behind a load balancer an attacker gets at most N times as many
tries. The form is read up to 4 KB; a larger body answers 413 unread.

An expired link says "expired" (410), a tampered or malformed one "not
valid" (400), one whose customer was erased "no longer available" (410);
none of them shows a name, an id or the hint.
"""

from __future__ import annotations

import email
import email.policy
import html
import logging
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any
from urllib.parse import parse_qsl

from ccm.engagement.bodies import BodyTooLarge, read_body
from ccm.engagement.tracking import REPEAT_WINDOW, TrackingKey, verify
from ccm.errors import ContentErased, MessageNotFound, RecordError, TokenError
from ccm.render.security import decrypt_pdf

try:
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "ccm.engagement.retrieval needs the tracking extra: pip install 'ccm-engine[tracking]'"
    ) from exc

__all__ = ["AttemptLimiter", "RetrievalSettings", "routes"]

logger = logging.getLogger("ccm.engagement.retrieval")
logger.addHandler(logging.NullHandler())

Page = Callable[..., Response]

_WEB_HEADERS = {
    "Cache-Control": "no-store, private",
    "X-Robots-Tag": "noindex, nofollow",
    # The email's own HTML: no script, images from anywhere (the email's own),
    # no form posts, not framed, no referrer leaking the token.
    "Content-Security-Policy": (
        "default-src 'none'; img-src https: data:; style-src 'unsafe-inline'; "
        "font-src https: data:; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
_MAX_FORM_BYTES = 4096


class AttemptLimiter:
    """Wrong answers per key in a sliding window (thread-safe, in memory).

    Only keys with a try inside the window are kept: a key whose tries have all
    passed out of the window is dropped when it is next looked at, and every
    :data:`SWEEP_EVERY` calls the whole table is swept, so memory follows the
    answers of the last window, not every client address ever seen.
    """

    #: Calls between two sweeps of keys whose tries all left the window.
    SWEEP_EVERY = 1024

    def __init__(self, limit: int, window: timedelta) -> None:
        if limit < 1 or window <= timedelta(0):
            raise ValueError("limit must be >= 1 and window positive")
        self.limit = limit
        self.window = window
        self._failures: dict[str, deque[datetime]] = {}
        self._lock = threading.Lock()
        self._calls = 0

    def __len__(self) -> int:
        """How many keys are held (each with a try inside the window, or since the last sweep)."""
        with self._lock:
            return len(self._failures)

    def _recent(self, key: str, now: datetime) -> deque[datetime]:
        """The tries of ``key`` inside the window ending at ``now`` (a new, unstored deque for
        a key not held); sweeps the table every :data:`SWEEP_EVERY` calls."""
        self._calls += 1
        if self._calls >= self.SWEEP_EVERY:
            self._calls = 0
            for stale in [k for k, t in self._failures.items()
                          if not t or now - t[-1] >= self.window]:
                del self._failures[stale]
        times = self._failures.get(key)
        if times is None:
            return deque()
        while times and now - times[0] >= self.window:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    def _add(self, key: str, times: deque[datetime], now: datetime) -> None:
        times.append(now)
        self._failures[key] = times

    def blocked(self, key: str, now: datetime) -> bool:
        """Whether ``key`` used up its wrong answers in the window ending at ``now``."""
        with self._lock:
            return len(self._recent(key, now)) >= self.limit

    def fail(self, key: str, now: datetime) -> int:
        """Count a wrong answer; returns how many are left in the window."""
        with self._lock:
            times = self._recent(key, now)
            self._add(key, times, now)
            return max(self.limit - len(times), 0)

    def reserve(self, key: str, now: datetime) -> bool:
        """Take one try for ``key`` before the answer is checked; ``False`` when none is left.

        Checking and counting in one step is what keeps the limit under
        concurrency: a check-then-count lets every answer sent at once pass
        the check before the first wrong one is counted. A right answer
        gives its try back with :meth:`release`.
        """
        with self._lock:
            times = self._recent(key, now)
            if len(times) >= self.limit:
                return False
            self._add(key, times, now)
            return True

    def release(self, key: str, at: datetime) -> None:
        """Give back one try taken by :meth:`reserve` at ``at`` (gone already: nothing)."""
        with self._lock:
            times = self._failures.get(key)
            if times is not None and at in times:
                times.remove(at)
                if not times:
                    del self._failures[key]

    def left(self, key: str, now: datetime) -> int:
        """How many tries ``key`` has left in the window ending at ``now``."""
        with self._lock:
            return max(self.limit - len(self._recent(key, now)), 0)

    def reset(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)


@dataclass(frozen=True)
class RetrievalSettings:
    """Retrieval page settings; ``hint_for(locale)`` gives the password hint to show."""

    hint_for: Callable[[str | None], str | None] = field(default=lambda _locale: None)
    max_failures_per_message: int = 5
    max_failures_per_client: int = 20
    window: timedelta = timedelta(minutes=15)
    filename: str = "document.pdf"
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))


def _client(request: Request) -> str:
    return request.client.host if request.client else "?"


def routes(
    store: Any,
    key: TrackingKey,
    settings: RetrievalSettings,
    *,
    page: Page,
    brand: Mapping[str, Any] | None,
) -> list[Route]:
    """The retrieval and web-version routes over ``store`` (a record with its master key)."""
    per_message = AttemptLimiter(settings.max_failures_per_message, settings.window)
    per_client = AttemptLimiter(settings.max_failures_per_client, settings.window)

    def say(title: str, status: int, body: str = "") -> Response:
        return page(title, body, brand=brand, status=status)

    def token_problem(exc: TokenError) -> Response:
        if getattr(exc, "reason", None) == "expired":
            return say("This link has expired", 410,
                       "<p>Please ask us for a new link.</p>")
        return say("This link is not valid", 400)

    def gone() -> Response:
        return say("This document is no longer available", 410)

    def form(request: Request, *, hint: str | None, note: str = "", status: int = 200
             ) -> Response:
        hint_html = f"<p class=hint>{html.escape(hint)}</p>" if hint else ""
        note_html = f"<p role=alert class=note>{html.escape(note)}</p>" if note else ""
        body = (
            "<p>Your document is protected. Enter your password to download it.</p>"
            f"{hint_html}{note_html}"
            f'<form method=post action="{html.escape(request.url.path, quote=True)}">'
            '<p><label for=answer>Password</label><br>'
            '<input id=answer name=answer type=password autocomplete=off required '
            'maxlength=128></p><button type=submit>Download</button></form>'
        )
        return say("Download your document", status, body)

    def too_many(mid: str, client: str) -> Response:
        logger.warning("retrieval: too many wrong answers (message %s, client %s)", mid, client)
        return say("Too many attempts", 429, "<p>Please try again later.</p>")

    async def document(request: Request) -> Response:
        now = settings.clock()
        try:
            data = verify(request.path_params["token"], "document", key=key, now=now)
        except TokenError as exc:
            return token_problem(exc)
        mid = data.message_id
        try:
            entry = await run_in_threadpool(store.get, mid)
            pdf = await run_in_threadpool(store.content, mid)
        except (MessageNotFound, ContentErased):
            return gone()
        except RecordError:
            logger.exception("retrieval: the record could not be read")
            return say("Please try again later", 503)
        hint = settings.hint_for(entry.locale)
        if request.method != "POST":
            return form(request, hint=hint)
        try:
            body = await read_body(request, _MAX_FORM_BYTES)
        except BodyTooLarge:
            return say("This form is too large", 413)
        fields = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        answer = fields.get("answer", "").strip()
        client = _client(request)
        # Take the try before checking, with no await in between (see the module docstring).
        if not per_message.reserve(mid, now):
            return too_many(mid, client)
        if not per_client.reserve(client, now):
            per_message.release(mid, now)
            return too_many(mid, client)
        try:
            await run_in_threadpool(decrypt_pdf, pdf, answer)
        except ValueError:
            left = min(per_message.left(mid, now), per_client.left(client, now))
            logger.info("retrieval: wrong answer for message %s", mid)
            note = ("That password is not right." +
                    (f" {left} attempt(s) left." if left else " No attempts left for now."))
            return form(request, hint=hint, note=note, status=403)
        per_message.reset(mid)
        per_client.release(client, now)
        try:
            await run_in_threadpool(
                lambda: store.add_event_once(mid, "viewed", at=now, data={"via": "link"},
                                             within=REPEAT_WINDOW, same_data=True))
        except Exception:
            logger.exception("retrieval: could not record the view")
            return say("Please try again later", 503)
        return Response(pdf, media_type="application/pdf", headers={
            "Content-Disposition": f'attachment; filename="{settings.filename}"',
            "Cache-Control": "no-store, private",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        })

    async def web_version(request: Request) -> Response:
        now = settings.clock()
        try:
            data = verify(request.path_params["token"], "web", key=key, now=now)
        except TokenError as exc:
            return token_problem(exc)
        try:
            raw = await run_in_threadpool(store.content, data.message_id)
        except (MessageNotFound, ContentErased):
            return say("This message is no longer available", 410)
        except RecordError:
            logger.exception("web version: the record could not be read")
            return say("Please try again later", 503)
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        part = parsed.get_body(("html",)) if isinstance(parsed, EmailMessage) else None
        if part is None:
            return say("This message has no web version", 404)
        markup = part.get_content()
        if request.method != "HEAD":
            try:
                await run_in_threadpool(
                    lambda: store.add_event_once(data.message_id, "viewed", at=now,
                                                 data={"via": "web"}, within=REPEAT_WINDOW,
                                                 same_data=True))
            except Exception:
                logger.exception("web version: could not record the view")
        return Response(markup, media_type="text/html", headers=_WEB_HEADERS)

    return [
        Route("/d/{token}", document, methods=["GET", "POST"]),
        Route("/w/{token}", web_version, methods=["GET"]),
    ]
