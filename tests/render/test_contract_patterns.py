"""Contract regexes that backtrack exponentially are refused when the template loads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import ccm
from ccm.cli import main
from ccm.errors import DataError, TemplateError
from ccm.render._patterns import _patterns, pattern_problem
from tests.examples_helpers import TEMPLATES, copy_examples, sample

#: Each takes exponential time in ``re`` on some text (``"a" * 40 + "!"`` and the like).
HANGING = [
    r"^(a+)+$", r"(a*)*", r"^(\w+\s?)+$", r"^([a-zA-Z0-9]+)*$", r"(.*a){12}",
    r"(x\w+)*", r"^(a{1,10}){1,10}$", r"((ab)*|a)*", r"(\d+|[0-9]x)+", r"(a|ab)+",
    r"(a|a?)+", r"(a|b|ab)*c", r"^(([a-z])+.)+[A-Z]([a-z])+$", r"(?i)(x[a-z]+)+",
]
#: Linear (or bounded) in ``re``: repetitions that cannot split the text two ways.
SAFE = [
    r"^[A-Z]{3}$", r"^https://[^\s]+$", r"^(?:\.[a-z]+)*$", r"(a+)++", r"(?>a+)+",
    r"^(?:\+|00)[0-9]+$", r"([a-z]{2}-\d+)*", r"(ab|cd)+", r"^[A-Z0-9]+(?: [A-Z0-9]+)*$",
    # Rounds that must end at a character the inner repetitions cannot match: a list, an
    # IBAN in groups of four, a host name, a dotted name.
    r"^([a-z]+,)*[a-z]+$", r"^[A-Z]{2}\d{2}( ?[A-Z0-9]{4})+$",
    r"^(?:[a-z0-9]+(?:-[a-z0-9]+)*\.)+[a-z]{2,}$", r"^(\w+\.)*\w+$", r"^(a+(b|c))+$",
]
#: Rounds that end at a character an inner repetition can match too: still refused.
HANGING += [r"^(a+\.?)+$", r"^([a,]+,)+$", r"^(a*b*)+\.$", r"^(a+a)+$"]


@pytest.mark.parametrize("pattern", HANGING)
def test_exponential_shapes_are_found(pattern: str) -> None:
    """Nested repetition and ambiguous repeated alternatives are named."""
    assert pattern_problem(pattern) is not None


@pytest.mark.parametrize("pattern", SAFE)
def test_safe_shapes_pass(pattern: str) -> None:
    """Delimited rounds, possessive and atomic repetitions, plain classes are accepted."""
    assert pattern_problem(pattern) is None


def test_every_shipped_pattern_passes() -> None:
    """The example contracts and ccm's own schemas (the request's e-mail) are accepted."""
    schemas = [*TEMPLATES.glob("*/contract.schema.json"),
               *(Path(ccm.__file__).parent / "schemas").glob("*.json")]
    found = [(path.name, pattern) for path in schemas
             for pattern, _, _ in _patterns(json.loads(path.read_text("utf-8")), ("$",), "data")]
    assert len(found) > 10
    assert [(name, p) for name, p in found if pattern_problem(p) is not None] == []


def _contract(templates: Path) -> Path:
    return templates / "welcome" / "contract.schema.json"


def _edit_contract(templates: Path, change: Any) -> None:
    path = _contract(templates)
    contract = json.loads(path.read_text("utf-8"))
    change(contract)
    path.write_text(json.dumps(contract, indent=2), "utf-8")


def test_engine_refuses_a_hanging_pattern_naming_template_field_and_rewrite(
        tmp_path: Path) -> None:
    """Engine() raises TemplateError at the contract's line, before any request is read."""
    pack, templates = copy_examples(tmp_path)
    _edit_contract(templates, lambda c: c["properties"]["customer_number"].update(
        pattern="^([A-Z0-9]+ ?)+$"))
    with pytest.raises(TemplateError) as info:
        ccm.Engine(pack, templates, record=None)
    message = str(info.value)
    line = next(n for n, text in enumerate(_contract(templates).read_text().splitlines(), 1)
                if "+ ?)+$" in text)
    assert message.startswith(f"{_contract(templates)}:{line}: template 'welcome': ")
    assert "$.properties.customer_number.pattern" in message
    assert "for data.customer_number can take exponential time" in message
    assert "nested quantifiers" in message and "possessive (a++)" in message
    assert info.value.context["field"] == "data.customer_number"


def test_pattern_properties_keys_are_checked(tmp_path: Path) -> None:
    """A patternProperties key is a regex run on request keys: checked the same way."""
    pack, templates = copy_examples(tmp_path)
    _edit_contract(templates, lambda c: c["properties"].update(
        extras={"type": "object", "patternProperties": {"^(x_\\w+)+$": {"type": "string"}}}))
    with pytest.raises(TemplateError, match=r"patternProperties\.\^\(x_\\w\+\)\+\$: the "
                                            r"pattern .* for data\.extras\.<key matching"):
        ccm.Engine(pack, templates, record=None)


def test_safe_rewrite_loads_and_refuses_a_hostile_value_as_data(tmp_path: Path) -> None:
    """The suggested rewrite loads, and the value that would have hung is a DataError."""
    pack, templates = copy_examples(tmp_path)
    _edit_contract(templates, lambda c: c["properties"]["customer_number"].update(
        pattern="^[A-Z0-9]+(?: [A-Z0-9]+)*$", maxLength=200))
    engine = ccm.Engine(pack, templates, record=None)
    request = sample("welcome")
    request["data"]["customer_number"] = "A" * 60 + "!"
    with pytest.raises(DataError, match="customer_number"):
        engine.render("welcome", request, "email", record=False)


@pytest.mark.parametrize("command", ["render", "approve"])
def test_cli_refuses_with_one_line_and_exit_1(command: str, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """`ccm render` and `ccm approve` stop with the contract's error, exit 1, no traceback."""
    pack, templates = copy_examples(tmp_path)
    _edit_contract(templates, lambda c: c["properties"]["customer_number"].update(
        pattern="^(a+)+$"))
    data = tmp_path / "request.json"
    data.write_text(json.dumps(sample("welcome")), "utf-8")
    args = {"render": ["--data", str(data), "--out", str(tmp_path / "out"), "--record",
                       f"sqlite:///{tmp_path / 'r.db'}"],
            "approve": ["--approvals", str(tmp_path / "approvals.json")]}[command]
    code = main([command, "welcome", "--pack", str(pack), "--templates", str(templates),
                 *args])
    out, err = capsys.readouterr()
    assert code == 1, (out, err)
    assert err.startswith("ccm: error: ") and "Traceback" not in out + err
    assert "data.customer_number can take exponential time" in err
    assert not (tmp_path / "approvals.json").exists()
