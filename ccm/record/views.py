"""Read-side views of the record: the customer timeline, the DSAR export, ML features.

Nothing here writes. :class:`~ccm.record.Record` runs the queries inside one
read transaction (one snapshot) and hands the rows to the builders below,
which are plain functions over :class:`~ccm.record.Entry` and
:class:`~ccm.record.Event` objects.
"""

from __future__ import annotations

import base64
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import groupby
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import sqlalchemy as sa

from ccm.record.chain import utc
from ccm.record.entries import BLOCKED_PREFIX
from ccm.record.schema import events, messages

if TYPE_CHECKING:
    from ccm.record.entries import Entry, Event

__all__ = [
    "ENGAGED",
    "FEATURE_COLUMNS",
    "Timeline",
    "TimelineItem",
    "build_export",
    "build_timeline",
    "delivery_rates",
    "encode_content",
    "feature_query_rows",
    "feature_rows",
]

#: Events that count a message as engaged with: an open, a click, and a view (an email's
#: web version, a document retrieved through its link), which a reader makes as surely.
ENGAGED = ("opened", "clicked", "viewed")
CHANNELS = ("pdf", "email", "sms")
MESSAGE_TYPES = ("operational", "marketing")
_MEDIA = {"pdf": "application/pdf", "email": "message/rfc822", "sms": "text/plain; charset=utf-8"}
EXPORT_FORMAT = "ccm-record-export/1"


@dataclass(frozen=True)
class TimelineItem:
    """One message of a timeline with its events."""

    entry: Entry
    events: tuple[Event, ...] = ()

    @property
    def engaged(self) -> bool:
        return any(e.kind in ENGAGED for e in self.events)

    def to_dict(self) -> dict[str, Any]:
        e = self.entry
        return {
            "message_id": e.message_id,
            "channel": e.channel,
            "template": e.template,
            "template_version": e.template_version,
            "pack": e.pack,
            "pack_version": e.pack_version,
            "message_type": e.message_type,
            "journey": e.journey,
            "locale": e.locale,
            "segment": e.segment,
            "status": e.status,
            "reason": e.reason,
            "created_at": utc(e.created_at).isoformat(),
            "events": [ev.to_dict() for ev in self.events],
        }


@dataclass(frozen=True)
class Timeline:
    """A customer's single view: every message across channels in time order, and a summary."""

    customer_id: str
    messages: tuple[TimelineItem, ...]
    summary: dict[str, Any] = field(default_factory=dict)
    erasures: tuple[datetime, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """``{"customer_id", "summary", "messages": [...]}`` -- what ``--json`` prints."""
        return {
            "customer_id": self.customer_id,
            "summary": self.summary,
            "messages": [m.to_dict() for m in self.messages],
        }


def build_timeline(
    customer_id: str,
    entries: Sequence[Entry],
    evs: Iterable[Event],
    *,
    overrides: Mapping[str, bool],
    erasures: Sequence[datetime] = (),
) -> Timeline:
    """Group events under their messages and summarise."""
    by_message: dict[str, list[Event]] = {}
    for ev in evs:
        by_message.setdefault(ev.message_id, []).append(ev)
    items = tuple(
        TimelineItem(e, tuple(sorted(by_message.get(e.message_id, ()), key=lambda v: v.at)))
        for e in sorted(entries, key=lambda e: (utc(e.created_at), e.message_id))
    )
    return Timeline(customer_id, items, summarise(items, overrides, erasures), tuple(erasures))


def summarise(
    items: Sequence[TimelineItem], overrides: Mapping[str, bool], erasures: Sequence[datetime]
) -> dict[str, Any]:
    """Counts, engagement, last contact and pack versions of one customer's messages.

    Counts by channel, message type and journey count generated messages
    (what was actually made); suppressions are counted by reason. The
    engagement rate of a channel is the share of its generated messages
    with an open, a click or a view (:data:`ENGAGED`; a PDF is engaged with only when it
    is retrieved through its link).
    ``segment`` is the newest segment recorded on the customer's messages;
    ``nps_score`` the latest survey answer (see :mod:`ccm.engagement.nps`).
    """
    made = [i for i in items if i.entry.status == "generated"]
    by_channel: Counter[str] = Counter(i.entry.channel for i in made)
    engaged: Counter[str] = Counter(i.entry.channel for i in made if i.engaged)
    last: dict[str, str] = {}
    for i in made:
        last[i.entry.channel] = utc(i.entry.created_at).isoformat()  # items are in time order
    segments = [i.entry.segment for i in items if i.entry.segment]
    packs = sorted({
        f"{i.entry.pack}@{i.entry.pack_version}" if i.entry.pack_version else str(i.entry.pack)
        for i in made if i.entry.pack
    })
    return {
        "messages": len(items),
        "generated": len(made),
        "suppressed": sum(1 for i in items if i.entry.status == "suppressed"),
        "by_channel": dict(sorted(by_channel.items())),
        "by_message_type": dict(sorted(Counter(i.entry.message_type or "" for i in made).items())),
        "by_journey": dict(sorted(Counter(i.entry.journey or "" for i in made).items())),
        "suppressed_by_reason": dict(sorted(Counter(
            i.entry.reason or "" for i in items if i.entry.status == "suppressed"
        ).items())),
        "engaged": dict(sorted(engaged.items())),
        "engagement_rate": {ch: round(engaged[ch] / n, 4) for ch, n in sorted(by_channel.items())},
        "last_contact": dict(sorted(last.items())),
        "pack_versions": packs,
        "opted_out": sorted(ch for ch, ok in overrides.items()
                            if not ok and not ch.startswith(BLOCKED_PREFIX)),
        "suppressed_channels": sorted(ch.removeprefix(BLOCKED_PREFIX)
                                      for ch, ok in overrides.items()
                                      if not ok and ch.startswith(BLOCKED_PREFIX)),
        "delivery": {
            "by_channel": delivery_rates(made, lambda e: e.channel),
            "by_template": delivery_rates(made, lambda e: e.template),
            "by_journey": delivery_rates(made, lambda e: e.journey or ""),
        },
        "erased_at": utc(erasures[-1]).isoformat() if erasures else None,
        "segment": segments[-1] if segments else None,
        "nps_score": _latest_score(items),
    }


#: Events that say a transport took the message (the denominator of the delivery rates).
HANDED_OVER = ("sent", "delivered", "bounced", "failed", "complained")
#: The delivery outcomes counted per message (a message counts once per kind).
DELIVERY_OUTCOMES = ("delivered", "bounced", "complained", "failed")


def delivery_rates(
    items: Iterable[TimelineItem], key: Callable[[Entry], str]
) -> dict[str, dict[str, Any]]:
    """Per ``key(entry)``: messages handed to a transport, and how many were delivered,
    bounced, complained about or failed, with their rates (share of the handed-over
    messages, rounded to 4 places; ``None`` when none was handed over).

    A message counts once per outcome however many events it has (a soft bounce
    then delivery counts as bounced *and* delivered).
    """
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        kinds = {ev.kind for ev in item.events}
        row = out.setdefault(key(item.entry), {"sent": 0, **dict.fromkeys(DELIVERY_OUTCOMES, 0)})
        if kinds & set(HANDED_OVER):
            row["sent"] += 1
            for outcome in DELIVERY_OUTCOMES:
                row[outcome] += outcome in kinds
    for row in out.values():
        for outcome, rate in (("delivered", "delivery_rate"), ("bounced", "bounce_rate"),
                              ("complained", "complaint_rate"), ("failed", "failure_rate")):
            row[rate] = round(row[outcome] / row["sent"], 4) if row["sent"] else None
    return dict(sorted(out.items()))


#: The template id whose clicks are survey answers.
NPS_TEMPLATE = "nps_survey"
_SCORE = re.compile(r"10|[0-9]")


def score_from_url(url: object) -> int | None:
    """The 0-10 ``score`` query parameter of ``url``, or ``None``."""
    if not isinstance(url, str):
        return None
    try:
        values = parse_qs(urlsplit(url).query).get("score", [])
    except ValueError:
        return None
    if len(values) != 1 or not _SCORE.fullmatch(values[0]):
        return None
    return int(values[0])



def _latest_score(items: Sequence[TimelineItem]) -> int | None:
    """The customer's latest NPS answer: the newest scored click on an ``nps_survey`` message."""
    best: tuple[datetime, int] | None = None
    for item in items:
        if item.entry.template != NPS_TEMPLATE:
            continue
        for ev in item.events:
            score = score_from_url((ev.data or {}).get("url")) if ev.kind == "clicked" else None
            if score is not None and (best is None or ev.at >= best[0]):
                best = (ev.at, score)
    return None if best is None else best[1]


# -- DSAR export ---------------------------------------------------------------


def encode_content(channel: str, part: str, data: bytes) -> dict[str, Any]:
    """Archived bytes for JSON: text for email and SMS when it is UTF-8, base64 otherwise."""
    media = "application/pdf" if part == "archival" else _MEDIA.get(channel,
                                                                   "application/octet-stream")
    if channel in ("email", "sms") and part == "content":
        try:
            return {"status": "archived", "media_type": media, "encoding": "text",
                    "data": data.decode("utf-8")}
        except UnicodeDecodeError:
            pass
    return {"status": "archived", "media_type": media, "encoding": "base64",
            "data": base64.b64encode(data).decode("ascii")}


def build_export(timeline: Timeline,
                 contents: Mapping[str, Mapping[str, dict[str, Any] | None]]) -> dict[str, Any]:
    """The subject access export: the timeline, full entries and archived content."""
    out_messages = []
    for item in timeline.messages:
        entry = item.entry.to_dict()
        entry["events"] = [ev.to_dict() for ev in item.events]
        parts = contents.get(item.entry.message_id, {})
        entry["content"] = parts.get("content")
        entry["archival"] = parts.get("archival")
        out_messages.append(entry)
    return {
        "format": EXPORT_FORMAT,
        "customer_id": timeline.customer_id,
        "exported_at": datetime.now(UTC).isoformat(),
        "summary": timeline.summary,
        "erasures": [utc(at).isoformat() for at in timeline.erasures],
        "messages": out_messages,
    }


# -- features for propensity models ----------------------------------------------


def _feature_columns() -> tuple[str, ...]:
    cols = ["customer_id", "messages", "generated", "suppressed", "engaged", "engagement_rate",
            "recency_days", "bounced", "opted_out"]
    for ch in CHANNELS:
        cols += [f"{ch}_generated", f"{ch}_suppressed", f"{ch}_opened", f"{ch}_clicked",
                 f"{ch}_engagement_rate", f"{ch}_recency_days", f"{ch}_bounced",
                 f"{ch}_opted_out"]
    for mt in MESSAGE_TYPES:
        cols += [f"{mt}_generated", f"{mt}_suppressed", f"{mt}_engagement_rate",
                 f"{mt}_recency_days"]
    return tuple(cols)


#: The columns of :meth:`Record.features`, in CSV order. Rates are ``None``
#: without generated messages; recency is whole days since the newest
#: generated message (``None`` when there is none).
FEATURE_COLUMNS = _feature_columns()


def feature_query_rows(conn: sa.Connection) -> list[Any]:
    """Per (customer, channel, message type, status): counts, event flags, newest date."""
    def flag(*kinds: str) -> Any:
        return sa.func.max(sa.case((events.c.kind.in_(kinds), 1), else_=0))

    ev = (
        sa.select(
            events.c.message_id,
            flag("opened").label("opened"),
            flag("clicked").label("clicked"),
            flag(*ENGAGED).label("engaged"),
            flag("bounced", "failed").label("bounced"),
            flag("opted_out", "complained").label("opted_out"),
        )
        .group_by(events.c.message_id)
        .subquery()
    )
    m = messages.c

    def total(col: Any) -> Any:
        return sa.func.coalesce(sa.func.sum(sa.func.coalesce(col, 0)), 0)

    query = (
        sa.select(
            m.customer_id, m.channel, m.message_type, m.status,
            sa.func.count().label("n"),
            total(ev.c.opened).label("opened"),
            total(ev.c.clicked).label("clicked"),
            total(ev.c.engaged).label("engaged"),
            total(ev.c.bounced).label("bounced"),
            total(ev.c.opted_out).label("opted_out"),
            sa.func.max(m.created_at).label("newest"),
        )
        .select_from(messages.outerjoin(ev, ev.c.message_id == m.message_id))
        .group_by(m.customer_id, m.channel, m.message_type, m.status)
        .order_by(m.customer_id)
    )
    return list(conn.execute(query))


def _days(now: datetime, newest: Any) -> int | None:
    if newest is None:
        return None
    if isinstance(newest, str):  # SQLite can lose the type of an aggregate
        newest = datetime.fromisoformat(newest)
    return max(0, (now - utc(newest)).days)


def _later(newest: dict[str, int], key: str, days: int | None) -> None:
    """Keep the smallest recency per key."""
    if days is not None and (key not in newest or days < newest[key]):
        newest[key] = days


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def feature_rows(rows: Iterable[Any], *, now: datetime) -> Iterator[dict[str, Any]]:
    """Fold the grouped rows into one feature row per customer (:data:`FEATURE_COLUMNS`)."""
    for customer_id, group in groupby(rows, key=lambda r: r.customer_id):
        out: dict[str, Any] = dict.fromkeys(FEATURE_COLUMNS, 0)
        out["customer_id"] = customer_id
        newest: dict[str, int] = {}
        engaged: Counter[str] = Counter()

        for r in group:
            n = int(r.n)
            out["messages"] += n
            ch, mt = r.channel, r.message_type
            if r.status != "generated":
                out["suppressed"] += n
                if ch in CHANNELS:
                    out[f"{ch}_suppressed"] += n
                if mt in MESSAGE_TYPES:
                    out[f"{mt}_suppressed"] += n
                continue
            out["generated"] += n
            out["engaged"] += int(r.engaged)
            out["bounced"] += int(r.bounced)
            out["opted_out"] += int(r.opted_out)
            _later(newest, "", _days(now, r.newest))
            if ch in CHANNELS:
                out[f"{ch}_generated"] += n
                out[f"{ch}_opened"] += int(r.opened)
                out[f"{ch}_clicked"] += int(r.clicked)
                out[f"{ch}_bounced"] += int(r.bounced)
                out[f"{ch}_opted_out"] += int(r.opted_out)
                engaged[ch] += int(r.engaged)
                _later(newest, ch, _days(now, r.newest))
            if mt in MESSAGE_TYPES:
                out[f"{mt}_generated"] += n
                engaged[mt] += int(r.engaged)
                _later(newest, mt, _days(now, r.newest))
        out["engagement_rate"] = _rate(out["engaged"], out["generated"])
        out["recency_days"] = newest.get("")
        for key in (*CHANNELS, *MESSAGE_TYPES):
            out[f"{key}_engagement_rate"] = _rate(engaged[key], out[f"{key}_generated"])
            out[f"{key}_recency_days"] = newest.get(key)
        yield out
