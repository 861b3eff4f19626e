"""Net Promoter Score from tracked survey clicks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ccm.engagement.nps import (
    latest_score,
    latest_score_in_timeline,
    nps_scores,
    score_from_url,
    summarise,
)
from ccm.record import Record
from tests.record._support import entry


@pytest.mark.parametrize(
    ("url", "score"),
    [
        ("https://acme.example/nps?score=0", 0),
        ("https://acme.example/nps?c=1&score=10&x=y", 10),
        ("https://acme.example/nps?score=7#thanks", 7),
        ("https://acme.example/nps?score=11", None),
        ("https://acme.example/nps?score=-1", None),
        ("https://acme.example/nps?score=07", None),
        ("https://acme.example/nps?score=7.5", None),
        ("https://acme.example/nps?score=3&score=9", None),
        ("https://acme.example/nps?score=", None),
        ("https://acme.example/nps", None),
        ("https://acme.example/nps/score=9", None),
        (None, None),
    ],
)
def test_score_from_url(url: str | None, score: int | None) -> None:
    """Only a single whole 0-10 ``score`` query parameter counts."""
    assert score_from_url(url) == score


def test_summarise_counts_and_nps() -> None:
    """NPS is % promoters (9-10) minus % detractors (0-6), passives (7-8) in the base."""
    result = summarise([10, 9, 8, 7, 6, 0, 9, 9])
    assert result == {
        "responses": 8,
        "promoters": 4,
        "passives": 2,
        "detractors": 2,
        "nps": 25.0,
    }
    assert summarise([])["nps"] is None


@given(st.lists(st.integers(min_value=0, max_value=10), min_size=1))
def test_nps_is_between_minus_and_plus_hundred(scores: list[int]) -> None:
    """Any answers give an NPS within -100..100 and counts that add up."""
    result = summarise(scores)
    assert -100 <= result["nps"] <= 100
    assert result["promoters"] + result["passives"] + result["detractors"] == len(scores)


def _timeline(*clicks: tuple[str, str, str]) -> dict[str, Any]:
    return {
        "customer_id": "C1",
        "summary": {},
        "messages": [
            {
                "message_id": f"m-{i}",
                "template": template,
                "events": [{"kind": "clicked", "at": at, "data": {"url": url}}],
            }
            for i, (template, at, url) in enumerate(clicks)
        ],
    }


def test_latest_answer_in_a_timeline_wins() -> None:
    """The most recent survey click wins; clicks on other templates and bad scores are ignored."""
    timeline = _timeline(
        ("nps_survey", "2026-02-01T10:00:00+00:00", "https://a.example/?score=9"),
        ("nps_survey", "2026-01-01T10:00:00+00:00", "https://a.example/?score=2"),
        ("offer", "2026-03-01T10:00:00+00:00", "https://a.example/?score=0"),
        ("nps_survey", "2026-03-02T10:00:00+00:00", "https://a.example/?score=eleven"),
    )
    assert latest_score_in_timeline(timeline) == 9
    assert latest_score_in_timeline({"messages": []}) is None


# --- scores from a real record ------------------------------------------------------------

T = datetime(2026, 2, 2, 9, 0, tzinfo=UTC)


def answered(record: Record, customer: str, segment: str | None, *clicks: tuple[int, str]) -> str:
    """Append an nps_survey email for ``customer`` and click the given (hours, url) links."""
    survey = entry(customer, template="nps_survey", message_type="operational", created_at=T,
                   segment=segment)
    record.append(survey)
    for hours, url in clicks:
        record.add_event(survey.message_id, "clicked", at=T + timedelta(hours=hours),
                         data={"url": url})
    return survey.message_id


def test_scores_and_nps_per_segment_from_the_record(record_url: str) -> None:
    """The latest click per customer is their score; NPS is per recorded segment and overall."""
    record = Record(record_url)
    answered(record, "A", "retail", (1, "https://s.example/?score=2"), (3, "https://s.example/?score=10"))
    answered(record, "B", "retail", (1, "https://s.example/?score=4"))
    answered(record, "C", "business", (2, "https://s.example/?score=8"), (5, "https://s.example/x"))
    answered(record, "D", None, (1, "https://s.example/?score=9"))
    offer = entry("A", template="offer", created_at=T)
    record.append(offer)
    record.add_event(offer.message_id, "clicked", at=T + timedelta(hours=9),
                     data={"url": "https://s.example/?score=0"})
    result = nps_scores(record)
    assert result["scores"] == {"A": 10, "B": 4, "C": 8, "D": 9}
    assert result["overall"]["nps"] == 25.0
    assert result["segments"]["retail"] == summarise([10, 4])
    assert result["segments"]["business"]["passives"] == 1
    assert set(result["segments"]) == {"retail", "business"}
    assert nps_scores(record, segments={"A": "vip"})["segments"] == {"vip": summarise([10])}
    assert nps_scores(record, since=T + timedelta(hours=2))["scores"] == {"A": 10, "C": 8}
    assert latest_score(record, "A") == 10 and latest_score(record, "nobody") is None
    assert record.timeline("A").summary["nps_score"] == 10
    assert record.timeline("A").summary["segment"] == "retail"
    record.close()
