"""Colours and inline SVG charts for the report pages (no JavaScript, nothing fetched).

Brand colours are used only when they are ``#RGB`` or ``#RRGGBB``; every
label drawn in a chart is escaped with :func:`markupsafe.escape`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from markupsafe import Markup, escape

__all__ = ["bars_svg", "brand_from_pack", "share_bars_svg", "stacked_columns_svg"]

_COLOUR = re.compile(r"#(?:[0-9A-Fa-f]{3}){1,2}")
_DEFAULT_PALETTE = {"primary": "#1F4E79", "text": "#1A1A1A", "background": "#FFFFFF"}
#: Least contrast with the page background for a brand colour to colour a chart series.
_SERIES_CONTRAST = 2.0
#: Least RGB distance between two series colours.
_SERIES_DISTANCE = 64.0
_FALLBACK_SERIES = ("#E07A1F", "#2E8B57", "#8E44AD", "#C0392B", "#16A085", "#7F8C8D")


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
