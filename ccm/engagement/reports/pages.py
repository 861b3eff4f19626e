"""The HTML pages for people: a customer's timeline and the organisation report.

Both pages are single self-contained files: no JavaScript, no external CSS
or fonts, charts drawn as inline SVG (:mod:`.charts`). Every value that
comes from the record (template names, reasons, URLs, ids) is escaped by
Jinja's autoescape.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from ccm._util import atomic_write
from ccm.engagement.nps import latest_score_in_timeline
from ccm.engagement.reports.charts import (
    _palette,
    _series_colours,
    _truncate,
    bars_svg,
    brand_from_pack,
    share_bars_svg,
    stacked_columns_svg,
)
from ccm.engagement.reports.queries import (
    ENGAGED_EVENTS,
    SUPPRESSED,
    TRACKABLE,
    OrgReport,
    _channel_key,
    _rate,
    _week_range,
    _when,
    collect_report,
    iso_week,
)

__all__ = [
    "org_report_html",
    "render_report",
    "timeline_html",
    "write_report_html",
    "write_timeline_html",
]

#: The record a command opens without ``--record`` or ``$CCM_RECORD_URL``.
DEFAULT_RECORD_URL = "sqlite:///ccm-record.db"
#: Labels drawn in a weekly breakdown chart before the rest become "other".
WEEKLY_SERIES = 5
OTHER = "other"
_NPS_COLOURS = {"detractors": "#C0392B", "passives": "#B8B8B8", "promoters": "#2E8B57"}


@cache
def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(Path(__file__).parent.parent / "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env


def _label(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "—"


def _page_context(brand: Mapping[str, Any] | None) -> dict[str, Any]:
    colours = _palette(brand)
    return {
        "colors": colours,
        "brand_name": str((brand or {}).get("name") or ""),
        "generated_at": _label(datetime.now(UTC)),
    }

# --- the customer timeline ---------------------------------------------------------


def _event_detail(kind: str, data: object) -> str:
    if not isinstance(data, Mapping) or not data:
        return ""
    if kind == "clicked" and isinstance(data.get("url"), str):
        return _truncate(data["url"], 160)
    parts = [f"{k}: {v}" for k, v in data.items()]
    return _truncate("; ".join(parts), 160)


def _timeline_view(timeline: Mapping[str, Any]) -> dict[str, Any]:
    messages = []
    for raw in timeline.get("messages") or ():
        created = _when(raw.get("created_at"))
        events = []
        for event in raw.get("events") or ():
            at = _when(event.get("at"))
            kind = str(event.get("kind", ""))
            events.append(
                {
                    "kind": kind,
                    "at": at,
                    "at_iso": at.isoformat() if at else "",
                    "at_label": _label(at),
                    "detail": _event_detail(kind, event.get("data")),
                    "data": event.get("data"),
                }
            )
        events.sort(key=lambda e: (e["at"] is None, e["at"] or datetime.min.replace(tzinfo=UTC)))
        messages.append(
            {
                "message_id": str(raw.get("message_id", "")),
                "channel": str(raw.get("channel", "")),
                "template": str(raw.get("template", "")),
                "template_version": raw.get("template_version") or "",
                "pack": raw.get("pack") or "",
                "pack_version": raw.get("pack_version") or "",
                "message_type": raw.get("message_type") or "",
                "journey": raw.get("journey") or "",
                "locale": raw.get("locale") or "",
                "status": str(raw.get("status", "")),
                "reason": raw.get("reason") or "",
                "created": created,
                "created_iso": created.isoformat() if created else "",
                "created_label": _label(created),
                "events": events,
            }
        )
    far = datetime.max.replace(tzinfo=UTC)
    messages.sort(key=lambda m: m["created"] or far)
    return {"messages": messages}


def _timeline_summary(messages: list[dict[str, Any]], nps: int | None) -> dict[str, Any]:
    sent = [m for m in messages if m["status"] != SUPPRESSED]
    channels = []
    for channel in sorted({m["channel"] for m in sent}, key=_channel_key):
        mine = [m for m in sent if m["channel"] == channel]
        engaged = sum(1 for m in mine if any(e["kind"] in ENGAGED_EVENTS for e in m["events"]))
        last = max((m["created"] for m in mine if m["created"]), default=None)
        channels.append(
            {
                "channel": channel,
                "sent": len(mine),
                "engaged": engaged,
                "rate_label": _rate(engaged, len(mine), channel),
                "last_contact": _label(last) if last else None,
            }
        )
    trackable = [m for m in sent if m["channel"] in TRACKABLE]
    engaged_all = sum(1 for m in trackable if any(e["kind"] in ENGAGED_EVENTS for e in m["events"]))
    opt_outs = sorted(
        {
            str((e["data"] or {}).get("channel") or m["channel"])
            if isinstance(e["data"], Mapping | None)
            else m["channel"]
            for m in messages
            for e in m["events"]
            if e["kind"] == "opted_out"
        }
    )
    packs = Counter(
        f"{m['pack']}@{m['pack_version']}" if m["pack_version"] else m["pack"]
        for m in sent
        if m["pack"]
    )
    dated = [m["created"] for m in messages if m["created"]]
    return {
        "total": len(messages),
        "sent": len(sent),
        "suppressed": len(messages) - len(sent),
        "channels": channels,
        "types": Counter(m["message_type"] or "—" for m in sent).most_common(),
        "journeys": Counter(m["journey"] or "—" for m in sent).most_common(),
        "packs": sorted(packs.items()),
        "engagement_label": (f"{100 * engaged_all / len(trackable):.0f}%" if trackable else "—"),
        "opt_outs": opt_outs,
        "nps": nps,
        "first": min(dated).date().isoformat() if dated else None,
        "last": max(dated).date().isoformat() if dated else None,
    }


def timeline_html(timeline: Mapping[str, Any], *, brand: Mapping[str, Any] | None = None) -> str:
    """A customer's timeline page from ``Record.timeline(customer_id).to_dict()``.

    Messages in time order with their events, a weekly chart per channel and
    summary cards; ``brand`` is ``{"name": ..., "palette": {...}}`` (see
    :func:`brand_from_pack`).
    """
    view = _timeline_view(timeline)
    messages = view["messages"]
    summary = _timeline_summary(messages, latest_score_in_timeline(timeline))
    recorded = timeline.get("summary")
    summary["segment"] = recorded.get("segment") if isinstance(recorded, Mapping) else None
    recorded_map = recorded if isinstance(recorded, Mapping) else {}
    delivery = recorded_map.get("delivery")
    summary["delivery"] = delivery if isinstance(delivery, Mapping) else {}
    summary["suppressed_channels"] = list(recorded_map.get("suppressed_channels") or [])
    context = _page_context(brand)
    sent = [m for m in messages if m["status"] != SUPPRESSED and m["created"]]
    channels = sorted({m["channel"] for m in sent}, key=_channel_key)
    series = _series_colours(channels, context["colors"])
    volume = Counter((iso_week(m["created"].date()), m["channel"]) for m in sent)
    weeks = _week_range(m["created"].date() for m in sent)
    chart = stacked_columns_svg(weeks, series, volume, title="Messages per week by channel")
    return (
        _environment()
        .get_template("timeline.html.j2")
        .render(
            **context,
            customer_id=str(timeline.get("customer_id", "")),
            messages=messages,
            s=summary,
            series=series,
            chart=chart,
        )
    )

# --- the organisation report ---------------------------------------------------------


def render_report(report: OrgReport, *, brand: Mapping[str, Any] | None = None) -> str:
    """The organisation report page for collected ``report`` data."""
    context = _page_context(brand)
    colours = context["colors"]
    series = _series_colours(report.channels, colours)
    primary = colours["primary"]
    sections = []
    breakdowns: list[tuple[str, str, str, list[tuple[str, int]] | None]] = [
        ("by-type", "By message type", "type", report.by_type),
        ("by-journey", "By journey", "journey", report.by_journey),
        ("by-segment", "By segment", "segment", report.by_segment),
        ("by-template", "By template and version", "template", report.by_template),
        ("by-pack", "By brand pack and version", "pack", report.by_pack),
    ]
    for ident, title, label, rows in breakdowns:
        if rows is None:
            continue
        section: dict[str, Any] = {
            "id": ident,
            "title": title,
            "label": label,
            "rows": rows,
            "chart": bars_svg(rows, title=title, colour=primary),
            "weekly": None,
            "series": [],
        }
        counts = report.weekly.get(label)
        if counts and report.weeks:
            week_series, week_values = _top_series(rows, counts, colours)
            section["series"] = week_series
            section["weekly"] = stacked_columns_svg(
                report.weeks, week_series, week_values, title=f"Messages per week, {title.lower()}"
            )
        sections.append(section)
    nps = report.nps or {"overall": _empty_nps(), "segments": {}}
    nps_rows = [("overall", nps["overall"]), *sorted(nps.get("segments", {}).items())]
    charts = {
        "volume": stacked_columns_svg(
            report.weeks, series, report.volume, title="Messages per week by channel"
        ),
        "suppressions": bars_svg(
            report.suppressions, title="Suppressions by rule", colour=colours["muted"]
        ),
        "nps": share_bars_svg(
            [
                (name, [(part, int(n[part]), _NPS_COLOURS[part]) for part in _NPS_COLOURS])
                for name, n in nps_rows
                if n["responses"]
            ],
            title="NPS answers: detractors, passives, promoters",
        ),
    }
    return (
        _environment()
        .get_template("report.html.j2")
        .render(
            **context,
            r={**report.__dict__, "engagement": report.engagement, "nps": nps},
            series=series,
            sections=sections,
            charts=charts,
            nps_series=list(_NPS_COLOURS.items()),
        )
    )


def _top_series(
    rows: Sequence[tuple[str, int]],
    counts: Mapping[tuple[str, str], int],
    colours: Mapping[str, str],
    limit: int = WEEKLY_SERIES,
) -> tuple[list[tuple[str, str]], dict[tuple[str, str], int]]:
    """Series for a weekly chart of one breakdown: its ``limit`` largest labels, then "other"."""
    pool = colours["_series"].split(",")
    top = [label for label, _ in rows[:limit]]
    series = [(label, pool[i % len(pool)]) for i, label in enumerate(top)]
    values: Counter[tuple[str, str]] = Counter()
    for (week, label), n in counts.items():
        values[(week, label if label in top else OTHER)] += n
    if any(label == OTHER for _, label in values):
        series.append((OTHER, colours["muted"]))
    return series, dict(values)


def _empty_nps() -> dict[str, Any]:
    return {"responses": 0, "promoters": 0, "passives": 0, "detractors": 0, "nps": None}


def org_report_html(
    record: Any, *, since: date | None = None, brand: Mapping[str, Any] | None = None
) -> str:
    """The organisation report page: volumes, breakdowns, suppressions, engagement, NPS."""
    return render_report(collect_report(record, since=since), brand=brand)

# --- files and commands ------------------------------------------------------------------


def write_timeline_html(
    record: Any,
    customer_id: str,
    path: str | os.PathLike[str],
    *,
    brand: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``customer_id``'s timeline page to ``path`` (atomically)."""
    page = timeline_html(record.timeline(customer_id).to_dict(), brand=brand)
    return atomic_write(path, page.encode("utf-8"))


def write_report_html(
    record: Any,
    path: str | os.PathLike[str],
    *,
    since: date | None = None,
    brand: Mapping[str, Any] | None = None,
) -> Path:
    """Write the organisation report to ``path`` (atomically)."""
    return atomic_write(path, org_report_html(record, since=since, brand=brand).encode("utf-8"))


def _open_record(url: str) -> Any:
    from ccm.record import Record

    return Record(url, create=False, read_only=True)


def _brand_option(pack: Path | None) -> dict[str, Any] | None:
    if pack is None:
        return None
    from ccm.pack import load_pack

    return brand_from_pack(load_pack(pack))
