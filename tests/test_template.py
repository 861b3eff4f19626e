"""Templates load, validate their manifest and contract, and check requests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import ccm
from ccm.errors import DataError, TemplateError
from ccm.template import load_templates, validate_request

from .examples_helpers import TEMPLATES, copy_examples

EXAMPLES = ["monthly_statement", "payment_reminder", "welcome", "product_offer", "nps_survey"]


def test_example_templates_load() -> None:
    """Every example template loads, with at least one sample valid against its contract."""
    templates = load_templates(TEMPLATES)
    assert set(EXAMPLES) <= set(templates)
    for tpl in templates.values():
        assert tpl.samples(), tpl.id
        for path in tpl.samples():
            request = validate_request(json.loads(path.read_text()))
            tpl.validate_data(request.data)


def test_example_template_facts() -> None:
    """The example templates declare what the issue asks of them."""
    t = load_templates(TEMPLATES)
    assert t["monthly_statement"].channels == ("pdf", "email", "sms")
    assert t["monthly_statement"].confidential and t["monthly_statement"].attach_pdf
    assert t["product_offer"].message_type == "marketing"
    assert t["welcome"].letter and set(t["welcome"].channels) == {"pdf", "email"}
    assert set(t["payment_reminder"].channels) == {"email", "sms"}


def test_declared_channel_without_source(tmp_path: Path) -> None:
    """Declaring sms without sms.txt.j2 names the manifest and the channel."""
    _, templates = copy_examples(tmp_path)
    (templates / "payment_reminder" / "sms.txt.j2").unlink()
    with pytest.raises(TemplateError, match="sms"):
        ccm.load_template(templates / "payment_reminder")


def test_source_for_undeclared_channel(tmp_path: Path) -> None:
    """A pdf source in a template without the pdf channel is reported."""
    _, templates = copy_examples(tmp_path)
    (templates / "payment_reminder" / "pdf.html.j2").write_text("x")
    with pytest.raises(TemplateError, match="pdf.html.j2"):
        ccm.load_template(templates / "payment_reminder")


def test_bad_manifest_names_key(tmp_path: Path) -> None:
    """A message_type outside operational|marketing names the key."""
    _, templates = copy_examples(tmp_path)
    path = templates / "welcome" / "template.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["message_type"] = "spam"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(TemplateError, match="message_type"):
        ccm.load_template(templates / "welcome")


@pytest.mark.parametrize(
    ("request_obj", "path"),
    [
        ({"data": {}}, "$"),
        ({"customer": {}, "data": {}}, "$.customer"),
        ({"customer": {"id": "1", "date_of_birth": "31/12/1980"}}, "$.customer.date_of_birth"),
        ({"customer": {"id": "1"}, "data": [], }, "$.data"),
        ({"customer": {"id": "1"}, "extra": 1}, "$"),
    ],
)
def test_request_shape_errors(request_obj: object, path: str) -> None:
    """Malformed requests raise DataError with the JSON path."""
    with pytest.raises(DataError) as info:
        validate_request(request_obj)
    assert info.value.path == path  # type: ignore[attr-defined]
