"""The engine's record glue: opening the record, entries, duplicates, suppression.

The record knows nothing of rendering; this module is the side of the engine
that speaks to it (:class:`ccm.record.Record`), kept apart from composition.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from ccm.message import Message, Request
from ccm.render.options import DEFAULT, RenderOptions

if TYPE_CHECKING:
    from ccm.record import Record
    from ccm.record.policy import Decision, Policy
    from ccm.render.template import Template

__all__ = ["default_record_url", "open_record"]

logger = logging.getLogger("ccm.render.engine")
logger.addHandler(logging.NullHandler())


def open_record(record: Record | str | os.PathLike[str] | None,
                master_key: Any) -> Record | None:
    """The engine's record: a :class:`Record`, a URL, ``None``, or :data:`DEFAULT`."""
    if record is None:
        return None
    from ccm.record import MasterKey, Record

    if isinstance(record, Record):
        return record
    key = master_key
    if key is DEFAULT:
        key = MasterKey.from_env() if _env_has_master_key() else None
    url = record if record is not DEFAULT else default_record_url()
    opened = Record(url, master_key=key)
    if key is None:
        logger.warning(
            "record at %s keeps entries but no content: no master key "
            "(set CCM_MASTER_KEY or CCM_MASTER_KEY_FILE, see docs/privacy.md)", opened.where)
    return opened


def decide(policy: Policy, tpl: Template, req: Request, channel: str, now: datetime,
           record: Record | None) -> Decision:
    """The contact policy's decision for one message, counting caps in ``record``.

    Without a record the rules that need no history still decide: consent
    given in the request, quiet hours, the customer's time zone. Caps then
    count 0 (there is nothing to count) and there are no recorded opt-outs.
    """
    since_cache: dict[Any, int] = {}

    def counter(cap: Any) -> int:
        if record is None:
            return 0
        if cap not in since_cache:
            from datetime import timedelta

            since_cache[cap] = record.count(
                req.customer_id,
                since=now - timedelta(days=cap.window_days),
                message_type=cap.message_type,
                channel=cap.channel,
            )
        return since_cache[cap]

    return policy.evaluate(
        customer=req.customer,
        message_type=tpl.message_type,
        channel=channel,
        now=now,
        counter=counter,
        consent_overrides=None if record is None else record.consent_overrides(req.customer_id),
    )


def entry_for(message: Message, params: str, segment: str | None,
              clock: Callable[[], datetime]) -> Any:
    """The record entry of ``message``."""
    from ccm.record import Entry

    return Entry(
        message_id=message.message_id,
        idempotency_key=message.idempotency_key or f"msg:{message.message_id}",
        params_sha256=params,
        customer_id=message.customer_id,
        channel=message.channel,
        template=message.template,
        template_version=message.template_version,
        pack=message.pack,
        pack_version=message.pack_version,
        message_type=message.message_type,
        journey=message.journey,
        locale=message.locale,
        created_at=datetime.fromisoformat(message.created_at or clock().isoformat()),
        status=message.status,
        reason=message.reason,
        content_sha256=message.sha256 if message.content else None,
        archival_sha256=message.archival_sha256,
        sources_sha256=message.sources_sha256,
        archive_ref=None,
        segment=segment,
    )


def apply_result(result: Any, message: Message) -> None:
    """What the record did with an appended message, applied to the message."""
    if result.status == "duplicate":
        message.status = "duplicate"
        message.message_id = result.entry.message_id
    elif result.status == "suppressed" and message.status != "suppressed":
        # Another writer reached the cap first: nothing may be sent.
        message.status = "suppressed"
        message.reason = result.reason
        message.content = b""
        message.archival = None
        message.email = None


def _env_has_master_key() -> bool:
    return bool(os.environ.get("CCM_MASTER_KEY") or os.environ.get("CCM_MASTER_KEY_FILE"))


def default_record_url() -> str:
    """``CCM_RECORD_URL``, else a SQLite file in the current folder."""
    return os.environ.get("CCM_RECORD_URL") or "sqlite:///ccm-record.db"


def _from_entry(entry: Any, *, status: Literal["duplicate"]) -> Message:
    return Message(
        message_id=entry.message_id,
        customer_id=entry.customer_id,
        template=entry.template,
        template_version=entry.template_version,
        pack=entry.pack,
        pack_version=entry.pack_version,
        channel=entry.channel,
        locale=entry.locale,
        message_type=entry.message_type,
        journey=entry.journey,
        content=b"",
        status=status,
        reason=entry.reason,
        idempotency_key=entry.idempotency_key,
        sources_sha256=entry.sources_sha256,
        created_at=entry.created_at.isoformat() if entry.created_at else None,
        meta={"recorded_status": entry.status},
    )


def duplicate(earlier: Any, key: str, params: str, req: Request) -> Message:
    """The recorded message for ``key``; a conflict when it was made from other parameters."""
    if earlier.params_sha256 != params:
        from ccm.errors import IdempotencyConflict

        raise IdempotencyConflict(
            f"idempotency key {key!r} is recorded for other parameters "
            f"(message {earlier.message_id}); use a new key",
            key=key, message_id=earlier.message_id, customer_id=req.customer_id,
        )
    return _from_entry(earlier, status="duplicate")


def suppress(message: Message, decision: Decision) -> None:
    """Mark ``message`` suppressed by the policy, saying by which rule and until when."""
    message.status = "suppressed"
    message.reason = decision.rule
    message.meta["explanation"] = decision.reason
    if decision.defer_until is not None:
        message.meta["defer_until"] = decision.defer_until.isoformat()
        # Recorded under its own id, so the retry after quiet hours, with the
        # same idempotency key, is not taken for a duplicate.
        message.idempotency_key = None


def restore_content(record: Record, message: Message, entry: Any, tpl: Template) -> None:
    """Give a duplicate the exact bytes recorded for it, when the archive can (a retried
    send re-sends what was generated); left empty without a master key or after erasure."""
    if record.master_key is None or entry.content_sha256 is None:
        return
    from ccm.errors import CCMError

    try:
        message.content = record.content(entry.message_id)
        message.archival = record.archival(entry.message_id)
    except CCMError as exc:  # erased, or archived under another key
        logger.info("duplicate %s: recorded content not available (%s)",
                    entry.message_id, type(exc).__name__)
        return
    message.encrypted = message.channel == "pdf" and tpl.confidential



# -- the delivery queue ------------------------------------------------------------


def defers(options: RenderOptions, decision: Decision) -> bool:
    """Quiet hours deferring, with queueing on: generate now, send when they end."""
    return options.queue and decision.defer_until is not None


def due_for(options: RenderOptions, message: Message, decision: Decision,
            now: datetime) -> datetime | None:
    """When a queued message may go (``None`` without queueing); noted in ``meta``."""
    if not options.queue:
        return None
    due = decision.defer_until if decision.defer_until is not None else now
    if decision.defer_until is not None:
        message.meta["defer_until"] = decision.defer_until.isoformat()
        message.meta["explanation"] = decision.reason
    message.meta["due_at"] = due.isoformat()
    return due


def queue_for(req: Request, channel: str, due: datetime | None, *,
              consent: bool | None = None) -> Any:
    """The record's queue instruction for a message due at ``due`` (``None``: not queued).

    ``consent``: the policy required consent for it (the sender checks it again)."""
    if due is None:
        return None
    from ccm.record import Queue

    field_name = {"email": "email", "sms": "phone"}.get(channel)
    recipient = str(req.customer[field_name]) if field_name else None
    return Queue(recipient=recipient, due_at=due, consent=consent)
