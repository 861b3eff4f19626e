"""The tracking web app: link redirects, the open pixel and one-click unsubscribe.

A small Starlette (ASGI) app over :mod:`ccm.render.links` and a record (the
``tracking`` extra: ``pip install 'ccm-engine[tracking]'``)::

    GET  /c/{token}   302 to the signed target, records ``clicked``
    GET  /o/{token}   1x1 transparent GIF (no-store), records ``opened``
    GET  /u/{token}   a confirmation page with a POST form; never unsubscribes
    POST /u/{token}   records ``opted_out`` once (RFC 8058 one-click too)
    GET  /healthz     ``ok``

With :class:`~ccm.engagement.webhooks.WebhookSettings`, also the delivery
report, provider status callback and inbound SMS webhooks (docs/events.md);
with :class:`~ccm.engagement.retrieval.RetrievalSettings`, the document
retrieval page ``/d/{token}`` and hosted web versions ``/w/{token}``
(docs/retrieval.md).

A malformed, forged or wrong-kind token answers 400, an expired one 410, and
neither records anything. Redirect targets come only from signed tokens, so
the app cannot be used as an open redirect. ``HEAD`` requests (link checkers)
get the same answer but record nothing. A repeated open, a repeated click on
the same link (and a repeated web version view) within
:data:`~ccm.engagement.tracking.REPEAT_WINDOW` of the recorded one gets the
same answer and records nothing either: holding a link does not let anyone
grow the append-only record without bound.

Logging: ``ccm.render.links`` at WARNING for a valid token whose message is not
in the record, at ERROR (with traceback) when the record fails.
"""

from __future__ import annotations

import html
import logging
import os
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from ccm.engagement.retrieval import RetrievalSettings
from ccm.engagement.retrieval import routes as retrieval_routes
from ccm.engagement.tracking import (
    EventSink,
    TokenData,
    TrackingKey,
    has_event,
    record_verified,
    verify,
)
from ccm.engagement.webhooks import WebhookSettings
from ccm.engagement.webhooks import routes as webhook_routes
from ccm.errors import MessageNotFound, TokenError

try:
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, RedirectResponse, Response
    from starlette.routing import Route
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "ccm.engagement.app needs the tracking extra: pip install 'ccm-engine[tracking]'"
    ) from exc

__all__ = ["PIXEL_GIF", "create_app", "serve"]

logger = logging.getLogger("ccm.render.links")

#: The smallest transparent 1x1 GIF (43 bytes).
PIXEL_GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)

_NO_STORE = {"Cache-Control": "no-store, private", "X-Robots-Tag": "noindex, nofollow"}
_PAGE_HEADERS = {
    **_NO_STORE,
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
_COLOR = re.compile(r"#[0-9A-Fa-f]{3}(?:[0-9A-Fa-f]{3})?")
_DEFAULT_PALETTE = {"primary": "#1F4E79", "text": "#1A1A1A", "background": "#FFFFFF"}


def _palette(brand: Mapping[str, Any] | None) -> dict[str, str]:
    palette = dict(_DEFAULT_PALETTE)
    given = (brand or {}).get("palette")
    if isinstance(given, Mapping):
        for name in palette:
            value = given.get(name)
            if isinstance(value, str) and _COLOR.fullmatch(value):
                palette[name] = value
    return palette


def _page(title: str, body: str, *, brand: Mapping[str, Any] | None, status: int) -> Response:
    """A tiny self-contained HTML page; ``body`` is already escaped markup."""
    colours = _palette(brand)
    name = html.escape(str((brand or {}).get("name") or ""))
    header = f"<p class=brand>{name}</p>" if name else ""
    doc = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>"
        f"body{{font-family:system-ui,sans-serif;margin:0;background:{colours['background']};"
        f"color:{colours['text']}}}main{{max-width:32rem;margin:4rem auto;padding:0 1rem}}"
        f".brand{{font-weight:700;color:{colours['primary']}}}"
        f"button{{font:inherit;padding:.6rem 1.2rem;border:0;border-radius:.3rem;"
        f"background:{colours['primary']};color:#fff;cursor:pointer}}"
        f"</style></head><body><main>{header}<h1>{html.escape(title)}</h1>{body}</main>"
        "</body></html>"
    )
    return Response(doc, status_code=status, media_type="text/html", headers=_PAGE_HEADERS)


def _token_error(exc: TokenError, *, brand: Mapping[str, Any] | None, page: bool) -> Response:
    expired = getattr(exc, "reason", None) == "expired"
    status = 410 if expired else 400
    text = "This link has expired." if expired else "This link is not valid."
    if page:
        return _page(text, "", brand=brand, status=status)
    return PlainTextResponse(text, status_code=status, headers=_NO_STORE)


def create_app(
    store: EventSink,
    key: TrackingKey,
    *,
    brand: Mapping[str, Any] | None = None,
    webhooks: WebhookSettings | None = None,
    retrieval: RetrievalSettings | None = None,
    clock: Callable[[], datetime] | None = None,
) -> Starlette:
    """The ASGI app serving tracking tokens signed with ``key`` into the record ``store``.

    ``brand`` (``{"name": ..., "palette": {"primary", "text", "background"}}``)
    styles the unsubscribe pages. ``webhooks`` mounts the delivery report,
    status callback and inbound SMS routes (:mod:`ccm.engagement.webhooks`).
    ``retrieval`` mounts the document retrieval page and hosted web versions
    (:mod:`ccm.engagement.retrieval`; the record needs its master key).
    ``clock`` (the current UTC time; injected in tests) checks token expiry
    and dates the events of the tracking routes. The record is used from a
    thread pool.
    """
    now: Callable[[], datetime] = clock if clock is not None else (lambda: datetime.now(UTC))

    async def record(data: TokenData, request: Request, at: datetime) -> None:
        """Add the token's event unless this is a HEAD (or a repeat, see
        :func:`record_verified`); keep the visitor's path working."""
        if request.method == "HEAD":
            return
        try:
            await run_in_threadpool(lambda: record_verified(store, data, at=at))
        except MessageNotFound:
            logger.warning("%s for a message not in the record", data.kind)
        except Exception:
            # The reader must still reach the link; the event is lost, not the visit.
            logger.exception("could not record a %s", data.kind)

    async def click(request: Request) -> Response:
        moment = now()
        try:
            data = verify(request.path_params["token"], "click", key=key, now=moment)
        except TokenError as exc:
            return _token_error(exc, brand=brand, page=False)
        await record(data, request, moment)
        if data.target is None:  # pragma: no cover - verify() guarantees a target
            return PlainTextResponse("This link is not valid.", status_code=400)
        return RedirectResponse(
            data.target, status_code=302, headers={**_NO_STORE, "Referrer-Policy": "no-referrer"}
        )

    async def pixel(request: Request) -> Response:
        moment = now()
        try:
            data = verify(request.path_params["token"], "open", key=key, now=moment)
        except TokenError as exc:
            return _token_error(exc, brand=brand, page=False)
        await record(data, request, moment)
        return Response(PIXEL_GIF, media_type="image/gif", headers=_NO_STORE)

    async def unsubscribe(request: Request) -> Response:
        moment = now()
        try:
            data = verify(request.path_params["token"], "unsub", key=key, now=moment)
        except TokenError as exc:
            return _token_error(exc, brand=brand, page=True)
        try:
            if request.method == "POST":
                # The body (RFC 8058's "List-Unsubscribe=One-Click" or our form)
                # carries nothing we need: the signed token is the authority.
                await run_in_threadpool(lambda: record_verified(store, data, at=moment))
                done = True
            else:
                done = await run_in_threadpool(has_event, store, data.message_id, "opted_out")
        except MessageNotFound:
            logger.warning("unsubscribe for a message not in the record")
            return _page("We could not find this message", "", brand=brand, status=404)
        except Exception:
            logger.exception("could not record an unsubscribe")
            return _page(
                "Please try again later",
                "<p>Something went wrong on our side; you are not unsubscribed yet.</p>",
                brand=brand,
                status=503,
            )
        if done:
            return _page(
                "You are unsubscribed",
                "<p>You will not receive these messages any more.</p>",
                brand=brand,
                status=200,
            )
        form = (
            f'<form method=post action="{html.escape(request.url.path, quote=True)}">'
            '<input type=hidden name="List-Unsubscribe" value="One-Click">'
            "<p>Stop receiving these messages?</p>"
            "<button type=submit>Unsubscribe</button></form>"
        )
        return _page("Unsubscribe", form, brand=brand, status=200)

    async def health(request: Request) -> Response:
        return PlainTextResponse("ok", headers=_NO_STORE)

    return Starlette(
        routes=[
            Route("/c/{token}", click, methods=["GET"]),
            Route("/o/{token}", pixel, methods=["GET"]),
            Route("/u/{token}", unsubscribe, methods=["GET", "POST"]),
            Route("/healthz", health, methods=["GET"]),
            *(webhook_routes(store, webhooks) if webhooks is not None else []),
            *(retrieval_routes(store, key, retrieval, page=_page, brand=brand)
              if retrieval is not None else []),
        ]
    )


def serve(
    record_url: str,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    key_file: str | None = None,
    brand: Mapping[str, Any] | None = None,
    webhooks: WebhookSettings | None = None,
    retrieval: RetrievalSettings | None = None,
) -> None:
    """Run the tracking app with uvicorn (what ``ccm track-serve`` calls).

    The key comes from ``key_file`` or the environment (:meth:`TrackingKey.load`);
    put the app behind a TLS-terminating proxy.
    """
    import uvicorn

    from ccm.record import MasterKey, Record
    from ccm.record.keys import ENV_KEY, ENV_KEY_FILE

    key = TrackingKey.load(key_file)
    master = MasterKey.from_env() if retrieval is not None or (
        os.environ.get(ENV_KEY) or os.environ.get(ENV_KEY_FILE)) else None
    app = create_app(Record(record_url, create=False, master_key=master), key, brand=brand,
                     webhooks=webhooks, retrieval=retrieval)
    # No access log: its lines carry the paths and queries, which hold the tokens of
    # links (/d/, /u/, /w/, /c/) and report parameters. Refusals are logged by the routes.
    uvicorn.run(app, host=host, port=port, log_level="info", server_header=False,
                access_log=False, log_config=_log_config())


def _log_config() -> dict[str, Any]:
    """uvicorn's logging configuration, with ccm's loggers on the same stderr handler.

    ccm's loggers only have a ``NullHandler`` (a library does not configure
    logging), so without this the app's own lines -- too many wrong answers
    on a document link, a record that cannot be read, an event that could
    not be recorded -- went nowhere, and the operator saw only uvicorn's
    start-up lines. ccm logs no token, password or personal data.
    """
    import copy

    from uvicorn.config import LOGGING_CONFIG

    config: dict[str, Any] = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["ccm"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config
