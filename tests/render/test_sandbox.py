"""ccm's sandbox: bounded arithmetic, time budgets, data-only output, nesting limits.

Every hostile template here must end in a ccm error that names the template
file and line -- never a raw Python exception, never a hang, never a repr.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ccm.errors import BudgetError, CCMError, RenderError, SandboxError, TemplateSyntaxError
from ccm.render.budget import Budget
from ccm.render.environment import create_environment, render_source

DATA = {"data": {"name": "Eleanor Whitfield", "rows": [1, 2, 3], "n": 3}}


class Sources:
    """Writes sources into a templates folder and renders them under a short budget."""

    def __init__(self, tmp_path: Path) -> None:
        self.layouts = tmp_path / "pack" / "layouts"
        self.templates = tmp_path / "templates"
        self.layouts.mkdir(parents=True)
        (self.templates / "t").mkdir(parents=True)
        self.count = 0

    def render(self, source: str, context: dict[str, Any] | None = None,
               budget: Budget | None = None, suffix: str = ".txt.j2") -> str:
        self.count += 1
        name = f"s{self.count}{suffix}"
        (self.templates / "t" / name).write_text(source, "utf-8")
        env = create_environment(self.layouts, self.templates, self.layouts.parent)
        meter = (budget or Budget(seconds=2.0)).start()
        return render_source(env, f"templates/t/{name}", context or DATA, meter=meter).text


@pytest.fixture
def sources(tmp_path: Path) -> Sources:
    return Sources(tmp_path)


@pytest.mark.parametrize(
    ("source", "error", "words"),
    [
        ("{{ 10 ** (10 ** 8) }}", BudgetError, "bits"),
        ("{{ 'A' * 10**9 }}", BudgetError, "repetition"),
        ("{{ [1] * 10**9 }}", BudgetError, "repetition"),
        ("{{ 'x'.ljust(10**9) }}", BudgetError, "budget"),
        ("{{ '{:>999999999}'.format(1) }}", BudgetError, "format width"),
        ("{{ '%0999999999d' % 1 }}", BudgetError, "format width"),
        ("{{ 'x'|center(10**9) }}", BudgetError, "center"),
        ("{{ lipsum(1000000) }}", BudgetError, "lipsum"),
        ("{{ range(500000)|list }}", BudgetError, "range"),
        ("{% set ns = namespace(s='xx') %}{% for i in range(60) %}"
         "{% set ns.s = ns.s ~ ns.s %}{% endfor %}", BudgetError, "concatenation"),
        ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", BudgetError, "recursion"),
    ],
)
def test_arithmetic_and_repetition_are_bounded(sources: Sources, source: str,
                                               error: type[CCMError], words: str) -> None:
    """Large powers, repetitions, widths, lipsum, range and doubling fail before building."""
    with pytest.raises(error, match=words) as caught:
        sources.render(source)
    assert caught.value.context["path"].endswith(".txt.j2")
    assert caught.value.context.get("line") == 1


def test_nested_loops_stop_at_the_time_budget(sources: Sources) -> None:
    """Two nested loops over range(99999) that write nothing stop with a time BudgetError."""
    source = "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}"
    with pytest.raises(BudgetError, match="time budget") as caught:
        sources.render(source, budget=Budget(seconds=0.3))
    assert caught.value.context["budget"] == "time"


@pytest.mark.parametrize(
    "source",
    [
        "{{ lipsum }}", "{{ range }}", "{{ cycler }}", "{{ cycler(1, 2) }}", "{{ joiner }}",
        "{{ namespace(a=1) }}", "{{ _(lipsum) }}", "{{ _('%(x)s', x=range) }}",
        "{% trans x=range %}{{ x }}{% endtrans %}", "{{ lipsum ~ '' }}", "{{ [lipsum]|join }}",
        "{{ lipsum|string }}", "{{ '%s' % lipsum }}", "{{ '{}'.format(range) }}",
        "{{ data.items }}", "{{ [data.items] }}", "{{ dict }}",
        "{{ (''.upper ~ '')|lower }}", "{{ [range]|iban }}",
        # a second helper's attack: what a format field reaches, filter arguments after
        # the first, values nested past the old depth limit, template objects
        "{{ '{0.upper}'.format('x') }}",
        "{{ '{rows.index}'.format_map(data) }}", "{{ ('{0.upper}'|safe).format('x') }}",
        "{% block b %}{% endblock %}{{ '{b}'.format_map(self) }}",
        "{{ [1, 2]|join(lipsum) }}", "{{ data.rows|join(cycler) }}",
        "{{ 'a'|replace('a', ''.upper) }}", "{{ [1]|map('replace', '1', lipsum)|join }}",
        "{% filter join(lipsum) %}ab{% endfilter %}",
        "{{ 'see http://x.com'|urlize(target=data.keys) }}",
        "{{ [[[[[[[[[[lipsum]]]]]]]]]] }}", "{{ [[[[[[[[[[lipsum]]]]]]]]]]|string }}",
        "{{ (([0] * 10000 + [cycler])|string)[-40:] }}",
        # a third attack: str and Markup methods turn their arguments into text
        "{{ ('x'|safe).escape(lipsum) }}", "{{ ('x'|e).escape(cycler(1)) }}",
        "{{ ('-'|safe).join([lipsum, 1]) }}", "{{ ('ab'|safe).replace('a', lipsum) }}",
    ],
)
def test_printing_a_non_data_object_is_an_error(sources: Sources, source: str) -> None:
    """Functions, classes and Jinja objects are never rendered as their repr."""
    with pytest.raises(SandboxError, match="not data"):
        sources.render(source)


@pytest.mark.parametrize(
    "source",
    [
        "{{ data.rows|map('abs') }}", "{{ data.rows|reverse }}", "{{ data.rows|select }}",
        "{{ data.rows|batch(2) }}", "{{ data|items }}", "{{ range(3) }}", "{{ data.keys() }}",
        "{{ [data.rows|map('abs')] }}", "{{ data.rows|reverse|upper }}",
        "{{ data.rows|reverse ~ '' }}", "{{ '%s'|format(data.rows|reverse) }}",
        "{{ '%(a)s'|format(a=data.rows|reverse) }}", "{{ '{}'.format(data.rows|unique) }}",
        "{{ _('%(x)s', x=data.rows|reverse) }}", "{{ [data.rows|reverse]|join }}",
        # found by atheris in CI: the generator's repr reached the output
        "{{ data.rows|map(attribute='__class__') }}",
        # literals alone: Jinja folded ``~`` at compile time and printed the repr
        "{{ [1]|reverse ~ '' }}", "{{ [[1]|reverse] ~ '' }}", "{{ (1, 2)|reverse ~ '' }}",
        "{{ [1, 2]|batch(1) ~ '' }}", "{{ 'a' ~ ([1]|reverse) ~ 'b' }}",
        # ... and inside any expression (Jinja's optimizer folded those): found by a helper
        "{{ ([1]|reverse ~ '') or 'x' }}", "{{ ({}|items ~ '') if true }}",
        "{{ ([1, 2]|batch(1) ~ '')|upper }}", "{{ data.n and ([1]|reverse ~ '') }}",
        "{% set x = [1]|reverse ~ '' %}{{ x }}",
        # a lazy value inside the items join writes out, with or without an attribute
        "{{ [{'a': data.rows|reverse}]|join(attribute='a') }}",
        "{{ [{'a': data.rows|reverse}]|join(',', 'a') }}",
        "{{ [{'a': data.rows|reverse}]|select|join(attribute='a') }}",
        "{{ [[[[[[[[[data.rows|reverse]]]]]]]]] }}",
    ],
)
def test_printing_a_lazy_sequence_is_an_error_that_says_what_to_add(
        sources: Sources, source: str) -> None:
    """A generator, iterator, range or dict view is never rendered as its repr."""
    with pytest.raises(SandboxError, match=r"cannot be printed: end the expression with \|list"):
        sources.render(source)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ data.rows|map('abs')|join(',') }}", "1,2,3"),
        ("{{ data.rows|reverse|list }}", "[3, 2, 1]"),
        ("{{ 'a' ~ 1 ~ ([1, 2]|reverse|list) }}", "a1[2, 1]"),
        ("{{ data.rows|select('odd')|sort|first }}", "1"),
        ("{{ data.rows|batch(2)|list }}", "[[1, 2], [3]]"),
        ("{{ data.keys()|sort|join(' ') }}", "n name rows"),
        ("{% for i in data.rows|reverse %}{{ i }}{% endfor %}", "321"),
        ("{{ data.rows|map('abs')|sum }}", "6"),
    ],
)
def test_lazy_sequences_work_through_filters_that_iterate(
        sources: Sources, source: str, expected: str) -> None:
    """The usual ways to print a map/select/reverse result still work."""
    assert sources.render(source) == expected


@pytest.mark.parametrize(
    "source",
    [
        "{{ data.rows|map(attribute='__class__')|list }}",
        "{{ data.rows|map(attribute='__class__')|join }}",
        "{{ [data]|sort(attribute='__class__')|list }}",
        "{{ data.rows|selectattr('__class__')|list }}",
        "{{ data.name.__class__ }}",
    ],
)
def test_blocked_attributes_fail_in_filters_too(sources: Sources, source: str) -> None:
    """A blocked attribute through map/sort/selectattr raises instead of printing Undefined."""
    with pytest.raises(SandboxError, match="unsafe"):
        sources.render(source)


@pytest.mark.parametrize(
    "source",
    [
        "{{ " + "(" * 500 + "1" + ")" * 500 + " }}",
        "{{ " + "[" * 500 + "]" * 500 + " }}",
        "{{ 1" + "|abs" * 2000 + " }}",
        "{{ " + "not " * 3000 + "1 }}",
        "{{ " + "-" * 3000 + "1 }}",
        "{{ 1" + "+1" * 3000 + " }}",
        "{% if 1 %}" * 300 + "{% endif %}" * 300,
        "{% for a in [1] %}" * 40 + "{% endfor %}" * 40,
    ],
)
def test_deep_nesting_fails_at_parse_time(sources: Sources, source: str) -> None:
    """Deep brackets, blocks, filters and operators are a syntax error, not a RecursionError."""
    with pytest.raises(TemplateSyntaxError, match="nested") as caught:
        sources.render(source)
    assert caught.value.context["path"].endswith(".txt.j2")


@pytest.mark.parametrize("digits", [4301, 5000, 100_000])
def test_an_integer_literal_python_will_not_read_is_a_syntax_error(sources: Sources,
                                                                   digits: int) -> None:
    """Thousands of digits in a literal: a template error at its line, not a ValueError."""
    with pytest.raises(TemplateSyntaxError, match=f"a number of {digits} digits") as caught:
        sources.render("line one\n{{ data.n }} {{ " + "9" * digits + " }}")
    assert caught.value.context["line"] == 2
    assert caught.value.context["path"].endswith(".txt.j2")


def test_a_folded_number_python_will_not_write_is_a_syntax_error(sources: Sources) -> None:
    """A hex literal (or literal arithmetic) whose value has over 4,300 decimal digits."""
    with pytest.raises(TemplateSyntaxError, match="more than 4,300 digits") as caught:
        sources.render("x\n{% set big = 0x" + "f" * 4000 + " %}{{ 1 }}")
    assert caught.value.context["line"] == 2


def test_printing_a_number_python_will_not_write_says_so(sources: Sources) -> None:
    """Arithmetic at render time that makes a number too long to print: a RenderError at
    its line that says what happened, not Python's advice to raise a limit."""
    nines = "9" * 4300
    with pytest.raises(RenderError, match="more than 4,300 digits cannot be written") as caught:
        sources.render("{{ " + nines + " - -" + nines + " }}")
    assert caught.value.context["line"] == 1
    assert "set_int_max_str_digits" not in str(caught.value)


def test_digits_are_counted_without_underscores(sources: Sources) -> None:
    with pytest.raises(TemplateSyntaxError, match="a number of 4302 digits"):
        sources.render("{{ 1_0" + "_0" * 4300 + " }}")


def test_infinite_float_literals_render_as_python_writes_them(sources: Sources) -> None:
    """Jinja wrote ``inf`` into the compiled code, which is no Python name (a NameError)."""
    assert sources.render("{{ 1e999 ~ '' }} {% set x = -1e999 %}{{ x }} {{ 1e308 + 1e308 }}") \
        == "inf -inf inf"


def test_a_lazy_value_escaped_by_a_markup_method_is_refused(sources: Sources) -> None:
    with pytest.raises(SandboxError, match="cannot be printed"):
        sources.render("{{ ('x'|e).escape(data.rows|reverse) }}")


def test_bytes_are_not_printed_as_their_repr(sources: Sources) -> None:
    """``b'x'`` is a Python repr, not text."""
    for source in ("{{ 'x'.encode() }}", "{{ (1).to_bytes(2, 'big') }}"):
        with pytest.raises(SandboxError, match="bytes are not text"):
            sources.render(source)


def test_indent_of_a_list_leaves_the_request_data_alone(sources: Sources) -> None:
    """Jinja's indent adds its newline with ``+=``, which extended a list of the request
    in place (one more ``"\\n"`` per render)."""
    context = {"data": {"rows": [1, 2, 3]}}
    assert sources.render("{{ data.rows|indent }}|{{ data.rows|length }}", context) == \
        "[1, 2, 3]|3"
    assert context["data"]["rows"] == [1, 2, 3]


def test_str_methods_with_data_still_work(sources: Sources) -> None:
    assert sources.render("{{ '-'.join(data.rows|map('string')) }} {{ ('-'|safe).join(['a', "
                          "'b']) }} {{ ('x'|safe).escape('<b>') }} {{ 'a-b'.replace('-', '+') }}"
                          ) == "1-2-3 a-b &lt;b&gt; a+b"


@pytest.mark.parametrize("source", [
    "{% set labels = {'open': 'Open'} %}{{ labels[data.name] }}",
    "{{ {'a': 1}[data.n] }}", "{{ data|attr(data.name) }}",
    "{{ data.rows|map(attribute=data.name)|list }}", "{{ data.rows|map(data.name)|list }}",
    "{{ data.rows|sum(attribute=data.name) }}", "{{ namespace()[data.name] }}",
    "{{ data.name.encode(data.name) }}", "{{ data.rows.index(data.quoted) }}",
    "{% include 'templates/t/' ~ data.name %}", "{{ data[lipsum] }}",
])
def test_errors_do_not_repeat_request_values_or_addresses(sources: Sources,
                                                          source: str) -> None:
    """A key looked up from the request (a customer's name) is not in the message; a name
    written in the template is (see the next test); no object address either."""
    context = {"data": {"name": "Eleanor Whitfield", "n": 12345678, "rows": [1, 2, 3],
                        "quoted": "O'Brien \"Ellie\" Whitfield"}}
    with pytest.raises(CCMError) as caught:
        sources.render(source, context)
    message = str(caught.value)
    for secret in ("Eleanor", "Whitfield", "12345678", "Brien", " at 0x"):
        assert secret not in message, message


def test_errors_keep_the_names_the_template_wrote(sources: Sources) -> None:
    with pytest.raises(RenderError, match="'dict object' has no attribute 'no_such_field'"):
        sources.render("{{ data.no_such_field.name }}")
    with pytest.raises(RenderError, match="list object has no element 10"):
        sources.render("{{ data.rows[10] }}")


@pytest.mark.parametrize("source", [
    "{{ ''.upper }}", "{{ [1]|reverse }}", "{{ {'a': 1}|items }}", "{{ 'x'.format }}",
])
def test_a_folded_non_data_value_is_refused_in_autoescaped_templates_too(
        sources: Sources, source: str) -> None:
    """A fourth attack: Jinja escaped a folded repr before the finalize saw it."""
    with pytest.raises(SandboxError):
        sources.render(source, suffix=".html.j2")


@pytest.mark.parametrize("source", [
    "{{ '%r' % nope }}", "{{ '{0!r}'.format(nope) }}", "{{ nope|pprint }}",
    "{{ _('%(x)r', x=nope) }}", "{{ ('%r'|safe)|format(nope) }}",
])
def test_a_missing_name_is_not_printed_as_undefined(sources: Sources, source: str) -> None:
    """Refused as undefined, or (``%r``, ``!r``) as a repr conversion."""
    with pytest.raises((RenderError, SandboxError), match=r"'nope' is undefined|repr"):
        sources.render(source)


def test_default_chains_over_missing_names_still_work(sources: Sources) -> None:
    assert sources.render("{{ data.nick|default(data.nope)|default('friend') }}") == "friend"


@pytest.mark.parametrize(("source", "expected"), [
    ("{% for r in data.rows %}{{ r }}{{ '|' if not loop.last }}{% endfor %}", "1|2|3"),
    ("{{ 'x' if false }}|", "|"), ("{% set x = 'a' if false %}[{{ x }}]", "[]"),
    ("{{ data.name ~ (' (VIP)' if data.n > 5) }}", "Eleanor Whitfield"),
    ("<li class=\"{{ 'active' if false }}\">", '<li class="">'),
])
def test_an_inline_if_without_else_prints_nothing(sources: Sources, source: str,
                                                  expected: str) -> None:
    """A seventh round found these refused after the Undefined check: a common idiom."""
    assert sources.render(source) == expected
    assert sources.render(source, suffix=".html.j2") == expected


@pytest.mark.parametrize(("source", "secret"), [
    ("{% macro m() %}{% endmacro %}{{ m(**{data.name: 1}) }}", "Eleanor"),
    ("{{ 'x'.split(**{data.name: 1}) }}", "Eleanor"),
    ("{% set locale = data.name %}{{ 1|money('EUR') }}", "Eleanor"),
    ("{{ 'x' * (data.phone[1:]|int) }}", "447700900123"),
    ("{# 0800 777 #}{{ {'a': 1}[data.n] }}", "element 7"),
])
def test_errors_do_not_repeat_values_in_other_messages(sources: Sources, source: str,
                                                      secret: str) -> None:
    """Keyword names, a locale set from the data, a budget's size, and a value that is
    only part of a word of the template."""
    context = {"data": {"name": "Eleanor Whitfield", "phone": "+447700900123", "n": 7}}
    with pytest.raises(CCMError) as caught:
        sources.render(source, context)
    assert secret not in str(caught.value)


@pytest.mark.parametrize(("source", "suffix"), [
    ("{{ [data.name|e] }}", ".txt.j2"), ("{{ data.name|e|pprint }}", ".txt.j2"),
    ("{{ '%r' % ('a'|safe) }}", ".txt.j2"), ("{{ '{!r}'.format('a'|safe) }}", ".txt.j2"),
    ("{{ data.rows|map('e')|list }}", ".txt.j2"),
    ("{% trans x=[data.name|e] %}{{ x }}{% endtrans %}", ".txt.j2"),
    ("{{ _('%(x)r', x=data.name|e) }}", ".txt.j2"),
    ("{{ ('%s'|safe) % (['x'|safe],) }}", ".txt.j2"),
    ("{{ ('{}'|safe).format(['x'|safe]) }}", ".txt.j2"),
    ("{% macro m() %}x{% endmacro %}{{ [m()] }}", ".html.j2"),
    ("{% filter pprint %}x{% endfilter %}", ".html.j2"),
    ("{{ '{0.upper!r}'.format('x') }}", ".txt.j2"),
])
def test_escaped_text_is_never_printed_as_its_repr(sources: Sources, source: str,
                                                   suffix: str) -> None:
    """A fifth attack: ``Markup('…')`` through lists, pprint, %r and !r."""
    with pytest.raises(SandboxError, match="repr"):
        sources.render(source, suffix=suffix)


def test_escaped_text_as_a_format_argument_still_prints(sources: Sources) -> None:
    assert sources.render("{{ '%s and %s' % (data.name|e, 'b') }} {{ '%(a)s' % {'a': "
                          "data.name|e} }} {{ data.rows|map('e')|join(',') }} {{ '100%% %s' "
                          "% 'sure' }} {{ data.rows|pprint }}") == \
        "Eleanor Whitfield and b Eleanor Whitfield 1,2,3 100% sure [1, 2, 3]"


@pytest.mark.parametrize(("source", "suffix", "expected"), [
    ("{{ data.rows|map('e')|list|join(',') }}", ".txt.j2", "1,2,3"),
    ("{{ data.rows|map('e')|sort|join }}", ".txt.j2", "123"),
    ("{{ ', '.join(data.rows|map('e')) }}", ".txt.j2", "1, 2, 3"),
    ("{% for r in data.rows|map('e')|batch(2) %}{{ r|join }};{% endfor %}", ".txt.j2",
     "12;3;"),
    ("{% macro m(x) %}<b>{{ x }}</b>{% endmacro %}{{ [m(1), m(2)]|join(', ') }}", ".html.j2",
     "<b>1</b>, <b>2</b>"),
    ("{% set b %}<i>x</i>{% endset %}{{ [b, b]|join }}", ".html.j2", "<i>x</i><i>x</i>"),
    ("{% set b %}x{% endset %}{{ {'class': b}|xmlattr }}", ".html.j2", ' class="x"'),
    ("{% set b %}<i>x</i>{% endset %}{{ [b, 'a']|sort|join }}", ".html.j2", "<i>x</i>a"),
])
def test_lists_of_escaped_text_still_join(sources: Sources, source: str, suffix: str,
                                          expected: str) -> None:
    """A sixth attack: the check refused escaped text in lists that filters take apart."""
    assert sources.render(source, suffix=suffix) == expected


@pytest.mark.parametrize("source", [
    "{{ '%s' % {lipsum: 1} }}", "{{ ('%s'|safe) % {range: 1} }}",
    "{{ '%(a)s' % {cycler: 1, 'a': 2} }}", "{{ '%s' % {'a': data.name|e} }}",
])
def test_a_dict_formatted_with_percent_is_checked_keys_and_all(sources: Sources,
                                                             source: str) -> None:
    with pytest.raises(SandboxError):
        sources.render(source)


def test_a_value_with_a_quote_mark_is_not_repeated_in_an_error(sources: Sources) -> None:
    """Python quotes the value as '%s': its own apostrophe used to pair with the wrong
    quote and leave part of it in the message."""
    with pytest.raises(RenderError) as caught:
        sources.render("{{ ('{:' ~ data.name ~ '}').format('x') }}",
                       {"data": {"name": "Siobhan O'Brien"}})
    assert "Brien" not in str(caught.value) and "Siobhan" not in str(caught.value)


def test_a_missing_name_inside_a_list_is_an_undefined_error(sources: Sources) -> None:
    """``{{ [missing] }}`` printed ``[Undefined]``; it fails as ``{{ missing }}`` does."""
    with pytest.raises(RenderError, match="missing"):
        sources.render("{{ [missing] }}")


def test_an_imported_template_is_not_printed(sources: Sources) -> None:
    """A template module prints as ``<TemplateModule ...>``: refused like other objects."""
    (sources.templates / "t" / "lib.txt.j2").write_text("{% macro m() %}x{% endmacro %}")
    with pytest.raises(SandboxError, match="not data"):
        sources.render("{% import 'templates/t/lib.txt.j2' as m %}{{ [m] }}")


def test_values_nested_deeper_than_requests_are_refused_whole(sources: Sources) -> None:
    """Data nests at most 32 levels in a request and prints; 41 levels built by the
    template are refused with a message, not walked without end."""
    nested = "[" * 32 + "1" + "]" * 32
    assert sources.render("{{ " + nested + " }}") == nested
    chain = "{% set a = [1] %}" + "{% set a = [a] %}" * 40
    with pytest.raises(SandboxError, match="nested deeper than 40 levels"):
        sources.render(chain + "{{ a }}")


def test_long_literals_python_reads_still_render(sources: Sources) -> None:
    """Long decimal literals within Python's limit, underscores, and long hex literals."""
    assert sources.render("{{ " + "9" * 1000 + " > 1 }}") == "True"
    assert sources.render("{{ 1_000_000 }}") == "1000000"
    assert sources.render("{{ 0x" + "f" * 5000 + " > 1 }}") == "True"


@pytest.mark.parametrize(
    "source",
    [
        "{% set x = 1 %}{% set x.y = 2 %}", "{{ data.rows|map(42)|list }}", "{{ 1 / 0 }}",
        "{{ data.name + 1 }}", "{{ data.rows[10] }}", "{{ nope }}", "{{ data.name|int(1, 2, 3) }}",
        "{{ 'a' < 1 }}", "{{ data.rows|sum(attribute='x') }}",
        "{{ '{0[1000]}'.format(data.rows) }}", "{{ data.name|date }}", "{{ 2 ** 100000 }}",
    ],
)
def test_runtime_errors_are_ccm_errors_with_file_and_line(sources: Sources, source: str) -> None:
    """TemplateRuntimeError, TypeError, ZeroDivisionError... all become ccm errors with a line."""
    with pytest.raises(CCMError) as caught:
        sources.render(source)
    assert caught.value.context.get("line") == 1
    assert "Eleanor" not in str(caught.value)


def test_normal_templates_still_render(sources: Sources) -> None:
    """Everyday arithmetic, loops, joins and formatting are untouched by the limits."""
    text = sources.render(
        "{% for i in data.rows %}{{ i * 2 }},{% endfor %}{{ 2 ** 10 }} {{ 'ab' * 3 }} "
        "{{ data.rows|join('-') }} {{ '%05.1f' % 3.14159 }} {{ '{:>6}'.format('x') }} "
        "{{ data.name ~ '!' }} {{ range(3)|list }} {{ lipsum(1, False, 5, 9)|length > 0 }}"
    )
    assert text == ("2,4,6,1024 ababab 1-2-3 003.1      x Eleanor Whitfield! [0, 1, 2] True")


@pytest.mark.parametrize("source", [
    # A filter called by map (not by the template's own code) on big lists, over and over.
    "{% set a = ['x'] * 100000 %}{{ ([a] * 500)|map('join')|map('length')|sum }}",
    # A test called by select, each call scanning a big list.
    "{% set big = [0] * 100000 %}{{ ([1] * 2000)|select('in', big)|list|length }}",
    # One filter call walking a shared structure ten million items wide.
    "{% set a = [[0] * 1000] * 100 %}{{ ([a] * 100)|first|length }}",
])
def test_filters_and_tests_called_for_the_template_stop_at_the_time_budget(
        sources: Sources, source: str) -> None:
    """Work done inside map, select and long checks reads the clock: a time BudgetError."""
    with pytest.raises(BudgetError, match="time budget") as caught:
        sources.render(source, budget=Budget(seconds=0.05))
    assert caught.value.context["budget"] == "time"


@pytest.mark.parametrize(("source", "words"), [
    ("{% set a = [0] * 100000 %}{{ ([a] * 20)|tojson|length }}", "written as text"),
    ("{{ ('<' * 300000)|e|length }}", "filter 'e'"),
    ("{{ ('\t' * 2000).expandtabs(1000)|length }}", "expandtabs"),
    ("{{ ('\t' * 2000).encode().expandtabs(1000)|length }}", "expandtabs"),
    ("{{ ('a' * 2000).replace('a', 'b' * 1000)|length }}", "replace"),
    ("{{ ('a' * 2000)|replace('a', 'b' * 1000)|length }}", "result of replace"),
    ("{{ (['a'] * 2000)|replace('a', 'b' * 1000)|length }}", "result of replace"),
    ("{{ ('x' * 1000).join(['a'] * 2000)|length }}", "join"),
    ("{{ (['a'] * 2000)|join('x' * 1000)|length }}", "result of join"),
    ("{% set a = ['x' * 1000] * 500 %}{{ ([a] * 50)|join|length }}", "result of join"),
    ("{% set a = ['x' * 1000] * 500 %}{{ ([a, a, a]|string)|length }}", "written as text"),
    ("{{ ('a\n' * 2000)|indent(1000)|length }}", "result of indent"),
    ("{{ ('a ' * 2000)|wordwrap(2, wrapstring='x' * 1000)|length }}", "result of wordwrap"),
    ("{{ ('a' * 2000).translate({97: 'b' * 1000})|length }}", "translate"),
    ("{% set f = '%(x)s' * 300 %}{{ _(f, x='a' * 5000)|length }}", "translated text"),
    ("{{ _('%(x)999999999s', x='a')|length }}", "format width"),
    ("{{ ('%(x)999999999s' % {'x': 'a'})|length }}", "format width"),
    ("{% set f = '%(num)s %(x)s' * 300 %}{{ ngettext(f, f, 2, x='a' * 5000)|length }}",
     "translated text"),
    ("{% set a = [0] * 1000 %}{{ ([a] * 2000)|sum(start=[])|length }}", "result of sum"),
])
def test_big_results_are_refused_before_they_are_built(sources: Sources, source: str,
                                                       words: str) -> None:
    """A result over the value budget, escaped text and tojson too, is a value BudgetError
    found from the arguments (not a multi-gigabyte string refused after it was built)."""
    with pytest.raises(BudgetError, match=words) as caught:
        sources.render(source, budget=Budget(seconds=30.0))
    assert caught.value.context["budget"] == "value"


def test_summing_lists_and_tuples_still_works(sources: Sources) -> None:
    """``sum(start=[])`` flattens lists (in linear time), by attribute too; a mixed sum is
    the TypeError Python gives, as a RenderError."""
    text = sources.render(
        "{{ ([[1]] * 100000)|sum(start=[])|length }} {{ [(1,), (2, 3)]|sum(start=())|list }} "
        "{{ [{'r': [1]}, {'r': [2]}]|sum(attribute='r', start=[]) }} {{ [1.5, 2]|sum }}")
    assert text == "100000 [1, 2, 3] [1, 2] 3.5"
    with pytest.raises(RenderError, match="can only concatenate list"):
        sources.render("{{ [[1], (2,)]|sum(start=[]) }}")


def test_growing_filters_and_methods_within_the_budget_still_work(sources: Sources) -> None:
    """Replace, expandtabs, indent, wordwrap, join and translate give their usual results."""
    text = sources.render(
        "{{ 'a\tb'.expandtabs(4) }}|{{ 'aXa'|replace('a', 'yy') }}|{{ 'aXa'.replace('a', 'z', 1) }}"
        "|{{ 'x\ny'|indent(2) }}|{{ 'aa bb cc'|wordwrap(3, wrapstring='/') }}"
        "|{{ '-'.join(['a', 'b']) }}|{{ data.rows|join(', ') }}|{{ 'ab'.translate({97: 'AA'}) }}"
        "|{{ [{'k': 'v'}]|join(',', attribute='k') }}|{{ [1, 2]|select('in', [2])|list }}")
    assert text == ("a   b|yyXyy|zXa|x\n  y|aa/bb/cc|a-b|1, 2, 3|AAb|v|[2]")


_ATOMS = st.sampled_from([
    "1", "0", "-1", "10", "99999", "2.5", "'x'", "''", "[1, 2]", "{}", "data", "data.name",
    "data.rows", "data.n", "data.missing", "lipsum", "range", "cycler", "namespace()",
    "none", "true", "customer", "loop", "self", "caller", "_", "dict(a=1)", "data.__class__",
])
_BINOPS = st.sampled_from(["+", "-", "*", "/", "//", "%", "**", "~", "<", "==", "in", "and"])
_FILTERS = st.sampled_from([
    "|string", "|int", "|join", "|list", "|length", "|first", "|center(99999999)",
    "|map(attribute='__class__')|list", "|sum", "|default(1)", "|money", "|date", "|upper",
    "|replace('x', 'xx')", "|indent(10**9)", "|tojson", "|pprint", "|attr('__class__')",
])


@st.composite
def hostile_expressions(draw: st.DrawFn, depth: int = 0) -> str:
    if depth > 3 or draw(st.booleans()):
        expr = draw(_ATOMS)
    else:
        left = draw(hostile_expressions(depth + 1))
        right = draw(hostile_expressions(depth + 1))
        expr = f"({left} {draw(_BINOPS)} {right})"
    if draw(st.booleans()):
        expr += draw(_FILTERS)
    if draw(st.integers(0, 4)) == 0:
        expr = f"{draw(_ATOMS)}({expr})"
    return expr


@st.composite
def hostile_templates(draw: st.DrawFn) -> str:
    parts = []
    for _ in range(draw(st.integers(1, 3))):
        expr = draw(hostile_expressions())
        kind = draw(st.integers(0, 3))
        if kind == 0:
            parts.append(f"{{{{ {expr} }}}}")
        elif kind == 1:
            parts.append(f"{{% for x in {expr} %}}{{{{ x }}}}{{% endfor %}}")
        elif kind == 2:
            parts.append(f"{{% set ns = namespace(v=1) %}}{{% set ns.v = {expr} %}}{{{{ ns.v }}}}")
        else:
            parts.append(f"{{% trans v={expr} %}}{{{{ v }}}}{{% endtrans %}}")
    return "".join(parts)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5),
                                                                      children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                    HealthCheck.too_slow])
@given(source=hostile_templates(), data=st.dictionaries(
    st.sampled_from(["name", "rows", "n", "x"]), _JSON, max_size=4))
def test_hostile_templates_and_data_raise_only_ccm_errors(sources: Sources, source: str,
                                                          data: dict[str, Any]) -> None:
    """Whatever a template and its data do, the caller sees output or a ccm error with a place."""
    try:
        text = sources.render(source, {"data": data}, budget=Budget(seconds=2.0,
                                                                    max_value=10_000))
    except CCMError as exc:
        assert exc.context.get("path"), exc
        if not isinstance(exc, TemplateSyntaxError):
            assert isinstance(exc, RenderError), exc
            assert exc.context.get("line") is not None, exc
        return
    assert " at 0x" not in text and "<function" not in text and "<class" not in text


@pytest.mark.parametrize("name", ["get", "items", "keys", "values", "pop", "update",
                                  "setdefault", "clear", "__class__", "__init__", "missing"])
def test_a_dicts_attributes_are_what_jinjas_sandbox_gives(name: str) -> None:
    """``d.get`` and the other reading methods of an exact dict take a shortcut; every
    attribute (reading, changing, internal, absent) gives what Jinja's own sandbox gives."""
    from jinja2 import Undefined
    from jinja2.exceptions import SecurityError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = create_environment(Path("/nonexistent/layouts"), Path("/nonexistent/templates"))
    jinja = ImmutableSandboxedEnvironment()

    class Sub(dict):  # type: ignore[type-arg]
        """A dict subclass: never the shortcut."""

    for value in ({"a": 1, "get": 2}, Sub(a=1)):
        theirs = jinja.getattr(value, name)
        try:
            ours = env.getattr(value, name)
        except SecurityError:  # ccm refuses at once what Jinja makes an unsafe Undefined
            assert isinstance(theirs, Undefined)
            assert name in ("pop", "update", "setdefault", "clear", "__class__", "__init__")
            continue
        if isinstance(theirs, Undefined):  # ccm's undefined is strict: the same absence
            assert isinstance(ours, Undefined)
            continue
        assert type(ours) is type(theirs)
        if callable(theirs):
            assert ours == theirs  # the same bound method
            if name in ("get", "items", "keys", "values"):
                assert list(ours() if name != "get" else [ours("a")]) == \
                    list(theirs() if name != "get" else [theirs("a")])


def test_a_dicts_reading_methods_work_and_changing_ones_stay_refused(
        sources: Sources) -> None:
    """A template reads a dict through get/items/keys/values, and cannot change it."""
    context = {"data": {"d": {"a": 1, "b": 2}}}
    assert sources.render("{{ data.d.get('a') }} {{ data.d.get('z', 0) }} "
                          "{{ data.d.keys()|list }} {{ data.d.values()|sum }} "
                          "{% for k, v in data.d.items() %}{{ k }}={{ v }};{% endfor %}",
                          context) == "1 0 ['a', 'b'] 3 a=1;b=2;"
    for source in ("{{ data.d.pop('a') }}", "{{ data.d.update(c=3) }}",
                   "{{ data.d.setdefault('c', 3) }}", "{{ data.d.clear() }}"):
        with pytest.raises(CCMError):
            sources.render(source, context)
    assert context == {"data": {"d": {"a": 1, "b": 2}}}


_I18N_SOURCES = [
    "{% trans n=data.n, name=data.name %}<b>{{ name }}</b> has {{ n }}%{% endtrans %}",
    "{% trans count=data.n, name=data.name %}one for {{ name }}{% pluralize %}"
    "{{ count }} for {{ name }}{% endtrans %}",
    "{% block b %}{% for r in data.rows %}{{ _('%(x)s/%(r)s', x=data.name, r=r) }};"
    "{{ ngettext('%(num)d %(x)s', '%(num)d %(x)ss', r, x=data.name) }}{% endfor %}"
    "{% endblock %}",
    "{% block b %}{% set y = data.name %}{{ gettext('plain') }} {{ _('y=%(y)s', y=y) }}"
    "{{ data.get('name') }}{{ data.get('none', 'dflt') }}{% endblock %}",
]


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")),
                    max_size=12),
       n=st.integers(0, 3), rows=st.lists(st.integers(0, 3), max_size=3),
       suffix=st.sampled_from([".txt.j2", ".html.j2"]))
def test_translations_and_dict_reads_render_as_jinja_does(
        sources: Sources, name: str, n: int, rows: list[int], suffix: str) -> None:
    """ccm's gettext, ngettext and ``dict.get`` (called by the sandbox directly) give
    Jinja's own newstyle i18n's text: in blocks and loops, escaped and not."""
    import jinja2

    jinja = jinja2.Environment(autoescape=suffix == ".html.j2", undefined=jinja2.StrictUndefined,
                               extensions=["jinja2.ext.i18n"], trim_blocks=True,
                               lstrip_blocks=True)
    jinja.install_null_translations(newstyle=True)  # type: ignore[attr-defined]
    context = {"data": {"name": name, "n": n, "rows": rows}}
    for source in _I18N_SOURCES:
        expected = jinja.from_string(source).render(context)
        assert sources.render(source, context, suffix=suffix) == expected, source


def test_a_big_mappings_get_is_metered_and_its_result_checked(sources: Sources) -> None:
    """``get`` on a mapping over the small size takes the sandbox's full path (its size
    counted); a result over the value budget is refused there as everywhere."""
    big = {f"k{i}": i for i in range(3000)}
    assert sources.render("{{ data.big.get('k2999') }}", {"data": {"big": big}}) == "2999"
    with pytest.raises(BudgetError):
        sources.render("{{ data.d.get('a')|length }}", {"data": {"d": {"a": "x" * 5000}}},
                       budget=Budget(seconds=2.0, max_value=2048))
