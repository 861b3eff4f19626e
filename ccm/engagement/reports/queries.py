"""The organisation report's numbers, counted in the record's database.

:func:`collect_report` runs the queries (``GROUP BY`` in SQL, one read) and
returns an :class:`OrgReport`; :mod:`ccm.engagement.reports.pages` draws it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa

from ccm.engagement.nps import nps_scores, reading, record_tables
from ccm.record.views import ENGAGED

__all__ = ["ChannelEngagement", "DeliveryRow", "OrgReport", "collect_report", "iso_week"]

#: Channels whose engagement (opens, clicks) can be tracked at all.
TRACKABLE = frozenset({"email", "sms"})
#: The record's own: an open, a click or a view (:data:`ccm.record.views.ENGAGED`).
ENGAGED_EVENTS = frozenset(ENGAGED)
SUPPRESSED = "suppressed"
_CHANNEL_ORDER = {"pdf": 0, "email": 1, "sms": 2}
#: The breakdowns that also get a chart of their volume per week.
WEEKLY_DIMENSIONS = ("type", "journey", "segment", "template", "pack")


def _when(value: object) -> datetime | None:
    """A record timestamp (datetime or ISO text) as an aware UTC datetime."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return None
    else:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def iso_week(day: date) -> str:
    """``2026-W07`` for ``day``."""
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def _week_range(days: Iterable[date]) -> list[str]:
    """Every ISO week from the first to the last of ``days`` (no gaps)."""
    mondays = sorted({d - timedelta(days=d.weekday()) for d in days})
    if not mondays:
        return []
    out, monday = [], mondays[0]
    while monday <= mondays[-1]:
        out.append(iso_week(monday))
        monday += timedelta(days=7)
    return out


def _channel_key(channel: str) -> tuple[int, str]:
    return (_CHANNEL_ORDER.get(channel, 9), channel)


def _rate(engaged: int, eligible: int, channel: str) -> str:
    if channel not in TRACKABLE or eligible == 0:
        return "—"
    return f"{100 * engaged / eligible:.1f}%"


@dataclass
class ChannelEngagement:
    """Engagement counts for one channel (messages, not events)."""

    channel: str
    sent: int = 0
    opened: int = 0
    clicked: int = 0
    engaged: int = 0
    opted_out: int = 0
    failed: int = 0

    @property
    def rate(self) -> float | None:
        """Share of sent messages opened, clicked or viewed; ``None`` where untrackable."""
        if self.channel not in TRACKABLE or not self.sent:
            return None
        return self.engaged / self.sent

    @property
    def rate_label(self) -> str:
        return _rate(self.engaged, self.sent, self.channel)


#: Events that say a transport took the message: the denominator of delivery rates
#: (the same as :data:`ccm.record.views.HANDED_OVER`).
HANDED_OVER = ("sent", "delivered", "bounced", "failed", "complained")
DELIVERY_DIMENSIONS = ("channel", "template", "journey")


@dataclass
class DeliveryRow:
    """Delivery outcomes of one channel, template or journey (messages, not events)."""

    label: str
    sent: int = 0
    delivered: int = 0
    bounced: int = 0
    complained: int = 0
    failed: int = 0

    def rate(self, outcome: str) -> float | None:
        """Share of handed-over messages with ``outcome``; ``None`` when none was handed over."""
        return getattr(self, outcome) / self.sent if self.sent else None

    def label_of(self, outcome: str) -> str:
        rate = self.rate(outcome)
        return "—" if rate is None else f"{100 * rate:.1f}%"


@dataclass
class OrgReport:
    """What the organisation report shows, collected from the record."""

    since: date | None = None
    sent: int = 0
    suppressed: int = 0
    customers: int = 0
    weeks: list[str] = field(default_factory=list)
    volume: dict[tuple[str, str], int] = field(default_factory=dict)
    channels: list[str] = field(default_factory=list)
    by_type: list[tuple[str, int]] = field(default_factory=list)
    by_journey: list[tuple[str, int]] = field(default_factory=list)
    by_segment: list[tuple[str, int]] | None = None
    by_template: list[tuple[str, int]] = field(default_factory=list)
    by_pack: list[tuple[str, int]] = field(default_factory=list)
    suppressions: list[tuple[str, int]] = field(default_factory=list)
    engagement: list[ChannelEngagement] = field(default_factory=list)
    nps: dict[str, Any] = field(default_factory=dict)
    #: ``{dimension: {(week, label): messages}}`` for the dimensions of
    #: :data:`WEEKLY_DIMENSIONS` (labels as in the ``by_*`` lists).
    weekly: dict[str, dict[tuple[str, str], int]] = field(default_factory=dict)
    #: ``{"channel" | "template" | "journey": [DeliveryRow, ...]}`` (rows with a message
    #: handed to a transport only).
    delivery: dict[str, list[DeliveryRow]] = field(default_factory=dict)


def _versioned(name: object, version: object) -> str:
    return f"{name}@{version}" if version not in (None, "") else str(name)


def collect_report(record: Any, *, since: date | None = None) -> OrgReport:
    """Query the record for the organisation report (messages created on or after ``since``).

    Counting happens in the database (``GROUP BY``); only the weekly volume
    streams two columns per message, because ISO weeks are not portable SQL.
    """
    _engine, messages, events = record_tables(record)
    start = datetime.combine(since, time.min, tzinfo=UTC) if since else None
    m = messages.c
    window = [m.created_at >= start] if start is not None else []
    sent = [*window, m.status != SUPPRESSED]
    report = OrgReport(since=since)
    count = sa.func.count()

    def grouped(*columns: Any, where: Sequence[Any] = sent) -> list[Any]:
        query = sa.select(*columns, count.label("n")).where(*where).group_by(*columns)
        return list(conn.execute(query))

    def ranked(pairs: Iterable[tuple[str, int]]) -> list[tuple[str, int]]:
        merged: Counter[str] = Counter()
        for label, n in pairs:
            merged[label] += n
        return sorted(merged.items(), key=lambda kv: (-kv[1], kv[0]))

    # One read-only snapshot for every query (PostgreSQL: REPEATABLE READ, READ ONLY), so
    # the totals, breakdowns, engagement and NPS describe the same moment.
    with reading(record) as conn:
        report.sent = conn.execute(sa.select(count).where(*sent)).scalar_one()
        report.suppressed = conn.execute(
            sa.select(count).where(*window, m.status == SUPPRESSED)
        ).scalar_one()
        report.customers = conn.execute(
            sa.select(sa.func.count(sa.distinct(m.customer_id))).where(*sent)
        ).scalar_one()
        volume: Counter[tuple[str, str]] = Counter()
        weekly: dict[str, Counter[tuple[str, str]]] = {dim: Counter() for dim in WEEKLY_DIMENSIONS}
        days: set[date] = set()
        for row in conn.execute(
            sa.select(m.created_at, m.channel, m.message_type, m.journey, m.segment, m.template,
                      m.template_version, m.pack, m.pack_version)
            .where(*sent).execution_options(yield_per=10_000)
        ):
            moment = _when(row.created_at)
            if moment is None:
                continue
            week = iso_week(moment.date())
            volume[(week, row.channel)] += 1
            days.add(moment.date())
            labels = {
                "type": row.message_type or "—",
                "journey": row.journey or "—",
                "segment": row.segment or "—",
                "template": _versioned(row.template, row.template_version),
                "pack": _versioned(row.pack, row.pack_version),
            }
            for dim, label in labels.items():
                weekly[dim][(week, label)] += 1
        report.weeks = _week_range(days)
        report.volume = dict(volume)
        report.weekly = {dim: dict(counts) for dim, counts in weekly.items()}
        report.channels = sorted({c for _, c in volume}, key=_channel_key)
        report.by_type = ranked((r[0] or "—", r.n) for r in grouped(m.message_type))
        report.by_journey = ranked((r[0] or "—", r.n) for r in grouped(m.journey))
        segments = grouped(m.segment)
        if any(r[0] for r in segments):  # a record without segments gets no segment section
            report.by_segment = ranked((r[0] or "—", r.n) for r in segments)
        report.by_template = ranked(
            (_versioned(r[0], r[1]), r.n) for r in grouped(m.template, m.template_version)
        )
        report.by_pack = ranked(
            (_versioned(r[0], r[1]), r.n) for r in grouped(m.pack, m.pack_version)
        )
        report.suppressions = ranked(
            (r[0] or "unspecified", r.n)
            for r in grouped(m.reason, where=[*window, m.status == SUPPRESSED])
        )
        engagement = {r.channel: ChannelEngagement(r.channel, sent=r.n) for r in grouped(m.channel)}
        joined = events.join(messages, events.c.message_id == m.message_id)
        touched = sa.func.count(sa.distinct(events.c.message_id))
        buckets = {
            "opened": ("opened",),
            "clicked": ("clicked",),
            "engaged": tuple(ENGAGED_EVENTS),
            "opted_out": ("opted_out",),
            "failed": ("bounced", "failed"),
        }
        for attr, kinds in buckets.items():
            query = (
                sa.select(m.channel, touched.label("n"))
                .select_from(joined)
                .where(*sent, events.c.kind.in_(kinds))
                .group_by(m.channel)
            )
            for row in conn.execute(query):
                entry = engagement.setdefault(row.channel, ChannelEngagement(row.channel))
                setattr(entry, attr, row.n)
        report.delivery = _delivery(conn, messages, events, sent)
        report.nps = nps_scores(record, since=start, conn=conn)
    report.engagement = [engagement[c] for c in sorted(engagement, key=_channel_key)]
    return report


def _delivery(conn: sa.Connection, messages: sa.Table, events: sa.Table,
              where: Sequence[Any]) -> dict[str, list[DeliveryRow]]:
    """Delivery outcomes per channel, template (with version) and journey, counted in SQL."""
    m = messages.c
    joined = events.join(messages, events.c.message_id == m.message_id)
    touched = sa.func.count(sa.distinct(events.c.message_id))
    columns: dict[str, tuple[Any, ...]] = {
        "channel": (m.channel,),
        "template": (m.template, m.template_version),
        "journey": (m.journey,),
    }
    out: dict[str, list[DeliveryRow]] = {}
    for dim, cols in columns.items():
        rows: dict[str, DeliveryRow] = {}

        def label(row: Any, dim: str = dim) -> str:
            if dim == "template":
                return _versioned(row[0], row[1])
            return str(row[0] or "—")

        handed = conn.execute(
            sa.select(*cols, touched.label("n")).select_from(joined)
            .where(*where, events.c.kind.in_(HANDED_OVER)).group_by(*cols)
        )
        for row in handed:
            rows.setdefault(label(row), DeliveryRow(label(row))).sent += row.n
        outcomes = conn.execute(
            sa.select(*cols, events.c.kind, touched.label("n")).select_from(joined)
            .where(*where, events.c.kind.in_(("delivered", "bounced", "complained", "failed")))
            .group_by(*cols, events.c.kind)
        )
        for row in outcomes:
            entry = rows.setdefault(label(row), DeliveryRow(label(row)))
            setattr(entry, row.kind, getattr(entry, row.kind) + row.n)
        key = _channel_key if dim == "channel" else (lambda s: (0, s))
        out[dim] = [rows[k] for k in sorted(rows, key=key)]
    return out
