"""The sandbox attacked from outside: values over the budget that a filter, a method or a
translation made without a BudgetError (found by trying, each one fails without its fix).

Each case is a hostile template (or a template translating request data); the budget must
stop it with the value ``BudgetError`` before the value is used or built.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ccm.cli import main
from ccm.errors import BudgetError
from ccm.render.budget import Budget
from tests.examples_helpers import copy_examples, sample, sample_for_locale
from tests.render.test_sandbox import Sources


@pytest.fixture
def sources(tmp_path: Path) -> Sources:
    return Sources(tmp_path)


@pytest.mark.parametrize(
    "source",
    [
        # int(base=16) has no digit limit: 3,000 hex digits are 12,000 bits.
        "{{ ('f' * 3000)|int(base=16) % 10 }}",
        "{{ ['f' * 3000]|map('int', base=16)|first % 10 }}",
        # int.from_bytes, reached as a method of any integer, from a str's encode().
        "{{ (1).from_bytes(('\\xff' * 2000).encode('latin-1'), 'big') % 10 }}",
    ],
)
def test_an_integer_over_the_bit_budget_from_a_filter_or_method_is_refused(
        sources: Sources, source: str) -> None:
    """Integers are at most 10,000 bits: a quadratic ``x // y`` on two integers of a few
    million bits ran 35 s in one C call, out of the clock's reach, under a 1 s budget."""
    with pytest.raises(BudgetError, match="10000 bits") as caught:
        sources.render(source, budget=Budget(seconds=30.0))
    assert caught.value.context["budget"] == "value"
    assert caught.value.context["line"] == 1


def test_integers_within_the_budget_still_come_from_filters_and_methods(
        sources: Sources) -> None:
    text = sources.render("{{ 'ff'|int(base=16) }} {{ (1).from_bytes('\\x01\\x00'.encode("
                          "'latin-1'), 'big') }} {{ data.rows|length }} {{ 'abcb'.count('b') }}")
    assert text == "255 256 3 2"


def test_escaped_text_made_by_a_method_is_within_the_value_budget(sources: Sources) -> None:
    """``Markup.escape`` makes up to five characters of one (``"`` → ``&#34;``): its
    result is checked like a filter's, not returned at four times the budget."""
    with pytest.raises(BudgetError, match="call result") as caught:
        sources.render("{{ (''|safe).escape('<' * 300000)|length }}",
                       budget=Budget(seconds=30.0))
    assert caught.value.context["budget"] == "value"
    assert sources.render("{{ (''|safe).escape('<a>') }}") == "&lt;a&gt;"


@pytest.mark.parametrize(
    "source",
    [
        "{{ _('%99999999s') }}",
        "{{ gettext('%.99999999f') }}",
        "{{ _(data.name) }}",  # the text to translate is request data
    ],
)
def test_a_translation_without_variables_is_refused_before_it_is_built(
        sources: Sources, source: str) -> None:
    """``_()`` formats its text with ``%`` even without variables (as Jinja's newstyle
    gettext): a width in it is checked first, not after a 100 MB string was built."""
    context = {"data": {"name": "%99999999s"}}
    for suffix in (".txt.j2", ".html.j2"):
        with pytest.raises(BudgetError, match="format width") as caught:
            sources.render(source, context, budget=Budget(seconds=30.0), suffix=suffix)
        assert caught.value.context["budget"] == "value"


def test_a_catalog_translation_with_a_huge_width_is_refused_naming_the_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A catalog's msgstr is the pack's or the template's (``"%999999999s"`` for
    ``_("Payment reminder")``, which has no variables): `ccm render` exits 1 with the
    format width's BudgetError naming the line, not after a gigabyte of text (3 GB of
    memory and 8 s, then the output budget)."""
    pack, templates = copy_examples(tmp_path)
    po = templates / "payment_reminder" / "locales" / "de_DE" / "LC_MESSAGES" / "messages.po"
    text = po.read_text("utf-8")
    assert 'msgstr "Zahlungserinnerung"' in text
    po.write_text(text.replace('msgstr "Zahlungserinnerung"', 'msgstr "%999999999s"'),
                  "utf-8")
    data = tmp_path / "req.json"
    data.write_text(json.dumps(sample_for_locale("payment_reminder", "de")), "utf-8")
    code = main(["render", "payment_reminder", "--pack", str(pack), "--templates",
                 str(templates), "--data", str(data), "--out", str(tmp_path / "out"),
                 "--channel", "email", "--no-record", "--as-of", "2026-06-01T12:00:00+00:00"])
    err = capsys.readouterr().err
    assert code == 1
    assert "payment_reminder/email.mjml.j2:" in err and "format width" in err
    assert "Traceback" not in err


def test_translations_without_variables_still_render(sources: Sources) -> None:
    assert sources.render("{{ _('100%% sure') }} {{ _('Hello') }}") == "100% sure Hello"


def test_cli_refuses_an_integer_over_the_budget_naming_the_template(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`ccm render` of a template that builds a huge integer with from_bytes: exit 1, a
    budget error naming file and line, no traceback, nothing written."""
    pack, templates = copy_examples(tmp_path)
    src = templates / "payment_reminder" / "sms.txt.j2"
    src.write_text(src.read_text("utf-8").replace(
        "{% block content %}",
        "{% block content %}{% set x = (1).from_bytes(('\\xff' * 200000).encode('latin-1'),"
        " 'big') %}{{ x // (x // 3) }}"), "utf-8")
    data = tmp_path / "reqs.json"
    data.write_text(json.dumps(sample("payment_reminder")), "utf-8")
    out = tmp_path / "out"
    code = main(["render", "payment_reminder", "--pack", str(pack), "--templates",
                 str(templates), "--data", str(data), "--out", str(out), "--channel", "sms",
                 "--no-record", "--as-of", "2026-06-01T12:00:00+00:00"])
    err = capsys.readouterr().err
    assert code == 1
    assert "payment_reminder/sms.txt.j2:2" in err and "10000 bits" in err
    assert "Traceback" not in err
    assert not list(out.glob("*.sms.txt")) if out.exists() else True


@pytest.mark.parametrize(
    "source",
    [
        # One string of 100,000 characters, written 100 times into a {% set %} block.
        "{% set big = 'x' * 100000 %}{% set s %}{% for i in range(100) %}{{ big }}"
        "{% endfor %}{% endset %}{{ s|length }}",
        "{% set big = 'x' * 100000 %}{% filter length %}{% for i in range(100) %}{{ big }}"
        "{% endfor %}{% endfilter %}",
        "{% set big = 'x' * 100000 %}{% macro m() %}{% for i in range(100) %}{{ big }}"
        "{% endfor %}{% endmacro %}{{ m()|length }}",
        "{% set big = 'x' * 100000 %}{% macro m() %}{{ caller() }}{% endmacro %}"
        "{% call m() %}{% for i in range(100) %}{{ big }}{% endfor %}{% endcall %}",
    ],
)
def test_text_captured_by_a_block_is_within_the_value_budget(sources: Sources,
                                                             source: str) -> None:
    """A ``{% set %}`` block's text is a value like any other: 100 × 100,000 characters
    are refused before they are joined (it printed 10,000,000; with a loop of a
    hundred thousand, the join alone would have needed 10 GB)."""
    with pytest.raises(BudgetError, match="text captured by a ") as caught:
        sources.render(source, {"data": {}}, budget=Budget(seconds=30.0))
    assert caught.value.context["budget"] == "value"


def test_blocks_macros_and_calls_within_the_budget_still_render(sources: Sources) -> None:
    text = sources.render(
        "{% set s %}a{{ 1 }}{% endset %}{% filter upper %}b{{ s }}{% endfilter %}"
        "{% macro m() %}<{{ caller() }}>{% endmacro %}{% call m() %}c{% endcall %}"
        "{% block d %}d{% endblock %}{{ self.d() }}", {"data": {}})
    assert text == "BA1<c>dd"
