"""Reading a request body with a size limit, for every route of the web app that reads one.

Starlette's ``await request.body()`` keeps the whole body in memory before the
route can look at its size, so one large POST (a 1.5 GB "report") makes the
server hold it all -- and before any signature is checked. :func:`read_body`
refuses a declared ``Content-Length`` over the limit without reading anything,
and reads the rest as a stream with a running total, stopping as soon as it
passes the limit (a chunked body declares no length). Routes answer
:class:`BodyTooLarge` with 413.
"""

from __future__ import annotations

try:
    from starlette.requests import Request
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "ccm.engagement.bodies needs the tracking extra: pip install 'ccm-engine[tracking]'"
    ) from exc

__all__ = ["BodyTooLarge", "read_body"]


class BodyTooLarge(Exception):
    """The request body is (or says it is) larger than ``limit`` bytes; answer 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body is larger than {limit} bytes")
        self.limit = limit


async def read_body(request: Request, limit: int) -> bytes:
    """The body of ``request``, at most ``limit`` bytes, else :class:`BodyTooLarge`.

    At most ``limit`` bytes plus one network chunk are ever read; the rest is
    left unread (the server closes the connection after the answer).
    """
    try:
        declared = int(request.headers.get("content-length", ""))
    except ValueError:  # absent (chunked) or unreadable: the running total decides
        declared = 0
    if declared > limit:
        raise BodyTooLarge(limit)
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)
