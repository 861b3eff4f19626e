"""One render budget for every caller: the engine's options, a template's ``budget:``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

import ccm
from ccm.errors import BudgetError, SandboxError
from ccm.render.budget import Budget
from tests.examples_helpers import copy_examples, daytime, sample


def _edit(path: Path, marker: str, insert: str) -> None:
    text = path.read_text("utf-8")
    assert marker in text
    path.write_text(text.replace(marker, marker + insert, 1), "utf-8")


def test_engine_render_stops_a_huge_repetition_on_the_pdf_channel(tmp_path: Path) -> None:
    """Engine.render (as the preview and proofs call it) fails fast naming the PDF source."""
    pack, templates = copy_examples(tmp_path)
    _edit(templates / "welcome" / "pdf.html.j2", "{% block content %}", "{{ 'A' * 10**9 }}")
    engine = ccm.Engine(pack, templates, record=None, clock=daytime)
    with pytest.raises(BudgetError) as caught:
        engine.render("welcome", sample("welcome"), "pdf")
    assert "welcome/pdf.html.j2" in str(caught.value)
    assert caught.value.context["budget"] == "value"


def test_engine_render_refuses_printing_a_function_in_email(tmp_path: Path) -> None:
    """``{{ lipsum }}`` in an email source is a SandboxError, not a repr in the customer's mail."""
    pack, templates = copy_examples(tmp_path)
    _edit(templates / "payment_reminder" / "email.mjml.j2", "{% block content %}",
          "<mj-text>{{ lipsum }}</mj-text>")
    engine = ccm.Engine(pack, templates, record=None, clock=daytime)
    with pytest.raises(SandboxError, match="not data"):
        engine.render("payment_reminder", sample("payment_reminder"), "email")


def test_a_template_budget_narrows_the_value_limit(tmp_path: Path) -> None:
    """``budget.max_value_size`` in template.yaml applies to that template's renders."""
    pack, templates = copy_examples(tmp_path)
    _edit(templates / "payment_reminder" / "sms.txt.j2", "{% block content %}",
          "{{ ('x' * 3000)|length }}")
    engine = ccm.Engine(pack, templates, record=None, clock=daytime)
    assert "3000" in engine.render("payment_reminder", sample("payment_reminder"), "sms").text
    manifest = templates / "payment_reminder" / "template.yaml"
    raw = yaml.safe_load(manifest.read_text("utf-8"))
    raw["budget"] = {"max_value_size": 2048}
    manifest.write_text(yaml.safe_dump(raw), "utf-8")
    narrowed = ccm.Engine(pack, templates, record=None, clock=daytime)
    assert narrowed.budget(narrowed.template("payment_reminder")).max_value == 2048
    with pytest.raises(BudgetError, match="2048"):
        narrowed.render("payment_reminder", sample("payment_reminder"), "sms")


def test_engine_options_set_the_budget() -> None:
    """RenderOptions carry the engine-wide budget and validate it."""
    options = ccm.RenderOptions(time_budget=5, max_output_chars=4096, max_value_size=5000)
    assert options.budget == Budget(seconds=5, max_output=4096, max_value=5000)
    with pytest.raises(ValueError, match="max_value_size"):
        ccm.RenderOptions(max_value_size=10)
    with pytest.raises(ValueError, match="seconds"):
        Budget(seconds=0)


def test_a_template_budget_cannot_raise_the_engines_limits(tmp_path: Path) -> None:
    """``budget:`` in template.yaml only lowers the operator's RenderOptions: higher values
    are capped at the engine's, lower ones still apply."""
    pack, templates = copy_examples(tmp_path)
    manifest = templates / "payment_reminder" / "template.yaml"
    raw = yaml.safe_load(manifest.read_text("utf-8"))
    raw["budget"] = {"seconds": 100000, "max_value_size": 10**9, "max_output_bytes": 4096}
    manifest.write_text(yaml.safe_dump(raw), "utf-8")
    options = ccm.RenderOptions(time_budget=2, max_value_size=5000)
    engine = ccm.Engine(pack, templates, record=None, options=options, clock=daytime)
    assert engine.budget(engine.template("payment_reminder")) == Budget(
        seconds=2, max_output=4096, max_value=5000)
    _edit(templates / "payment_reminder" / "sms.txt.j2", "{% block content %}",
          "{{ ('x' * 6000)|length }}")
    with pytest.raises(BudgetError, match="5000"):
        ccm.Engine(pack, templates, record=None, options=options, clock=daytime).render(
            "payment_reminder", sample("payment_reminder"), "sms")


class _Clock:
    """A stand-in for ``time`` in ccm.render.finish: past every deadline once ``late``."""

    def __init__(self, late: bool) -> None:
        self.late = late

    def monotonic(self) -> float:
        return float("inf") if self.late else float("-inf")


@pytest.mark.parametrize(("late_from", "step"), [
    ("start", "before its MJML compile"),
    ("compile", "in its MJML compile"),
])
def test_an_email_past_its_deadline_after_jinja_is_a_budget_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, late_from: str, step: str) -> None:
    """The MJML compile and the text part run outside Jinja: the deadline is checked
    before and after the compile, so an email over its time budget stops there."""
    from ccm.channels import email as email_channel
    from ccm.render import finish

    clock = _Clock(late=late_from == "start")
    compile_mjml_and_text = email_channel.compile_mjml_and_text

    def slow_compile(*args: Any, **kwargs: Any) -> Any:
        result = compile_mjml_and_text(*args, **kwargs)
        clock.late = True  # the compile took the rest of the budget
        return result

    monkeypatch.setattr(finish, "time", clock)
    monkeypatch.setattr(email_channel, "compile_mjml_and_text", slow_compile)
    pack, templates = copy_examples(tmp_path)
    engine = ccm.Engine(pack, templates, record=None)
    with pytest.raises(BudgetError, match=step) as caught:
        engine.render("payment_reminder", sample("payment_reminder"), "email")
    assert "payment_reminder/email.mjml.j2" in str(caught.value)
    assert caught.value.context["budget"] == "time"
