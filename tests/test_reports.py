"""The HTML timeline and organisation report: parsed back, checked for content and escaping."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser
from typing import Any

import pytest
import sqlalchemy as sa

import ccm.nps
import ccm.reports
from ccm.reports import (
    ChannelEngagement,
    OrgReport,
    bars_svg,
    collect_report,
    org_report_html,
    render_report,
    stacked_columns_svg,
    timeline_html,
)

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'
BRAND = {
    "name": "Acme & Co",
    "palette": {"primary": "#AA3300", "text": "#222222", "background": "#FFFFFF"},
}


class Page(HTMLParser):
    """Every element of a page with its attributes, and the text inside each element."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.stack: list[tuple[str, dict[str, str | None]]] = []
        self.texts: list[tuple[tuple[str, ...], str]] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = (tag, dict(attrs))
        self.elements.append(element)
        if tag not in {"meta", "link", "img", "br", "input", "use", "line", "path", "circle"}:
            self.stack.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                break

    def handle_data(self, data: str) -> None:
        self.texts.append((tuple(t for t, _ in self.stack), data))

    def find(self, tag: str, cls: str | None = None) -> list[dict[str, str | None]]:
        return [
            attrs
            for t, attrs in self.elements
            if t == tag and (cls is None or cls in (attrs.get("class") or "").split())
        ]

    @property
    def text(self) -> str:
        return " ".join(data for _, data in self.texts)

    def text_in(self, tag: str) -> Iterator[str]:
        return (data for tags, data in self.texts if tag in tags)


def message(
    n: int,
    when: datetime,
    *,
    channel: str = "email",
    template: str = "offer",
    status: str = "generated",
    events: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "message_id": f"m-{n}",
        "customer_id": "C1",
        "channel": channel,
        "template": template,
        "template_version": "2",
        "pack": "acme",
        "pack_version": extra.pop("pack_version", "1.0"),
        "message_type": extra.pop("message_type", "marketing"),
        "journey": extra.pop("journey", "retention"),
        "locale": "en_GB",
        "created_at": when.isoformat(),
        "status": status,
        "reason": extra.pop("reason", None),
        "events": events or [],
        **extra,
    }


MON = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)  # Monday of ISO week 2026-W02


def sample_timeline() -> dict[str, Any]:
    return {
        "customer_id": "C1",
        "summary": {},
        "messages": [
            message(
                3,
                MON + timedelta(days=15),
                channel="sms",
                status="suppressed",
                reason="frequency_cap",
            ),
            message(
                1,
                MON,
                events=[
                    {"kind": "opened", "at": (MON + timedelta(hours=1)).isoformat(), "data": None},
                    {
                        "kind": "clicked",
                        "at": (MON + timedelta(hours=2)).isoformat(),
                        "data": {"url": "https://acme.example/offer"},
                    },
                ],
            ),
            message(
                2,
                MON + timedelta(days=14),
                channel="pdf",
                template="statement",
                message_type="operational",
                journey="servicing",
                pack_version="1.1",
            ),
            message(
                4,
                MON + timedelta(days=16),
                template="nps_survey",
                events=[
                    {
                        "kind": "clicked",
                        "at": (MON + timedelta(days=17)).isoformat(),
                        "data": {"url": "https://acme.example/nps?score=3"},
                    },
                    {
                        "kind": "clicked",
                        "at": (MON + timedelta(days=18)).isoformat(),
                        "data": {"url": "https://acme.example/nps?score=9"},
                    },
                    {
                        "kind": "opted_out",
                        "at": (MON + timedelta(days=19)).isoformat(),
                        "data": {"channel": "email"},
                    },
                ],
            ),
        ],
    }


# --- timeline ------------------------------------------------------------------------


def test_timeline_lists_every_message_in_time_order() -> None:
    """Each message appears once, oldest first, with its id, template and status."""
    page = Page(timeline_html(sample_timeline()))
    items = page.find("li", "msg")
    assert [i["data-message-id"] for i in items] == ["m-1", "m-2", "m-3", "m-4"]
    assert "frequency_cap" in page.text
    assert "statement" in page.text
    assert [t["datetime"] for t in page.find("time")][:3] == [
        MON.isoformat(),
        (MON + timedelta(hours=1)).isoformat(),
        (MON + timedelta(hours=2)).isoformat(),
    ]


def test_timeline_shows_events_with_their_details() -> None:
    """Opens, clicks (with URL) and opt-outs show under their message."""
    page = Page(timeline_html(sample_timeline()))
    badges = [b for b in page.text_in("ul") if b in {"opened", "clicked", "opted_out"}]
    assert badges == ["opened", "clicked", "clicked", "clicked", "opted_out"]
    assert "https://acme.example/offer" in page.text


def test_timeline_chart_has_a_bar_per_week_and_a_part_per_channel() -> None:
    """The weekly chart spans W02..W04 (three bars, W03 empty) with one part per channel sent."""
    page = Page(timeline_html(sample_timeline()))
    bars = page.find("g", "bar")
    assert [b["data-label"] for b in bars] == ["2026-W02", "2026-W03", "2026-W04"]
    parts = page.find("rect", "seg")
    # W02 email; W04 pdf + email (nps); the suppressed sms is not volume.
    assert [p["data-series"] for p in parts] == ["email", "pdf", "email"]


def test_timeline_summary_cards() -> None:
    """Counts, engagement per channel, pack versions and the latest NPS answer are shown."""
    page = Page(timeline_html(sample_timeline()))
    text = page.text
    assert page.find("div", "nps-score")
    assert "9" in list(page.text_in("div"))
    assert "promoter" in text
    assert "acme@1.0" in text and "acme@1.1" in text
    rows = page.find("table", "channels")
    assert rows
    assert "100.0%" in text  # both emails engaged
    assert "1 suppressed" in " ".join(text.split())


def test_timeline_escapes_hostile_values() -> None:
    """Template names, reasons, URLs and ids from the record cannot inject markup."""
    hostile = sample_timeline()
    hostile["customer_id"] = HOSTILE
    for m in hostile["messages"]:
        m["template"] = HOSTILE
        m["reason"] = HOSTILE
        m["journey"] = HOSTILE
        m["message_id"] = HOSTILE
        m["channel"] = HOSTILE if m["channel"] == "sms" else m["channel"]
    hostile["messages"][1]["events"][1]["data"]["url"] = "javascript:" + HOSTILE
    html = timeline_html(hostile, brand={"name": HOSTILE, "palette": {"primary": "red;}</style>"}})
    page = Page(html)
    assert not page.find("script")
    assert not page.find("img")
    assert all("onerror" not in attrs for _, attrs in page.elements)
    assert HOSTILE in page.text
    assert "</style>" not in html.split("<style>", 1)[1].split("</style>", 1)[0]


def test_timeline_uses_the_brand_colours() -> None:
    """A brand palette becomes the page's colours and the brand name its header."""
    html = timeline_html(sample_timeline(), brand=BRAND)
    assert "--primary: #AA3300;" in html
    assert "Acme & Co" in Page(html).text
    assert any(r.get("fill") == "#AA3300" for r in Page(html).find("rect", "seg"))


def test_empty_timeline_renders() -> None:
    """A customer with no messages gets a page that says so, with an empty chart."""
    page = Page(timeline_html({"customer_id": "C0", "summary": {}, "messages": []}))
    assert "No messages recorded" in page.text
    assert page.find("svg", "stacked")
    assert not page.find("g", "bar")


# --- charts --------------------------------------------------------------------------


def test_stacked_columns_scale_to_the_tallest_bar() -> None:
    """The tallest column fills the plot; parts stack in series order, bottom first."""
    svg = stacked_columns_svg(
        ["a", "b"],
        [("x", "#111111"), ("y", "#222222")],
        {("a", "x"): 3, ("a", "y"): 2, ("b", "x"): 1},
        title="t",
        height=260,
    )
    page = Page(str(svg))
    rects = page.find("rect", "seg")
    heights = [float(r["height"] or 0) for r in rects]
    assert len(rects) == 3
    plot = 260 - 10 - 34
    assert heights[0] + heights[1] == pytest.approx(plot * 5 / 5)
    assert float(rects[1]["y"] or 0) < float(rects[0]["y"] or 0)


def test_bar_chart_has_one_bar_per_row_up_to_the_limit() -> None:
    """bars_svg draws one bar per row, the longest for the largest value."""
    rows = [(f"t{i}", 20 - i) for i in range(20)]
    page = Page(str(bars_svg(rows, title="t", colour="#123456", limit=15)))
    bars = page.find("rect", "bar")
    assert len(bars) == 15
    assert float(bars[0]["width"] or 0) == max(float(b["width"] or 0) for b in bars)


# --- organisation report (rendering) ---------------------------------------------------


def sample_report() -> OrgReport:
    weeks = ["2026-W01", "2026-W02", "2026-W03"]
    return OrgReport(
        since=date(2026, 1, 1),
        sent=9,
        suppressed=2,
        customers=4,
        weeks=weeks,
        volume={("2026-W01", "email"): 3, ("2026-W01", "pdf"): 2, ("2026-W03", "sms"): 4},
        channels=["pdf", "email", "sms"],
        by_type=[("marketing", 7), ("operational", 2)],
        by_journey=[("retention", 9)],
        by_segment=[("gold", 5), ("silver", 4)],
        by_template=[(f"{HOSTILE}@1", 5), ("statement@3", 4)],
        by_pack=[("acme@1.0", 9)],
        suppressions=[("frequency_cap", 2)],
        engagement=[
            ChannelEngagement("email", sent=3, opened=2, clicked=1, engaged=2),
            ChannelEngagement("pdf", sent=2),
        ],
        nps={
            "overall": {"responses": 2, "promoters": 1, "passives": 0, "detractors": 1, "nps": 0.0},
            "segments": {
                "gold": {
                    "responses": 1,
                    "promoters": 1,
                    "passives": 0,
                    "detractors": 0,
                    "nps": 100.0,
                }
            },
            "scores": {},
        },
    )


def test_report_renders_every_section_with_charts() -> None:
    """Volume, breakdowns, suppressions, engagement and NPS each have a table and a chart."""
    page = Page(render_report(sample_report(), brand=BRAND))
    assert len(page.find("g", "bar")) == 3 + 2  # three weeks, overall + gold NPS
    volume = [p["data-series"] for p in page.find("rect", "seg") if p.get("data-series")]
    assert volume == ["pdf", "email", "sms"]
    for section in ("by-type", "by-journey", "by-segment", "by-template", "by-pack"):
        assert page.find("div", None) and any(a.get("id") == section for _, a in page.elements)
    assert len(page.find("rect", "bar")) == 2 + 1 + 2 + 2 + 1 + 1
    text = " ".join(page.text.split())
    assert "66.7%" in text  # email engagement
    assert "frequency_cap" in text


def test_report_without_segments_leaves_the_section_out() -> None:
    """When the record has no segments, there is no segment section."""
    report = sample_report()
    report.by_segment = None
    page = Page(render_report(report))
    assert not any(a.get("id") == "by-segment" for _, a in page.elements)


def test_report_escapes_hostile_template_names() -> None:
    """A hostile template name is shown as text in the table and the SVG, never as markup."""
    page = Page(render_report(sample_report()))
    assert not page.find("script")
    assert not page.find("img")
    assert sum(HOSTILE[:24] in t for t in page.text_in("svg")) >= 1
    assert f"{HOSTILE}@1" in list(page.text_in("td"))


# --- organisation report (collected from a record) --------------------------------------
# TEMPORARY: a stand-in record with the expected tables, until ccm.record exists.


class StandIn:
    def __init__(self) -> None:
        self.engine = sa.create_engine("sqlite://")
        meta = sa.MetaData()
        self.messages = sa.Table(
            "messages",
            meta,
            sa.Column("message_id", sa.String, primary_key=True),
            *(
                sa.Column(name, sa.String)
                for name in [
                    "customer_id",
                    "channel",
                    "template",
                    "template_version",
                    "pack",
                    "pack_version",
                    "message_type",
                    "journey",
                    "locale",
                    "status",
                    "reason",
                    "segment",
                ]
            ),
            sa.Column("created_at", sa.DateTime(timezone=True)),
        )
        self.events = sa.Table(
            "events",
            meta,
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("message_id", sa.String),
            sa.Column("kind", sa.String),
            sa.Column("at", sa.DateTime(timezone=True)),
            sa.Column("data", sa.JSON),
        )
        meta.create_all(self.engine)

    def add(self, msg: dict[str, Any], segment: str | None = None) -> None:
        row = {k: v for k, v in msg.items() if k in self.messages.c and k != "created_at"}
        row["created_at"] = datetime.fromisoformat(msg["created_at"])
        row["segment"] = segment
        with self.engine.begin() as conn:
            conn.execute(self.messages.insert().values(**row))
            for e in msg["events"]:
                conn.execute(
                    self.events.insert().values(
                        message_id=msg["message_id"],
                        kind=e["kind"],
                        at=datetime.fromisoformat(e["at"]),
                        data=e["data"],
                    )
                )


@pytest.fixture
def filled(monkeypatch: pytest.MonkeyPatch) -> StandIn:
    store = StandIn()
    monkeypatch.setattr(ccm.nps, "record_tables", lambda r: (r.engine, r.messages, r.events))
    monkeypatch.setattr(ccm.reports, "record_tables", lambda r: (r.engine, r.messages, r.events))
    for msg in sample_timeline()["messages"]:
        store.add(msg, segment="gold")
    other = message(
        9,
        MON - timedelta(days=30),
        customer_id="C2",
        template="nps_survey",
        events=[
            {
                "kind": "clicked",
                "at": (MON - timedelta(days=29)).isoformat(),
                "data": {"url": "https://acme.example/nps?score=2"},
            }
        ],
    )
    other["customer_id"] = "C2"
    store.add(other, segment="silver")
    return store


def test_collected_report_counts(filled: StandIn) -> None:
    """Volumes, breakdowns, suppressions, engagement and NPS are counted from the record."""
    report = collect_report(filled)
    assert (report.sent, report.suppressed, report.customers) == (4, 1, 2)
    assert report.weeks[0] == "2025-W49" and report.weeks[-1] == "2026-W04"
    assert report.volume[("2026-W04", "email")] == 1
    assert report.by_template[0] == ("nps_survey@2", 2)
    assert report.suppressions == [("frequency_cap", 1)]
    email = next(e for e in report.engagement if e.channel == "email")
    assert (email.sent, email.opened, email.clicked, email.engaged, email.opted_out) == (
        3,
        1,
        3,
        3,
        1,
    )
    assert report.nps["overall"]["responses"] == 2
    assert report.nps["segments"]["gold"]["nps"] == 100.0
    assert report.nps["segments"]["silver"]["nps"] == -100.0


def test_collected_report_since(filled: StandIn) -> None:
    """--since leaves out older messages and older survey answers."""
    report = collect_report(filled, since=date(2026, 1, 1))
    assert report.sent == 3
    assert report.weeks[0] == "2026-W02"
    assert report.nps["overall"]["responses"] == 1


def test_org_report_page_from_a_record(filled: StandIn) -> None:
    """The page from a record has a bar per week and a row per template."""
    page = Page(org_report_html(filled, brand=BRAND))
    weeks = [b for b in page.find("g", "bar") if (b.get("data-label") or "").startswith("20")]
    assert len(weeks) == 8  # 2025-W49 .. 2026-W04
    assert "nps_survey@2" in list(page.text_in("td"))
