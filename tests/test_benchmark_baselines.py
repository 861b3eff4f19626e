"""The benchmarks' naive loops write ccm's text, with Babel as a developer would call it.

``benchmarks/`` prints ratios of ccm against naive loops (docs/performance.md).
Those loops must not borrow ccm's own formatters (they would be credited with
ccm's work) and must render the very text ccm renders (or the ratio compares
unlike things). CI does not run the benchmarks; this keeps their baseline honest.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture(scope="module")
def common() -> Any:
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import _common
    finally:
        sys.path.remove(str(BENCHMARKS))
    return _common


@pytest.mark.parametrize(("template", "channel"), [
    ("payment_reminder", "sms"), ("payment_reminder", "email"), ("monthly_statement", "pdf"),
])
def test_naive_loop_writes_what_ccm_filters_write(common: Any, template: str,
                                                  channel: str) -> None:
    """Every sample (five locales, long and hostile data) renders the same with both filters."""
    requests = list(common.requests_for(template, 10))
    contexts = common.naive_contexts(template, channel, requests)
    template_ = common.naive_template(template, channel, contexts)
    assert template_.render(contexts[0])


def test_the_check_fails_when_the_naive_filters_differ(common: Any, monkeypatch: Any) -> None:
    """A developer filter that formats money differently is caught before any timing."""
    filters = common.developer_filters()
    monkeypatch.setattr(common, "developer_filters",
                        lambda: {**filters, "money": lambda amount, currency: f"{amount}"})
    contexts = common.naive_contexts("payment_reminder", "sms",
                                     list(common.requests_for("payment_reminder", 2)))
    with pytest.raises(RuntimeError, match="other text than ccm's"):
        common.naive_template("payment_reminder", "sms", contexts)


def test_naive_filters_are_babel_not_ccm(common: Any) -> None:
    """No naive filter is one of ccm's own (ccm remembers Babel's patterns; Babel does not)."""
    from ccm.render.i18n import FILTERS

    mine = common.developer_filters()
    assert set(mine) == set(FILTERS)
    assert not set(map(id, mine.values())) & set(map(id, FILTERS.values()))
    for fn in mine.values():
        assert not getattr(fn, "__module__", "").startswith("ccm")


def test_the_check_fails_without_the_translations(common: Any, monkeypatch: Any) -> None:
    """A naive loop that leaves German and Arabic customers' text in English is caught."""
    from babel.support import NullTranslations

    monkeypatch.setattr(common, "developer_translations", lambda *_: NullTranslations())
    contexts = common.naive_contexts("payment_reminder", "sms",
                                     list(common.requests_for("payment_reminder", 5)))
    with pytest.raises(RuntimeError, match=r"other text than ccm's .*\(de_DE\)"):
        common.naive_template("payment_reminder", "sms", contexts)

