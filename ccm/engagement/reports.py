"""HTML pages for people: a customer's timeline and the organisation report.

Both pages are single self-contained files: no JavaScript, no external CSS
or fonts, charts drawn as inline SVG by the small helpers below. Every value
that comes from the record (template names, reasons, URLs, ids) is escaped:
by Jinja's autoescape in the page, by :func:`markupsafe.escape` in the SVG.
Brand colours are used only when they are ``#RGB`` or ``#RRGGBB``.

* :func:`timeline_html` renders ``Record.timeline(customer).to_dict()``.
* :func:`org_report_html` queries the record (:func:`collect_report`) and
  renders :func:`render_report`.
* ``ccm record timeline --html`` and ``ccm record report`` (:mod:`ccm.cli`)
  call :func:`write_timeline_html` and :func:`write_report_html`.
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup, escape

from ccm._util import atomic_write
from ccm.engagement.nps import latest_score_in_timeline, nps_scores, reading, record_tables

__all__ = [
    "ChannelEngagement",
    "OrgReport",
    "bars_svg",
    "brand_from_pack",
    "collect_report",
    "org_report_html",
    "render_report",
    "share_bars_svg",
    "stacked_columns_svg",
    "timeline_html",
    "write_report_html",
    "write_timeline_html",
]

#: The record a command opens without ``--record`` or ``$CCM_RECORD_URL``.
DEFAULT_RECORD_URL = "sqlite:///ccm-record.db"
#: Channels whose engagement (opens, clicks) can be tracked at all.
TRACKABLE = frozenset({"email", "sms"})
ENGAGED_EVENTS = frozenset({"opened", "clicked"})
SUPPRESSED = "suppressed"
_CHANNEL_ORDER = {"pdf": 0, "email": 1, "sms": 2}
_COLOUR = re.compile(r"#(?:[0-9A-Fa-f]{3}){1,2}")
_DEFAULT_PALETTE = {"primary": "#1F4E79", "text": "#1A1A1A", "background": "#FFFFFF"}
#: Least contrast with the page background for a brand colour to colour a chart series.
_SERIES_CONTRAST = 2.0
#: Least RGB distance between two series colours.
_SERIES_DISTANCE = 64.0
_FALLBACK_SERIES = ("#E07A1F", "#2E8B57", "#8E44AD", "#C0392B", "#16A085", "#7F8C8D")
#: The breakdowns that also get a chart of their volume per week.
WEEKLY_DIMENSIONS = ("type", "journey", "segment", "template", "pack")
#: Labels drawn in a weekly breakdown chart before the rest become "other".
WEEKLY_SERIES = 5
OTHER = "other"
_NPS_COLOURS = {"detractors": "#C0392B", "passives": "#B8B8B8", "promoters": "#2E8B57"}


# --- colours -----------------------------------------------------------------


def _rgb(colour: str) -> tuple[int, int, int]:
    digits = colour[1:]
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    return int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16)


def _hex(rgb: Iterable[float]) -> str:
    return "#" + "".join(f"{max(0, min(255, round(c))):02X}" for c in rgb)


def _mix(a: str, b: str, weight: float) -> str:
    """``weight`` of ``a`` and the rest of ``b``."""
    return _hex(x * weight + y * (1 - weight) for x, y in zip(_rgb(a), _rgb(b), strict=True))


def _luminance(colour: str) -> float:
    def channel(c: int) -> float:
        v = c / 255
        return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in _rgb(colour))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _contrast(a: str, b: str) -> float:
    """WCAG contrast ratio of two colours (1 to 21)."""
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def _palette(brand: Mapping[str, Any] | None) -> dict[str, str]:
    """The page colours: the brand's where valid, the rest derived."""
    given = (brand or {}).get("palette")
    given = given if isinstance(given, Mapping) else {}
    valid = {str(k): v for k, v in given.items() if isinstance(v, str) and _COLOUR.fullmatch(v)}
    colours = {**_DEFAULT_PALETTE, **{k: valid[k] for k in _DEFAULT_PALETTE if k in valid}}
    text, background = colours["text"], colours["background"]
    colours["muted"] = _mix(text, background, 0.6)
    colours["line"] = _mix(text, background, 0.15)
    colours["panel"] = _mix(text, background, 0.03)
    colours["on_primary"] = "#FFFFFF" if _luminance(colours["primary"]) < 0.4 else "#111111"
    # Panel and rule tints (a pack's "surface", "rule") would vanish as chart series.
    extras = [v for k, v in valid.items()
              if k not in _DEFAULT_PALETTE and _contrast(v, background) >= _SERIES_CONTRAST]
    pool: list[str] = []
    for colour in (colours["primary"], *extras, *_FALLBACK_SERIES):
        # Two shades of one brand colour side by side read as one series.
        if all(_distance(colour, kept) >= _SERIES_DISTANCE for kept in pool):
            pool.append(colour.upper())
    colours["_series"] = ",".join(pool)
    return colours


def _distance(a: str, b: str) -> float:
    """Euclidean distance of two colours in RGB (0 to 441)."""
    return math.dist(_rgb(a), _rgb(b))


def _series_colours(names: Sequence[str], colours: Mapping[str, str]) -> list[tuple[str, str]]:
    """A colour per channel, stable across pages: email, pdf, sms take the first three."""
    pool = colours["_series"].split(",")
    fixed = ("email", "pdf", "sms")
    others = sorted(n for n in names if n not in fixed)
    index = {name: i for i, name in enumerate([*fixed, *others])}
    return [(name, pool[index[name] % len(pool)]) for name in names]


def brand_from_pack(pack: Any) -> dict[str, Any]:
    """The ``brand`` mapping for these pages from a :class:`~ccm.pack.BrandPack`."""
    return {"name": pack.name, "palette": dict(pack.palette)}


# --- SVG charts ----------------------------------------------------------------


def _num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _nice_ceiling(value: float) -> int:
    """The smallest 1/2/5 x 10^n at or above ``value`` (at least 1)."""
    if value <= 1:
        return 1
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * magnitude >= value:
            return int(step * magnitude)
    return int(10 * magnitude)  # pragma: no cover - the loop always returns


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def stacked_columns_svg(
    columns: Sequence[str],
    series: Sequence[tuple[str, str]],
    values: Mapping[tuple[str, str], int],
    *,
    title: str,
    width: int = 760,
    height: int = 260,
) -> Markup:
    """Vertical stacked bars: one ``<g class="bar">`` per column, one ``<rect>`` per non-zero part.

    ``series`` is ``[(name, colour)]`` bottom to top; ``values[(column, name)]``
    the height of each part.
    """
    left, right, top, bottom = 40, 8, 10, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    totals = [sum(values.get((col, name), 0) for name, _ in series) for col in columns]
    ceiling = _nice_ceiling(max(totals, default=0))
    band = plot_w / max(len(columns), 1)
    bar_w = min(band * 0.75, 48)
    every = max(1, math.ceil(len(columns) / 12))
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="stacked" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        '<g class="axis" font-size="11" fill="currentColor" fill-opacity=".65">',
    ]
    ticks = (0, ceiling // 2, ceiling) if ceiling % 2 == 0 else (0, ceiling)
    for tick in ticks:
        y = top + plot_h - plot_h * tick / ceiling
        out.append(
            f'<line x1="{left}" x2="{width - right}" y1="{_num(y)}" y2="{_num(y)}" '
            f'stroke="currentColor" stroke-opacity=".15"/>'
            f'<text x="{left - 6}" y="{_num(y + 4)}" text-anchor="end">{_num(tick)}</text>'
        )
    for i, col in enumerate(columns):
        if i % every == 0:
            x = left + band * i + band / 2
            out.append(
                f'<text x="{_num(x)}" y="{height - bottom + 16}" text-anchor="middle">'
                f"{escape(_truncate(col, 14))}</text>"
            )
    out.append("</g>")
    for i, col in enumerate(columns):
        x = left + band * i + (band - bar_w) / 2
        y = top + plot_h
        out.append(f'<g class="bar" data-label="{escape(col)}">')
        for name, colour in series:
            value = values.get((col, name), 0)
            if value <= 0:
                continue
            h = plot_h * value / ceiling
            y -= h
            out.append(
                f'<rect class="seg" data-series="{escape(name)}" x="{_num(x)}" y="{_num(y)}" '
                f'width="{_num(bar_w)}" height="{_num(h)}" fill="{colour}">'
                f"<title>{escape(col)} · {escape(name)}: {value}</title></rect>"
            )
        out.append("</g>")
    out.append("</svg>")
    return Markup("".join(out))


def bars_svg(
    rows: Sequence[tuple[str, int]],
    *,
    title: str,
    colour: str,
    width: int = 420,
    limit: int = 15,
) -> Markup:
    """Horizontal bars, one ``<rect class="bar">`` per row (the ``limit`` largest)."""
    shown = list(rows)[:limit]
    row_h, label_w, pad = 22, 170, 6
    height = max(len(shown), 1) * row_h + 2 * pad
    plot_w = width - label_w - 50
    ceiling = max((v for _, v in shown), default=0) or 1
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="bars" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        '<g font-size="11" fill="currentColor">',
    ]
    for i, (label, value) in enumerate(shown):
        y = pad + i * row_h
        w = plot_w * value / ceiling
        out.append(
            f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end">'
            f"<title>{escape(label)}</title>{escape(_truncate(label, 24))}</text>"
            f'<rect class="bar" x="{label_w}" y="{y + 3}" width="{_num(w)}" height="{row_h - 6}" '
            f'fill="{colour}"><title>{escape(label)}: {value}</title></rect>'
            f'<text x="{_num(label_w + w + 4)}" y="{y + 15}">{value}</text>'
        )
    if not shown:
        out.append(f'<text x="{pad}" y="{pad + 15}" font-style="italic">no data</text>')
    out.append("</g></svg>")
    return Markup("".join(out))


def share_bars_svg(
    rows: Sequence[tuple[str, Sequence[tuple[str, int, str]]]],
    *,
    title: str,
    width: int = 420,
) -> Markup:
    """100% stacked horizontal bars: ``[(label, [(part, count, colour)])]``."""
    row_h, label_w, pad = 24, 120, 6
    height = max(len(rows), 1) * row_h + 2 * pad
    plot_w = width - label_w - 10
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="shares" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        '<g font-size="11" fill="currentColor">',
    ]
    for i, (label, parts) in enumerate(rows):
        y = pad + i * row_h
        total = sum(count for _, count, _ in parts)
        out.append(
            f'<text x="{label_w - 6}" y="{y + 16}" text-anchor="end">'
            f"{escape(_truncate(label, 18))}</text>"
        )
        out.append(f'<g class="bar" data-label="{escape(label)}">')
        x = float(label_w)
        for part, count, colour in parts:
            if count <= 0 or total <= 0:
                continue
            w = plot_w * count / total
            out.append(
                f'<rect class="seg" x="{_num(x)}" y="{y + 3}" width="{_num(w)}" '
                f'height="{row_h - 6}" fill="{colour}"><title>{escape(label)} · '
                f"{escape(part)}: {count} ({_num(100 * count / total)}%)</title></rect>"
            )
            x += w
        out.append("</g>")
    if not rows:
        out.append(f'<text x="{pad}" y="{pad + 15}" font-style="italic">no data</text>')
    out.append("</g></svg>")
    return Markup("".join(out))


# --- shared helpers ------------------------------------------------------------


@cache
def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env


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


def _label(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "—"


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
        """Share of sent messages opened or clicked; ``None`` where untrackable."""
        if self.channel not in TRACKABLE or not self.sent:
            return None
        return self.engaged / self.sent

    @property
    def rate_label(self) -> str:
        return _rate(self.engaged, self.sent, self.channel)


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
        report.nps = nps_scores(record, since=start, conn=conn)
    report.engagement = [engagement[c] for c in sorted(engagement, key=_channel_key)]
    return report


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
