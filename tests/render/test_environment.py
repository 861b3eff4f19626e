"""The sandboxed environment: escapes, strict names, autoescaping, budgets."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ccm.errors import BudgetError, RenderError, SandboxError, TemplateSyntaxError
from ccm.render.environment import create_environment, render_source


@pytest.fixture()
def make_env(tmp_path: Path):  # type: ignore[no-untyped-def]
    layouts = tmp_path / "pack" / "layouts"
    tdir = tmp_path / "templates" / "t"
    layouts.mkdir(parents=True)
    tdir.mkdir(parents=True)
    (layouts / "email.mjml.j2").write_text(
        "<mjml><mj-body>{% block content %}{% endblock %}</mj-body></mjml>"
    )

    def make(name: str, source: str):  # type: ignore[no-untyped-def]
        (tdir / name).write_text(source)
        return create_environment(layouts, tmp_path / "templates"), f"templates/t/{name}"

    return make


@pytest.mark.parametrize(
    "source",
    [
        "{{ customer.__class__ }}",
        "{{ customer.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ lipsum.__globals__ }}",
        "{{ cycler.__init__.__globals__.os }}",
        "{{ '{0.__class__}'.format(customer) }}",
        "{{ customer.update({'x': 1}) }}",
        "{{ data.rows.append(1) }}",
    ],
)
def test_sandbox_escapes_raise(make_env, source: str) -> None:  # type: ignore[no-untyped-def]
    """Attribute escapes and mutation raise a SandboxError or RenderError, never output."""
    env, name = make_env("x.txt.j2", source)
    with pytest.raises((SandboxError, RenderError)):
        render_source(env, name, {"customer": {"id": "1"}, "data": {"rows": []}})


def test_blocked_attribute_is_an_error_not_empty(make_env) -> None:  # type: ignore[no-untyped-def]
    """StrictUndefined: a blocked or unknown attribute fails with file and line."""
    env, name = make_env("x.txt.j2", "line one\n{{ customer.nope }}")
    with pytest.raises(RenderError) as info:
        render_source(env, name, {"customer": {"id": "1"}})
    assert "x.txt.j2:2" in str(info.value)
    assert info.value.line == 2  # type: ignore[attr-defined]


def test_syntax_error_names_file_and_line(make_env) -> None:  # type: ignore[no-untyped-def]
    """A template that does not compile names its file and line."""
    env, name = make_env("x.html.j2", "ok\n\n{% if %}")
    with pytest.raises(TemplateSyntaxError) as info:
        render_source(env, name, {})
    assert info.value.line == 3  # type: ignore[attr-defined]
    assert "x.html.j2" in str(info.value)


def test_mjml_sources_are_autoescaped(make_env) -> None:  # type: ignore[no-untyped-def]
    """Data in an MJML source is escaped, so an mj-include in data never reaches the compiler."""
    env, name = make_env(
        "email.mjml.j2",
        '{% extends "pack/email.mjml.j2" %}{% block content %}{{ customer.name }}{% endblock %}',
    )
    out = render_source(env, name, {"customer": {"name": '<mj-include path="/etc/passwd"/>'}})
    assert "<mj-include" not in out.text
    assert "&lt;mj-include" in out.text


def test_text_sources_are_not_escaped(make_env) -> None:  # type: ignore[no-untyped-def]
    """SMS text is not HTML: an ampersand stays an ampersand."""
    env, name = make_env("sms.txt.j2", "{{ customer.name }}")
    assert render_source(env, name, {"customer": {"name": "A & B"}}).text == "A & B"


def test_data_is_never_evaluated_as_template(make_env) -> None:  # type: ignore[no-untyped-def]
    """Jinja syntax inside data is output literally."""
    env, name = make_env("sms.txt.j2", "{{ customer.name }}")
    assert render_source(env, name, {"customer": {"name": "{{ 7*7 }}"}}).text == "{{ 7*7 }}"


def test_output_budget(make_env) -> None:  # type: ignore[no-untyped-def]
    """A render that produces too much output fails alone with BudgetError."""
    env, name = make_env("x.txt.j2", "{% for i in range(100000) %}xxxxxxxxxx{% endfor %}")
    with pytest.raises(BudgetError):
        render_source(env, name, {}, max_chars=10_000)


def test_time_budget(make_env) -> None:  # type: ignore[no-untyped-def]
    """A render past its deadline fails with BudgetError instead of hanging."""
    import time

    loop = "{% for i in range(1000) %}{% for j in range(1000) %}{{ j }}{% endfor %}{% endfor %}"
    env, name = make_env("x.txt.j2", loop)
    with pytest.raises(BudgetError):
        render_source(env, name, {}, deadline=time.monotonic() - 1)


def test_blocks_are_rendered_separately(make_env) -> None:  # type: ignore[no-untyped-def]
    """Subject-like blocks come back as plain text alongside the body."""
    env, name = make_env(
        "e.mjml.j2", "{% block subject %}Hi <b>{{ n }}</b>{% endblock %} body"
    )
    out = render_source(env, name, {"n": "A&B"}, blocks=("subject",))
    assert out.blocks["subject"] == "Hi A&B"


@given(st.text(max_size=200))
def test_any_text_is_escaped_in_html(text: str) -> None:
    """Property: whatever the data, the HTML output holds no raw '<' from it."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        layouts = Path(tmp) / "l"
        (Path(tmp) / "templates" / "t").mkdir(parents=True)
        layouts.mkdir()
        (Path(tmp) / "templates" / "t" / "p.html.j2").write_text("<p>{{ v }}</p>")
        env = create_environment(layouts, Path(tmp) / "templates")
        out = render_source(env, "templates/t/p.html.j2", {"v": text}).text
    inner = out[3:-4]
    assert "<" not in inner and ">" not in inner
