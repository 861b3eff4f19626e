"""Templates load, validate their manifest and contract, and check requests."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import yaml

import ccm
from ccm.errors import DataError, TemplateError
from ccm.render.template import load_templates, validate_request
from tests.examples_helpers import TEMPLATES, copy_examples

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
    with pytest.raises(TemplateError, match=r"pdf\.html\.j2"):
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


def _jsonschema_says_valid(schema: dict[str, object], value: object) -> bool:
    import jsonschema

    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    validator = cls(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    return not any(True for _ in validator.iter_errors(value))


def _mutations(value: object, rng: random.Random) -> object:
    """A random change to a valid value: wrong types, bounds, missing and extra keys."""
    odd = [None, True, 0, -1, 1.5, 1e12, "", "x" * 600, "2025-02-30", "not a url", [], {},
           "https://pay.example/x", "GBP", "gbp", 10**9 + 1, 0.0, 3.0, "AB 12/3", [1, "a"]]
    if isinstance(value, dict) and value and rng.random() < 0.8:
        out = dict(value)
        key = rng.choice(sorted(out))
        roll = rng.random()
        if roll < 0.2:
            del out[key]
        elif roll < 0.3:
            out["extra"] = rng.choice(odd)
        elif roll < 0.7:
            out[key] = _mutations(out[key], rng)
        else:
            out[key] = rng.choice(odd)
        return out
    if isinstance(value, list) and value and rng.random() < 0.7:
        items = list(value)
        index = rng.randrange(len(items))
        items[index] = _mutations(items[index], rng)
        return items
    return rng.choice(odd)


def test_fast_contract_check_never_accepts_what_jsonschema_refuses() -> None:
    """validate_data's fast path says "valid" only when jsonschema does, for every example."""
    rng = random.Random(11)
    for tpl in load_templates(TEMPLATES).values():
        check = tpl._fast_check
        assert check is not None  # every example contract is in the fast subset
        samples = [json.loads(p.read_text("utf-8"))["data"] for p in tpl.samples()]
        for _ in range(1500):
            value = _mutations(rng.choice(samples), rng)
            if check(value):
                assert _jsonschema_says_valid(tpl.contract, value), (tpl.id, value)
        for sample in samples:
            assert check(sample) == _jsonschema_says_valid(tpl.contract, sample)


def test_fast_request_check_agrees_with_the_request_schema() -> None:
    """validate_request's fast path accepts only requests the published schema accepts."""
    from ccm._schema import load_schema
    from ccm.render.template import _request_check

    schema = load_schema("request")
    check = _request_check()
    assert check is not None
    rng = random.Random(12)
    base = {"customer": {"id": "C1", "name": "A", "email": "a@example.com", "locale": "en_GB",
                         "consents": {"email": True}, "date_of_birth": "1980-01-31",
                         "address": {"lines": ["1 Road"], "postcode": "AB1"}},
            "data": {"x": 1}}
    for _ in range(3000):
        value = _mutations(base, rng)
        if check(value):
            assert _jsonschema_says_valid(schema, value), value


def test_contract_errors_still_name_path_and_rule() -> None:
    """With the fast path in front, a bad value still gets jsonschema's path and rule."""
    tpl = load_templates(TEMPLATES)["payment_reminder"]
    data = json.loads(tpl.samples()[0].read_text("utf-8"))["data"]
    with pytest.raises(DataError) as info:
        tpl.validate_data({**data, "due_date": "2025-02-30"})
    assert info.value.context["path"] == "$.data.due_date"
    assert info.value.context["rule"] == "format"


def test_request_size_budget_still_counts_escaped_json() -> None:
    """A request whose JSON (with escapes) passes 2 MB is refused, one just under is not."""
    from ccm.render.template import MAX_REQUEST_BYTES

    # json.dumps writes "\u00e9" (6 characters) for each "é".
    over = {"customer": {"id": "C1"}, "data": {"note": "é" * (MAX_REQUEST_BYTES // 6 + 10)}}
    with pytest.raises(DataError) as info:
        validate_request(over)
    assert info.value.context["rule"] == "maxBytes"
    under = {"customer": {"id": "C1"}, "data": {"note": "é" * (MAX_REQUEST_BYTES // 6 - 100)}}
    assert validate_request(under).data["note"].startswith("é")


def test_fast_check_sends_values_that_are_not_plain_json_to_jsonschema() -> None:
    """A tuple, or a number or boolean enum, never gets the compiled check's "valid"."""
    from ccm.render._contracts import compile_check
    from ccm.render.template import _FORMATS

    check = compile_check({"type": "array", "items": {"type": "string"}}, _FORMATS)
    assert check is not None
    assert check(["a"]) and not check(("a",))
    assert compile_check({"enum": [1, 2]}, _FORMATS) is None  # 1 == True in Python
    assert compile_check({"prefixItems": [{"type": "string"}]}, _FORMATS) is None


def test_template_yaml_alias_bomb_is_a_short_template_error(tmp_path: Path) -> None:
    """template.yaml is read by the same bounded loader as pack.yaml: aliases cannot explode."""
    _, templates = copy_examples(tmp_path)
    manifest = templates / "welcome" / "template.yaml"
    lists = ["&l0 [" + ", ".join(["lol"] * 9) + "]"]
    lists += [f"&l{n} [" + ", ".join([f"*l{n - 1}"] * 9) + "]" for n in range(1, 7)]
    manifest.write_text(manifest.read_text("utf-8") + "tags: [" + ", ".join(lists) + "]\n",
                        "utf-8")
    with pytest.raises(TemplateError, match=r"template\.yaml: invalid YAML: its aliases \(\*name\) "
                                            r"expand to more than 100,000 values"):
        ccm.load_template(templates / "welcome")


def test_a_validated_request_is_not_walked_again_by_the_engine(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """validate_request checks a request's text once; the engine trusts a Request it made
    (a batch worker validates, then renders) and checks a Request made by hand."""
    import ccm.render.engine as engine_mod
    from ccm.message import Request
    from tests.examples_helpers import daytime, sample

    walked: list[object] = []
    real = engine_mod.validate_request

    def counting(obj: object) -> Request:
        walked.append(obj)
        return real(obj)

    monkeypatch.setattr(engine_mod, "validate_request", counting)
    engine = ccm.Engine("brand_packs/acme", "templates", record=None, clock=daytime)
    request = sample("payment_reminder")
    engine.render("payment_reminder", validate_request(request), channel="sms")
    assert walked == []
    by_hand = Request(customer=dict(request["customer"]), data=dict(request["data"]))
    engine.render("payment_reminder", by_hand, channel="sms")
    assert len(walked) == 1
    by_hand.customer["name"] = "Eve\x1b[2J"
    with pytest.raises(DataError, match=r"customer\.name"):
        engine.render("payment_reminder", by_hand, channel="sms")
