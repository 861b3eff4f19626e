"""Net Promoter Score from tracked survey clicks.

An ``nps_survey`` email carries eleven links, one per score, each with a
``score`` query parameter (``...?score=0`` to ``...?score=10``). When
tracking is on, every link is a signed click URL, so the record holds a
``clicked`` event with ``{"url": ...}`` for each answer. This module turns
those events into scores: a customer's latest answer wins, and

    NPS = % promoters (9-10) - % detractors (0-6)

overall and per segment. Anything that is not a whole number from 0 to 10
is ignored.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from ccm.record.stored import Unreadable, moment
from ccm.record.views import NPS_TEMPLATE, score_from_url

__all__ = [
    "NPS_TEMPLATE",
    "latest_score",
    "latest_score_in_timeline",
    "nps_scores",
    "record_tables",
    "score_from_url",
    "summarise",
]

def summarise(scores: Iterable[int]) -> dict[str, Any]:
    """Counts and NPS (``None`` without answers) for some 0-10 scores."""
    promoters = passives = detractors = 0
    for score in scores:
        if score >= 9:
            promoters += 1
        elif score >= 7:
            passives += 1
        else:
            detractors += 1
    responses = promoters + passives + detractors
    nps = round(100 * (promoters - detractors) / responses, 1) if responses else None
    return {
        "responses": responses,
        "promoters": promoters,
        "passives": passives,
        "detractors": detractors,
        "nps": nps,
    }


def _as_datetime(value: object) -> datetime | None:
    """A stored timestamp (:func:`ccm.record.stored.moment`), or None where it is none."""
    try:
        return moment(value)
    except Unreadable:
        return None


def _sort_key(at: datetime | None) -> tuple[int, float]:
    if at is None:
        return (0, 0.0)
    return (1, at.timestamp())


def latest_score_in_timeline(
    timeline: Mapping[str, Any], *, template: str = NPS_TEMPLATE
) -> int | None:
    """The customer's latest survey answer in a ``Timeline.to_dict()``, or ``None``."""
    best: tuple[tuple[int, float], int] | None = None
    for message in timeline.get("messages") or ():
        if message.get("template") != template:
            continue
        for event in message.get("events") or ():
            if event.get("kind") != "clicked":
                continue
            data = event.get("data") or {}
            score = score_from_url(data.get("url") if isinstance(data, Mapping) else None)
            if score is None:
                continue
            key = _sort_key(_as_datetime(event.get("at")))
            if best is None or key >= best[0]:
                best = (key, score)
    return None if best is None else best[1]


@contextmanager
def reading(record: Any, conn: sa.Connection | None = None) -> Iterator[sa.Connection]:
    """``conn`` when given, else one read-only snapshot of the record (``Record.snapshot``)."""
    if conn is not None:
        yield conn
        return
    snapshot = getattr(record, "snapshot", None)
    if snapshot is not None:
        with snapshot() as opened:
            yield opened
        return
    with record.engine.connect() as opened:  # pragma: no cover - a record without snapshot()
        yield opened


def record_tables(record: Any) -> tuple[sa.Engine, sa.Table, sa.Table]:
    """The record's SQLAlchemy engine and its messages and events tables."""
    from ccm.record import schema

    return record.engine, schema.messages, schema.events


def _event_data(value: object) -> Mapping[str, Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return value if isinstance(value, Mapping) else {}


def _answers(
    record: Any,
    *,
    template: str,
    customer_id: str | None = None,
    since: datetime | None = None,
    conn: sa.Connection | None = None,
) -> dict[str, tuple[datetime, int, str | None]]:
    """``{customer_id: (answered_at, score, segment)}``, the latest answer per customer."""
    _engine, messages, events = record_tables(record)
    segment = messages.c.segment if "segment" in messages.c else sa.null()
    query = (
        sa.select(messages.c.customer_id, segment.label("segment"), events.c.at, events.c.data)
        .select_from(events.join(messages, events.c.message_id == messages.c.message_id))
        .where(messages.c.template == template, events.c.kind == "clicked")
    )
    if customer_id is not None:
        query = query.where(messages.c.customer_id == customer_id)
    if since is not None:
        query = query.where(events.c.at >= since)
    latest: dict[str, tuple[datetime, int, str | None]] = {}
    with reading(record, conn) as opened:
        for row in opened.execute(query):
            score = score_from_url(_event_data(row.data).get("url"))
            at = _as_datetime(row.at)
            if score is None or at is None:
                continue
            at = at if at.tzinfo else at.replace(tzinfo=UTC)
            known = latest.get(row.customer_id)
            if known is None or at >= known[0]:
                latest[row.customer_id] = (at, score, row.segment)
    return latest


def nps_scores(
    record: Any,
    *,
    segments: Mapping[str, str] | None = None,
    since: datetime | None = None,
    template: str = NPS_TEMPLATE,
    conn: sa.Connection | None = None,
) -> dict[str, Any]:
    """Scores and NPS from the record's survey clicks (in ``conn``'s snapshot when given).

    Returns ``{"overall": summary, "segments": {segment: summary},
    "scores": {customer_id: score}}`` where a summary is what
    :func:`summarise` returns. A customer's segment comes from ``segments``
    when given, else from the record's ``segment`` column (customers without
    one count overall only). ``since`` ignores older answers.
    """
    answers = _answers(record, template=template, since=since, conn=conn)
    by_segment: dict[str, list[int]] = {}
    for customer, (_, score, recorded) in answers.items():
        segment = segments.get(customer) if segments is not None else recorded
        if segment:
            by_segment.setdefault(str(segment), []).append(score)
    return {
        "overall": summarise(score for _, score, _ in answers.values()),
        "segments": {name: summarise(scores) for name, scores in sorted(by_segment.items())},
        "scores": {customer: score for customer, (_, score, _) in sorted(answers.items())},
    }


def latest_score(record: Any, customer_id: str, *, template: str = NPS_TEMPLATE) -> int | None:
    """The customer's latest 0-10 survey answer in the record, or ``None``."""
    answer = _answers(record, template=template, customer_id=customer_id).get(customer_id)
    return None if answer is None else answer[1]
