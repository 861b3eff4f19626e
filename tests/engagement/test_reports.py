"""The HTML timeline and organisation report: parsed back, checked for content and escaping."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from ccm.engagement.reports import (
    ChannelEngagement,
    OrgReport,
    bars_svg,
    collect_report,
    org_report_html,
    render_report,
    stacked_columns_svg,
    timeline_html,
    write_timeline_html,
)
from ccm.record import Record
from tests.record._support import entry

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


# --- organisation report (collected from a real record, SQLite and PostgreSQL) -----------


def add_to_record(record: Record, msg: dict[str, Any], segment: str | None) -> None:
    """Append a ``message()`` dict (and its events) to a real record."""
    e = entry(
        msg["customer_id"],
        message_id=msg["message_id"],
        channel=msg["channel"],
        template=msg["template"],
        message_type=msg["message_type"],
        journey=msg["journey"],
        status=msg["status"],
        reason=msg["reason"],
        pack_version=msg["pack_version"],
        created_at=datetime.fromisoformat(msg["created_at"]),
        segment=segment,
    )
    record.append(e)
    for ev in msg["events"]:
        record.add_event(msg["message_id"], ev["kind"], at=datetime.fromisoformat(ev["at"]),
                         data=ev["data"])


@pytest.fixture
def filled(record_url: str) -> Iterator[Record]:
    """Customer C1 (segment gold: sample_timeline) and C2 (silver: a survey answered 2)."""
    store = Record(record_url)
    for msg in sample_timeline()["messages"]:
        add_to_record(store, msg, segment="gold")
    other = message(
        9,
        MON - timedelta(days=30),
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
    add_to_record(store, other, segment="silver")
    yield store
    store.close()


def test_collected_report_counts(filled: Record) -> None:
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


def test_collected_report_since(filled: Record) -> None:
    """--since leaves out older messages and older survey answers."""
    report = collect_report(filled, since=date(2026, 1, 1))
    assert report.sent == 3
    assert report.weeks[0] == "2026-W02"
    assert report.nps["overall"]["responses"] == 1


def figure(html: str, ident: str) -> Page:
    """The ``<figure id=ident>`` of a page, parsed on its own."""
    start = html.index(f'id="{ident}"')
    return Page(html[start:html.index("</figure>", start)])


def test_org_report_page_from_a_record(filled: Record) -> None:
    """The page from a record has a bar per week and a row per template."""
    html = org_report_html(filled, brand=BRAND)
    page = Page(html)
    weeks = [b["data-label"] for b in figure(html, "volume").find("g", "bar")]
    assert len(weeks) == 8 and weeks[0] == "2025-W49" and weeks[-1] == "2026-W04"
    assert "nps_survey@2" in list(page.text_in("td"))


def test_each_breakdown_has_its_volume_per_week(filled: Record) -> None:
    """Type, journey, segment, template and pack each get a weekly stacked chart whose parts add
    up to the messages sent that week."""
    html = org_report_html(filled)
    for ident in ("by-type", "by-journey", "by-segment", "by-template", "by-pack"):
        chart = figure(html, f"{ident}-weekly")
        assert len(chart.find("g", "bar")) == 8, ident
    segments = figure(html, "by-segment-weekly")
    parts = {(p["data-series"]) for p in segments.find("rect", "seg")}
    assert parts == {"gold", "silver"}
    assert [t for t in segments.text_in("li")] == ["gold", "silver"]
    report = collect_report(filled)
    assert report.weekly["segment"] == {("2025-W49", "silver"): 1, ("2026-W02", "gold"): 1,
                                        ("2026-W04", "gold"): 2}
    assert report.weekly["template"][("2026-W04", "nps_survey@2")] == 1


def test_weekly_breakdown_folds_the_small_labels_into_other() -> None:
    """Past the five largest labels, the rest of a breakdown is drawn as "other"."""
    report = sample_report()
    report.by_template = [(f"t{i}@1", 10 - i) for i in range(7)]
    report.weekly = {"template": {("2026-W01", f"t{i}@1"): 10 - i for i in range(7)}}
    chart = figure(render_report(report), "by-template-weekly")
    names = [p["data-series"] for p in chart.find("rect", "seg")]
    assert names == ["t0@1", "t1@1", "t2@1", "t3@1", "t4@1", "other"]
    assert "other: 9" in chart.text  # 5 + 4


def test_collected_report_volume_per_segment(filled: Record) -> None:
    """Sent messages are counted per recorded segment (suppressed ones are not)."""
    report = collect_report(filled)
    assert report.by_segment == [("gold", 3), ("silver", 1)]
    page = Page(render_report(report))
    assert any(a.get("id") == "by-segment" for _, a in page.elements)
    assert "gold" in list(page.text_in("td"))


def test_timeline_page_from_a_record(filled: Record, tmp_path: Path) -> None:
    """The page written from a real record shows the segment, the latest NPS answer and the
    suppression with its rule."""
    written = write_timeline_html(filled, "C1", tmp_path / "c1.html", brand=BRAND)
    page = Page(written.read_text("utf-8"))
    assert [li["data-message-id"] for li in page.find("li", "msg")] == ["m-1", "m-2", "m-3", "m-4"]
    assert "gold" in list(page.text_in("span"))
    assert "9" in [t.strip() for t in page.text_in("div")]
    assert "frequency_cap" in page.text
    assert page.find("svg") and "--primary: #AA3300" in written.read_text("utf-8")


def test_a_record_without_segments_has_no_segment_section(record_url: str) -> None:
    """When no message has a segment, the report leaves the segment breakdown out."""
    with Record(record_url) as record:
        add_to_record(record, message(1, MON), segment=None)
        report = collect_report(record)
    assert report.by_segment is None and report.sent == 1


def test_series_colours_stay_apart_from_the_background_and_each_other() -> None:
    """A pack's panel tint (too close to the background) and a second shade of its primary are
    not used for chart series; its other colours are, and every series differs."""
    brand = {"name": "Pale", "palette": {"primary": "#007C80", "surface": "#E8F6F5",
                                         "accent": "#0A9396", "secondary": "#FF6F59",
                                         "background": "#FFFFFF"}}
    report = sample_report()
    report.by_journey = [(f"j{i}", 10 - i) for i in range(6)]
    report.weekly = {"journey": {("2026-W01", f"j{i}"): 10 - i for i in range(6)}}
    html = render_report(report, brand=brand)
    fills = {p["fill"] for p in figure(html, "by-journey-weekly").find("rect", "seg")}
    assert len(fills) == 6
    assert {"#007C80", "#FF6F59"} <= fills and not {"#E8F6F5", "#0A9396"} & fills


def test_delivery_rates_per_channel_template_and_journey(tmp_path: Path) -> None:
    """The report and the timeline count delivered, bounced and complained messages per
    channel, template and journey, over the messages handed to a transport."""
    from datetime import UTC, datetime

    at = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    with Record(f"sqlite:///{tmp_path / 'r.db'}") as rec:
        ids = []
        for _ in range(4):
            e = entry("C1", channel="email", template="offer", journey="retention",
                      created_at=at)
            rec.append(e)
            ids.append(e.message_id)
        sms = entry("C1", channel="sms", template="reminder", journey="collections",
                    created_at=at)
        rec.append(sms)
        rec.append(entry("C1", channel="email", template="offer", created_at=at))  # never sent
        for mid in [*ids, sms.message_id]:
            rec.add_event(mid, "sent", at=at, data={"provider_id": mid})
        rec.add_event(ids[0], "delivered", at=at)
        rec.add_event(ids[1], "delivered", at=at)
        rec.add_event(ids[1], "complained", at=at, data={"channel": "email"})
        rec.add_event(ids[2], "bounced", at=at, data={"bounce": "hard"})
        rec.add_event(sms.message_id, "delivered", at=at)
        report = collect_report(rec)
        by_channel = {d.label: d for d in report.delivery["channel"]}
        email = by_channel["email"]
        assert (email.sent, email.delivered, email.bounced, email.complained) == (4, 2, 1, 1)
        assert email.label_of("delivered") == "50.0%" and email.label_of("bounced") == "25.0%"
        assert by_channel["sms"].label_of("delivered") == "100.0%"
        templates = {d.label: d.sent for d in report.delivery["template"]}
        assert templates == {"offer@2": 4, "reminder@2": 1}
        assert {d.label for d in report.delivery["journey"]} == {"retention", "collections"}
        page = org_report_html(rec)
        table = page[page.index('id="delivery-channel"'):]
        assert "50.0%" in table[: table.index("</table>")]
        summary = rec.timeline("C1").summary["delivery"]
        assert summary["by_channel"]["email"]["complaint_rate"] == 0.25
        assert summary["by_journey"]["collections"]["delivery_rate"] == 1.0
        timeline = timeline_html(rec.timeline("C1").to_dict())
        assert 'id="delivery-template"' in timeline and "25.0%" in timeline
