"""Committing a batch run's rendered messages to the record, in bulk."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ccm.batch._worker import _describe_error, _Rendered
from ccm.errors import MessageError


@dataclass
class _Pending:
    """A rendered message waiting for the next commit."""

    line: int
    customer_id: str | None
    rendered: _Rendered
    staged_name: str | None = None
    handles: list[Any] = field(default_factory=list)
    rewrite: bool = False
    error: dict[str, Any] | None = None
    #: Its JSONL line, when text messages go into chunks (``--output-format jsonl``).
    item: dict[str, Any] | None = None


def append_all(record: Any, pending: list[_Pending], caps_of: Mapping[str, Any],
               ) -> dict[int, tuple[str, str | None, str]]:
    """Append ``pending`` to the record in one bulk call.

    Returns ``id(p) -> (status, reason, message_id)`` for every item.
    """
    from ccm.record import Entry

    out: dict[int, tuple[str, str | None, str]] = {}
    items = []
    for p in pending:
        fields = dict(p.rendered.entry)
        fields["created_at"] = datetime.fromisoformat(fields["created_at"])
        generated = p.rendered.status == "generated"
        caps = caps_of.get(p.rendered.channel, ()) if generated else ()
        items.append((p, Entry(**fields), caps))
    bulk = getattr(record, "append_many", None)
    if bulk is not None and items:
        results = bulk([
            {"entry": entry, "content": p.rendered.content or None,
             "archival": p.rendered.archival, "caps": caps}
            for p, entry, caps in items
        ])
    else:
        results = []
        for p, entry, caps in items:
            try:
                results.append(record.append(
                    entry, content=p.rendered.content or None,
                    archival=p.rendered.archival, caps=caps))
            except MessageError as exc:  # e.g. IdempotencyConflict: this message only
                results.append(exc)
    for (p, entry, _), result in zip(items, results, strict=True):
        if isinstance(result, BaseException):
            out[id(p)] = ("failed", None, entry.message_id)
            p.error = _describe_error(result)
            continue
        status = result.status
        if status in ("appended", "generated", "ok", "new", "recorded"):
            status = p.rendered.status
        if status == "suppressed" and p.rendered.status == "suppressed":
            reason = p.rendered.entry.get("reason")
        else:
            reason = getattr(result, "reason", None)
        message_id = getattr(getattr(result, "entry", None), "message_id", entry.message_id)
        out[id(p)] = (status, reason, message_id)
    return out
