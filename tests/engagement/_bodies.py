"""Request bodies that count how much of them the app read, and a way to POST them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx


class Endless:
    """A request body of ``total`` bytes in 64 KB chunks that counts how much was read."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        chunk = b"x" * 65_536
        while self.sent < self.total:
            self.sent += len(chunk)
            yield chunk


def post_in_process(app: Any, path: str, body: Endless, headers: dict[str, str]
                    ) -> httpx.Response:
    """POST ``body`` to ``app`` in process (httpx's ASGI transport reads it only on demand)."""

    async def run() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://testserver") as c:
            return await c.post(path, content=body, headers=headers)

    return asyncio.run(run())

