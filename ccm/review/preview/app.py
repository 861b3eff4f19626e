"""The preview web app (Starlette) and its live reload.

::

    watchfiles (pack + templates folders) -> Workspace.bump() -> re-render the
    views open pages are showing -> "reload" event to those pages (server-sent
    events on /events) -> the page reloads from the warm cache

The server binds 127.0.0.1 only and answers only to ``127.0.0.1`` and
``localhost`` host names, so a web page elsewhere cannot reach it through
DNS rebinding. Every route is a GET that changes nothing.

Routes: ``/`` the page, ``/pdf-page`` a PDF page as PNG, ``/email-html`` the
email's HTML (for the iframes), ``/lint`` the findings (an HTML fragment),
``/events`` the reload stream, ``/pack-file/<pack>/<path>`` files of a pack
(emails link the logo from where the pack publishes it; the preview serves
it locally), ``/health`` the current generation as JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import threading
from collections.abc import AsyncIterator, Sequence
from typing import Any

import anyio.to_thread
import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route

from ccm.review.preview.page import findings_html, page_html
from ccm.review.preview.workspace import EmailView, PdfView, ViewKey, Workspace

__all__ = ["HOST", "Hub", "PreviewServer", "create_app"]

logger = logging.getLogger("ccm.review.preview")
logger.addHandler(logging.NullHandler())

#: The only address the preview listens on.
HOST = "127.0.0.1"
_ALLOWED_HOSTS = ("127.0.0.1", "localhost")
#: Milliseconds watchfiles waits for a burst of writes to settle (an editor's save).
_DEBOUNCE_MS = 150
_STEP_MS = 30
_KEEPALIVE_S = 15.0


class Hub:
    """Open pages, what each shows, and the reload signal they wait for."""

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace
        self.boot = secrets.token_hex(4)
        self._pages: dict[int, tuple[ViewKey, asyncio.Queue[str | None]]] = {}
        self._ids = 0
        self.closed = False
        self._lint_task: asyncio.Task[None] | None = None

    def token(self) -> str:
        """Names the server run and generation a page shows; a page reloads when it differs."""
        return f"{self.boot}:{self.workspace.generation}"

    def connect(self, key: ViewKey) -> tuple[int, asyncio.Queue[str | None]]:
        """Register an open page showing ``key``."""
        self._ids += 1
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._pages[self._ids] = (key, queue)
        return self._ids, queue

    def disconnect(self, page: int) -> None:
        """Forget a closed page."""
        self._pages.pop(page, None)

    async def changed(self) -> None:
        """Files changed: new generation, re-render what pages show, then tell them.

        Lint for the open pages runs afterwards in the background: the watcher
        must be free to take the next save at once, and a lint run that a newer
        save overtakes stops (see :meth:`Workspace.findings`).
        """
        self.workspace.bump()
        token = self.token()
        pending = dict(self._pages)
        for key in dict.fromkeys(k for k, _ in pending.values()):
            await anyio.to_thread.run_sync(self.workspace.view, key)
            if token != self.token():
                return  # a newer change is on its way; its round notifies
            for page, (shown, queue) in list(pending.items()):
                if shown == key:
                    queue.put_nowait(token)
                    del pending[page]
        for _, queue in pending.values():
            queue.put_nowait(token)
        if self._lint_task is not None:
            self._lint_task.cancel()
        self._lint_task = asyncio.create_task(self._lint_open_pages())

    async def _lint_open_pages(self) -> None:
        """Warm the lint findings of what open pages show, in the current generation."""
        for key in dict.fromkeys(k for k, _ in self._pages.values()):
            if self.closed:
                return
            try:
                await anyio.to_thread.run_sync(self.workspace.findings, key)
            except Exception:  # a page asking /lint sees the failure; nothing to do here
                logger.exception("lint after a change failed")

    def close(self) -> None:
        """End every event stream (the server is stopping)."""
        self.closed = True
        for _, queue in self._pages.values():
            queue.put_nowait(None)
        if self._lint_task is not None:
            self._lint_task.cancel()


def _key(workspace: Workspace, request: Request) -> ViewKey:
    q = request.query_params
    return workspace.resolve(q.get("pack"), q.get("template"), q.get("locale"), q.get("sample"))


async def _resolve(workspace: Workspace, request: Request) -> ViewKey:
    return await anyio.to_thread.run_sync(_key, workspace, request)


def create_app(workspace: Workspace, *, watch: bool = True,
               allowed_hosts: Sequence[str] = _ALLOWED_HOSTS) -> Starlette:
    """The preview app over ``workspace``; ``watch`` turns on live reload from disk."""
    hub = Hub(workspace)

    async def index(request: Request) -> Response:
        key = await _resolve(workspace, request)
        listing = await anyio.to_thread.run_sync(workspace.listing, key.pack)
        view = await anyio.to_thread.run_sync(workspace.view, key)
        html = page_html(listing, view, token=f"{hub.boot}:{view.generation}",
                         lint=workspace.lint_enabled)
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    async def pdf_page(request: Request) -> Response:
        key = await _resolve(workspace, request)
        view = await anyio.to_thread.run_sync(workspace.view, key)
        pdf = view.channel("pdf")
        try:
            n = int(request.query_params.get("n", "1"))
        except ValueError:
            n = 0
        pages = pdf.output.pages if pdf and isinstance(pdf.output, PdfView) else ()
        if not 1 <= n <= len(pages):
            return PlainTextResponse("no such page", status_code=404)
        return Response(pages[n - 1], media_type="image/png",
                        headers={"Cache-Control": "no-cache"})

    async def email_html(request: Request) -> Response:
        key = await _resolve(workspace, request)
        view = await anyio.to_thread.run_sync(workspace.view, key)
        email = view.channel("email")
        if email is None or not isinstance(email.output, EmailView):
            return PlainTextResponse("no email", status_code=404)
        return HTMLResponse(email.output.html, headers={
            "Cache-Control": "no-cache",
            "Content-Security-Policy": "script-src 'none'",
        })

    async def lint(request: Request) -> Response:
        key = await _resolve(workspace, request)
        found = await anyio.to_thread.run_sync(workspace.findings, key)
        return HTMLResponse(findings_html(found, enabled=workspace.lint_enabled),
                            headers={"Cache-Control": "no-store"})

    async def events(request: Request) -> Response:
        key = await _resolve(workspace, request)

        async def stream() -> AsyncIterator[str]:
            page, queue = hub.connect(key)
            try:
                yield f"retry: 500\nevent: hello\ndata: {hub.token()}\n\n"
                while not hub.closed:
                    try:
                        token = await asyncio.wait_for(queue.get(), _KEEPALIVE_S)
                    except TimeoutError:
                        yield ": keep-alive\n\n"
                        continue
                    if token is None:
                        return
                    yield f"event: reload\ndata: {token}\n\n"
            finally:
                hub.disconnect(page)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store"})

    async def pack_file(request: Request) -> Response:
        path = workspace.asset(request.path_params["pack"], request.path_params["path"])
        if path is None:
            return PlainTextResponse("not found", status_code=404)
        return FileResponse(path)

    async def favicon(request: Request) -> Response:
        return Response(status_code=204)

    async def health(request: Request) -> Response:
        return JSONResponse({"generation": workspace.generation, "token": hub.token()})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        stop = asyncio.Event()
        task = asyncio.create_task(_watch(hub, stop)) if watch else None
        try:
            yield
        finally:
            hub.close()
            stop.set()
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/pdf-page", pdf_page),
            Route("/email-html", email_html),
            Route("/lint", lint),
            Route("/events", events),
            Route("/pack-file/{pack}/{path:path}", pack_file),
            Route("/health", health),
            Route("/favicon.ico", favicon),
        ],
        middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))],
        lifespan=lifespan,
    )
    app.state.hub = hub
    return app


async def _watch(hub: Hub, stop: asyncio.Event) -> None:
    from watchfiles import awatch

    paths = [p for p in hub.workspace.watch_paths if p.exists()]
    async for _changes in awatch(*paths, debounce=_DEBOUNCE_MS, step=_STEP_MS, stop_event=stop):
        try:
            await hub.changed()
        except Exception:  # a failed re-render is shown on the page; keep watching
            logger.exception("re-render after a change failed")


class _Server(uvicorn.Server):
    """uvicorn, ending the event streams first so shutdown does not wait on them."""

    def __init__(self, config: uvicorn.Config, hub: Hub) -> None:
        super().__init__(config)
        self.hub = hub

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.hub.close()
        await super().shutdown(sockets=sockets)
        # A connection still open after the graceful timeout is closed here, while the
        # loop runs, rather than left for the garbage collector.
        for connection in list(self.server_state.connections):
            transport = getattr(connection, "transport", None)
            if transport is not None and not transport.is_closing():
                transport.abort()
        await asyncio.sleep(0)


class PreviewServer:
    """The preview on ``127.0.0.1:port`` (0: a free port); ``run()``, or ``start()``/``stop()``."""

    def __init__(self, workspace: Workspace, *, port: int = 0, watch: bool = True,
                 log_level: str = "warning") -> None:
        self.app = create_app(workspace, watch=watch)
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.socket.bind((HOST, port))
        except OSError:
            self.socket.close()
            raise
        self.port: int = self.socket.getsockname()[1]
        config = uvicorn.Config(self.app, log_level=log_level, timeout_graceful_shutdown=2,
                                lifespan="on")
        self._server = _Server(config, self.app.state.hub)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://{HOST}:{self.port}"

    def run(self) -> None:
        """Serve until interrupted (Ctrl-C)."""
        try:
            self._server.run(sockets=[self.socket])
        finally:
            self.socket.close()

    def start(self, timeout: float = 10.0) -> PreviewServer:
        """Serve in a background thread; returns once it accepts connections."""
        self._thread = threading.Thread(target=self.run, name="ccm-preview", daemon=True)
        self._thread.start()
        waited = 0.0
        while not self._server.started:
            if not self._thread.is_alive() or waited > timeout:
                raise RuntimeError("the preview server did not start")
            threading.Event().wait(0.02)
            waited += 0.02
        return self

    def stop(self) -> None:
        """Stop the background server and wait for it."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> PreviewServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
