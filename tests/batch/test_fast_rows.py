"""The batch worker's SMS fast path (ccm/render/smsplan.py) against the full path.

The fast path must give exactly the bytes and record fields of
:meth:`Engine.render` (through the worker's full path), or decline so the
full path runs; it never makes a message the full path refuses.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ccm.batch._worker import (
    _fast_sms,
    _plan_for,
    _render_full,
    _render_row,
    _Spec,
    render_rows,
)
from ccm.errors import CCMError
from ccm.render.engine import DIGEST_ENCODER, Engine
from ccm.render.options import RenderOptions
from ccm.render.smsplan import SmsPlan, plain_request, request_json
from tests.batch.conftest import PACK, TEMPLATES, TEST_TEMPLATES
from tests.strategies import customer_ids, customer_names, sms_texts

CREATED = datetime(2025, 11, 3, 10, 30, tzinfo=UTC)
#: Midday and night in Europe: quiet hours stop some customers at the second.
NOWS = (datetime(2025, 11, 3, 12, 0, tzinfo=UTC), datetime(2025, 11, 3, 23, 30, tzinfo=UTC))

_ENGINES: dict[str, Engine] = {}


def _engine(templates: str) -> Engine:
    engine = _ENGINES.get(templates)
    if engine is None:
        engine = _ENGINES[templates] = Engine(PACK, templates, record=None, run_id="run-1",
                                              clock=lambda: CREATED)
    return engine


def _samples(folder: Any, template: str) -> list[dict[str, Any]]:
    files = sorted((folder / template / "samples").glob("*.json"))
    return [json.loads(p.read_text("utf-8")) for p in files]


CASES = [
    (str(TEMPLATES), "payment_reminder", _samples(TEMPLATES, "payment_reminder")),
    (str(TEMPLATES), "product_offer", _samples(TEMPLATES, "product_offer")),
    (str(TEMPLATES), "monthly_statement", _samples(TEMPLATES, "monthly_statement")),
    (str(TEST_TEMPLATES), "quick_note", [{
        "customer": {"id": "N1", "name": "Ann", "phone": "+447700900123",
                     "consents": {"sms": True}},
        "data": {"amount": 12.5}}]),
]


def _spec(templates: str, template: str, now: datetime, locale: str | None = None) -> _Spec:
    return _Spec(pack=str(PACK), templates=templates, template=template, run_id="run-1",
                 channels=("sms",), locale=locale, now=now)


def _without_id(rendered: Any) -> tuple[Any, ...]:
    """What must be equal between two renders of one row (the message id is random)."""
    message_id = rendered.entry["message_id"]
    entry = {k: v for k, v in rendered.entry.items() if k != "message_id"}
    entry["idempotency_key"] = entry["idempotency_key"].replace(message_id, "<id>")
    summary = {k: v for k, v in rendered.summary.items() if k != "message_id"}
    content = rendered.content.replace(message_id.encode(), b"<id>")
    if entry["content_sha256"] is not None and message_id.encode() in rendered.content:
        entry.pop("content_sha256")
        summary.pop("sha256")
    return (rendered.channel, rendered.status, rendered.key.replace(message_id, "<id>"),
            rendered.filename, entry, summary,
            content, rendered.archival, rendered.print_pdf)


_TEXT = st.one_of(sms_texts(60), customer_names(), st.text(max_size=20))
_JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
              st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=6,
)


@st.composite
def rows(draw: st.DrawFn) -> tuple[str, str, dict[str, Any], datetime, str | None]:
    """A request derived from a template's samples, often valid, sometimes broken anywhere."""
    templates, template, samples = draw(st.sampled_from(CASES))
    req = copy.deepcopy(draw(st.sampled_from(samples)))
    customer = req["customer"]
    kind = draw(st.sampled_from(["text"] * 6 + ["int", "empty"]))
    ids = {"int": st.integers(0, 10**9), "empty": st.just("")}
    customer["id"] = draw(ids.get(kind, customer_ids()))
    if draw(st.booleans()):
        customer["name"] = draw(_TEXT)
    customer["locale"] = draw(st.sampled_from(
        ["en_GB", "de_DE", "ar", "en-US", "fr_FR", "", "xx", customer.get("locale") or "de"]))
    customer["timezone"] = draw(st.sampled_from(
        ["Europe/London", "Asia/Tokyo", "America/New_York", customer.get("timezone") or "UTC"]))
    customer["consents"] = {"sms": draw(st.sampled_from([True, True, True, False])),
                            "email": True}
    phone = draw(st.sampled_from(["+447700900123", "", None] + ["keep"] * 7))
    if phone != "keep":
        customer["phone"] = phone
    for _ in range(draw(st.sampled_from([0, 0, 0, 0, 1, 2]))):
        where = draw(st.sampled_from(["data", "customer", "request"]))
        target = req if where == "request" else req[where]
        if not isinstance(target, dict):
            break
        keys = sorted(target) or ["x"]
        key = draw(st.one_of(st.sampled_from(keys), st.text(max_size=6)))
        target[key] = draw(st.one_of(_JSON, _TEXT))
    if draw(st.sampled_from([False] * 9 + [True])):
        customer["address"] = {"lines": ("Flat 1", "High St")}  # a tuple: not JSON
    locale = draw(st.sampled_from([None, None, "de_DE"]))
    return templates, template, req, draw(st.sampled_from(NOWS)), locale


@given(rows())
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_fast_path_gives_the_full_paths_message_or_declines(
        case: tuple[str, str, dict[str, Any], datetime, str | None]) -> None:
    """A fast SMS row equals the full path (Engine.render): bytes, record fields; or is None."""
    templates, template, req, now, locale = case
    engine = _engine(templates)
    spec = _spec(templates, template, now, locale)
    try:
        fast = _fast_sms(engine, spec, copy.deepcopy(req), None)
    except CCMError as exc:  # the contact policy's own errors (an unknown time zone)
        fast = exc
    try:
        full = _render_full(engine, spec, copy.deepcopy(req), ("sms",), None)
    except CCMError as exc:
        event(f"refused by the full path: {type(exc).__name__} {exc.context.get('path')}")
        assert fast is None or (type(fast) is type(exc) and str(fast) == str(exc))
        return
    assert not isinstance(fast, CCMError)
    event("declined" if fast is None else f"made by the fast path: {fast.status}")
    if fast is None:
        return
    assert len(full) == 1
    assert _without_id(fast) == _without_id(full[0])
    assert fast.entry["params_sha256"] == engine._params_sha256(
        engine.template(template), direct_request(req), "sms", fast.entry["locale"])
    if fast.status != "generated":
        return
    # Without a record Engine.render applies no contact policy: compare what it makes.
    direct = engine.render(template, copy.deepcopy(req), "sms", locale, record=False)
    assert direct.content.replace(direct.message_id.encode(), b"<id>") == \
        fast.content.replace(fast.entry["message_id"].encode(), b"<id>")


def _answer(result: Any) -> tuple[Any, ...]:
    """What must be equal between two renders of one row's result (message ids aside)."""
    config = result.config_error
    return (result.line, result.customer_id, result.error, result.recycle,
            None if config is None else (type(config), str(config)),
            [_without_id(m) for m in result.messages])


@contextlib.contextmanager
def _worker_engine(spec: _Spec, engine: Engine) -> Iterator[None]:
    """The worker's engine for ``spec`` is ``engine`` (its clock fixed) while this lasts."""
    from ccm.batch import _worker

    key = (spec.pack, spec.templates, spec.options)
    saved = _worker._ENGINES.get(key)
    _worker._ENGINES[key] = engine
    try:
        yield
    finally:
        if saved is None:
            del _worker._ENGINES[key]
        else:
            _worker._ENGINES[key] = saved


@st.composite
def tasks(draw: st.DrawFn) -> tuple[_Spec, list[tuple[int, Any, Any, Any]]]:
    """A worker task of SMS rows: requests as :func:`rows` draws them (of other templates
    too), some with consent overrides."""
    templates, template, _, now, locale = draw(rows())
    task = []
    for line in range(1, draw(st.integers(2, 6)) + 1):
        req = draw(rows())[2]
        channels = draw(st.sampled_from([None, None, ("sms",)]))
        overrides = draw(st.sampled_from([None, None, {"sms": False}, {"blocked:sms": False}]))
        task.append((line, req, channels, overrides))
    return _spec(templates, template, now, locale), task


@given(tasks())
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_a_task_of_sms_rows_gives_what_its_rows_give_one_by_one(
        task: tuple[_Spec, list[tuple[int, Any, Any, Any]]]) -> None:
    """render_rows, which takes SMS rows step by step over the task, answers each row as
    _render_row does alone: messages, errors, suppressions."""
    spec, task_rows = task
    engine = _engine(spec.templates)
    with _worker_engine(spec, engine):
        together = render_rows(spec, copy.deepcopy(task_rows))
    alone = [_render_row(engine, spec, *row) for row in copy.deepcopy(task_rows)]
    assert [_answer(r) for r in together] == [_answer(r) for r in alone]
    event(f"errors: {sum(r.error is not None for r in alone)}")


def test_a_row_for_another_channel_in_a_task_of_sms_rows_is_made_as_alone() -> None:
    """A row of an SMS task that asks for email is made by _render_row, in its place."""
    spec = _spec(str(TEMPLATES), "payment_reminder", NOWS[0])
    engine = _engine(spec.templates)
    sample = CASES[0][2][0]
    task = [(line, copy.deepcopy(sample), channels, None)
            for line, channels in ((1, None), (2, ("email",)), (3, ("sms",)))]
    with _worker_engine(spec, engine):
        together = render_rows(spec, copy.deepcopy(task))
    alone = [_render_row(engine, spec, *row) for row in copy.deepcopy(task)]
    assert [[(m.channel, m.status, m.filename) for m in r.messages] for r in together] == \
        [[(m.channel, m.status, m.filename) for m in r.messages] for r in alone]
    assert [m.channel for r in together for m in r.messages] == ["sms", "email", "sms"]
    assert [_answer(r) for r in together][::2] == [_answer(r) for r in alone][::2]


def test_a_task_of_sms_rows_reads_the_clock_in_the_rows_order() -> None:
    """Step by step over a task, each row's message id and created_at still come from its
    own clock read, in the rows' order, also for a row the full path makes."""
    times = iter(datetime(2025, 11, 3, 10, 30, second, tzinfo=UTC) for second in range(60))
    engine = Engine(PACK, TEMPLATES, record=None, run_id="run-1", clock=lambda: next(times))
    spec = _spec(str(TEMPLATES), "payment_reminder", NOWS[0])
    with _worker_engine(spec, engine):
        sample = CASES[0][2][0]
        task = []
        for line in range(1, 5):
            req = copy.deepcopy(sample)
            req["customer"].update(id=f"C{line}", consents={"sms": True},
                                   phone="+447700900123", timezone="Europe/London")
            if line == 2:
                req["customer"]["extra"] = (1,)  # a tuple: the plan declines, the full path makes
            task.append((line, req, None, None))
        made = render_rows(spec, task)
    created = [r.messages[0].entry["created_at"] for r in made]
    assert created == [f"2025-11-03T10:30:{second:02d}+00:00" for second in range(4)]
    assert [r.messages[0].entry["message_id"][:12] for r in made] == \
        [f"{int(datetime.fromisoformat(at).timestamp() * 1000):012x}" for at in created]


@given(st.dictionaries(st.text(max_size=6), st.one_of(_JSON, _TEXT), max_size=4))
@settings(max_examples=300)
def test_the_request_json_is_the_encoders(obj: dict[str, Any]) -> None:
    """Property: for what plain_request accepts, request_json writes what the digest's
    encoder writes (sorted keys, ASCII escapes, float reprs)."""
    if plain_request(obj):
        assert request_json(obj) == DIGEST_ENCODER.encode(obj)
    event(f"plain: {plain_request(obj)}")


def direct_request(req: dict[str, Any]) -> Any:
    from ccm.render.template import validate_request

    return validate_request(copy.deepcopy(req))


@pytest.mark.parametrize(("templates", "template", "samples"), CASES,
                         ids=[c[1] for c in CASES])
def test_every_sample_takes_the_fast_path(templates: str, template: str,
                                          samples: list[dict[str, Any]]) -> None:
    """Valid samples with SMS consent are made by the fast path, as the full path makes them."""
    engine = _engine(templates)
    spec = _spec(templates, template, NOWS[0])
    for sample in samples:
        req = copy.deepcopy(sample)
        req["customer"]["consents"] = {"sms": True}
        req["customer"]["phone"] = "+447700900123"
        req["customer"]["timezone"] = "Europe/London"
        fast = _fast_sms(engine, spec, copy.deepcopy(req), None)
        assert fast is not None
        assert _without_id(fast) == _without_id(_render_full(engine, spec, req, ("sms",),
                                                             None)[0])


def test_a_bad_row_still_names_its_field() -> None:
    """A request the fast path declines comes back as the full path's error naming the field."""
    engine = _engine(str(TEMPLATES))
    spec = _spec(str(TEMPLATES), "payment_reminder", NOWS[0])
    req = copy.deepcopy(CASES[0][2][0])
    req["data"]["amount"] = -5
    result = _render_row(engine, spec, 7, req, None, None)
    assert result.messages == []
    assert result.error is not None
    assert result.error["error"] == "DataError"
    assert result.error["path"] == "$.data.amount"
    assert "-5" not in result.error["message"]


def test_the_plan_does_not_apply_where_the_engine_does_more() -> None:
    """Approval checks and linked documents keep every row on the full path."""
    approval = Engine(PACK, TEMPLATES, record=None,
                      options=RenderOptions(require_approval=True))
    assert SmsPlan.build(approval, "payment_reminder") is None
    linked = Engine(PACK, TEMPLATES, record=None,
                    options=RenderOptions(document_delivery="link"))
    assert SmsPlan.build(linked, "monthly_statement") is None
    assert SmsPlan.build(_engine(str(TEMPLATES)), "welcome") is None  # no SMS channel
    assert SmsPlan.build(_engine(str(TEMPLATES)), "payment_reminder", "xx_XX") is None


@given(_JSON)
def test_the_request_walk_accepts_only_plain_finite_shallow_json(value: Any) -> None:
    """plain_request refuses tuples, NaN, non-string keys and depth over the limit."""
    req = {"customer": {"id": "1"}, "data": {"x": value}}
    assert plain_request(req) == _finite(value)
    assert not plain_request({"customer": {"id": "1"}, "data": {"x": (1, 2)}})
    assert not plain_request({"customer": {"id": "1"}, "data": {1: 2}})
    deep: Any = 1
    for _ in range(40):
        deep = [deep]
    assert not plain_request({"customer": {"id": "1"}, "data": {"x": deep}})


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    return True


@given(st.one_of(customer_ids(), st.from_regex(r"[A-Za-z0-9_.-]{1,60}", fullmatch=True),
                 st.sampled_from(["C" * 58, "C" * 59, "C" * 60, "C" * 61, "COM1", "nul.x",
                                  "Lpt¹", "x.", ".x", "-x", "_x", "a b", "é", "x\x00y"])),
       st.sampled_from(["en_GB", "de_DE", "ar", "con", "a.b", "x.", "e" * 60, "-x"]))
def test_the_plans_file_names_are_output_filename(customer_id: str, locale: str) -> None:
    """SmsPlan.filename gives output_filename's name for every customer id and locale."""
    from ccm.message import output_filename

    plan = SmsPlan.build(_engine(str(TEMPLATES)), "payment_reminder")
    assert plan is not None
    assert plan.filename(customer_id, locale) == output_filename(
        customer_id, "payment_reminder", locale, "sms")


@given(st.lists(st.one_of(st.sampled_from(["{name}", "{salutation}", "{x}", "{", "}", "{}"]),
                          st.text(max_size=5)), max_size=6).map("".join),
       st.dictionaries(st.sampled_from(["name", "salutation", "x"]),
                       st.one_of(st.text(max_size=6), st.integers(), st.booleans(), st.none()),
                       max_size=3))
def test_the_plans_greeting_is_the_engines(pattern: str, customer: dict[str, Any]) -> None:
    """The greeting split once per locale gives Engine's greeting for every pattern and customer."""
    from types import SimpleNamespace

    from ccm.render.engine import _greeting as engine_greeting
    from ccm.render.smsplan import _greeting, split_greeting

    literals, fields = split_greeting(pattern)
    parts = SimpleNamespace(greeting=pattern, fallback="Hello", literals=literals, fields=fields)
    assert _greeting(parts, customer) == engine_greeting(pattern, "Hello", customer)


def test_message_ids_are_uuid7_of_the_entrys_created_at() -> None:
    """Both paths give UUID version 7 ids whose time is the entry's ``created_at`` (in ms),
    for sent and for suppressed messages (midday and night: quiet hours stop some)."""
    import uuid

    tpl_dir, template, samples = CASES[0]
    seen = set()
    for now in NOWS:
        spec = _spec(tpl_dir, template, now)
        engine = _engine(tpl_dir)
        for sample in samples:
            fast = _fast_sms(engine, spec, copy.deepcopy(sample), None)
            full = _render_full(engine, spec, copy.deepcopy(sample), ("sms",), None)
            for rendered in ([] if fast is None else [fast]) + full:
                value = rendered.entry["message_id"]
                parsed = uuid.UUID(hex=value)
                assert (parsed.version, parsed.variant) == (7, uuid.RFC_4122)
                created = datetime.fromisoformat(rendered.entry["created_at"])
                assert int(value[:12], 16) == int(created.timestamp() * 1000)
                seen.add(rendered.status)
    assert seen == {"generated", "suppressed"}


def test_a_row_over_its_budget_fails_once_with_the_full_paths_error(tmp_path: Any) -> None:
    """A template over its output budget raises the full path's BudgetError from the plan."""
    import shutil

    from ccm.errors import BudgetError

    folder = tmp_path / "templates"
    shutil.copytree(TEST_TEMPLATES / "quick_note", folder / "quick_note")
    manifest = folder / "quick_note" / "template.yaml"
    manifest.write_text(manifest.read_text("utf-8") + "budget:\n  max_output_bytes: 2048\n",
                        "utf-8")
    (folder / "quick_note" / "sms.txt.j2").write_text(
        '{% extends "pack/sms.txt.j2" %}\n'
        "{% block content %}{% for i in range(5000) %}note {% endfor %}{% endblock %}\n",
        "utf-8")
    engine = Engine(PACK, folder, record=None, run_id="run-1", clock=lambda: CREATED)
    spec = _spec(str(folder), "quick_note", NOWS[0])
    req = copy.deepcopy(CASES[-1][2][0])
    with pytest.raises(BudgetError) as fast:
        _fast_sms(engine, spec, copy.deepcopy(req), None)
    with pytest.raises(BudgetError) as full:
        _render_full(engine, spec, copy.deepcopy(req), ("sms",), None)
    assert str(fast.value) == str(full.value)
    assert fast.value.context["budget"] == "size"
    result = _render_row(engine, spec, 3, req, None, None)
    assert result.error is not None
    assert result.error["error"] == "BudgetError"
    assert result.error["budget"] == "size"


@pytest.mark.parametrize(("source", "parent"), [
    ('{% extends "pack/sms.txt.j2" %}\n{% block content %}x{% endblock %}\n',
     "pack/sms.txt.j2"),
    ('{% extends "pack/sms.txt.j2" %}\n\n{% block content %}x{% endblock %} text, dropped\n'
     '{% block other %}y{% endblock %}', "pack/sms.txt.j2"),
    ('{% extends "pack/sms.txt.j2" %}{% set note = "N" %}'
     "{% block content %}{{ note }}{% endblock %}", None),
    ('{% set note = "N" %}{% extends "pack/sms.txt.j2" %}'
     "{% block content %}{{ note }}{% endblock %}", None),
    ('before {% extends "pack/sms.txt.j2" %}{% block content %}x{% endblock %}', None),
    ('{% import "pack/sms.txt.j2" as m %}{% extends "pack/sms.txt.j2" %}', None),
    ("{% extends data.layout %}{% block content %}x{% endblock %}", None),
    ('{% if data.amount %}{% extends "pack/sms.txt.j2" %}{% endif %}', None),
    ('{% extends "pack/sms.txt.j2" %}{% extends "pack/sms.txt.j2" %}', None),
    ('{% extends "pack/sms.txt.j2" %}{{ data.amount }}', None),
    ("Your note: {{ data.amount }}", None),
    ("{% extends 'pack/sms.txt.j2' %}{% block content %}{% if x %}", None),  # no parse
])
def test_the_plan_finds_a_source_that_only_extends_its_layout(
        tmp_path: Any, source: str, parent: str | None) -> None:
    """extends_only names the layout only when the source's root does nothing else."""
    from ccm.render.environment import create_environment
    from ccm.render.smsplan import extends_only

    (tmp_path / "layouts").mkdir()
    (tmp_path / "layouts" / "sms.txt.j2").write_text("{% block content %}{% endblock %}")
    (tmp_path / "templates" / "t").mkdir(parents=True)
    (tmp_path / "templates" / "t" / "sms.txt.j2").write_text(source, "utf-8")
    env = create_environment(tmp_path / "layouts", tmp_path / "templates", tmp_path)
    assert extends_only(env, "templates/t/sms.txt.j2") == parent


#: quick_note's SMS written in ways the plan renders through its layout and ways it does
#: not (a top-level set, no layout at all, a conditional layout), fine and broken.
_SOURCES = [
    ('{% extends "pack/sms.txt.j2" %}\n{% block content %}Note: '
     '{{ data.amount|money("GBP") }}.{% endblock %}\n', True),
    ('{% extends "pack/sms.txt.j2" %}{% set note = "Note" %}\n'
     '{% block content %}{{ note }}: {{ data.amount|money("GBP") }}.{% endblock %}\n', False),
    ('Note for {{ customer.name }}: {{ data.amount|money("GBP") }} {{ message.id }}', False),
    ('{% extends "pack/sms.txt.j2" if data.amount > 1 else "pack/sms.txt.j2" %}'
     "{% block content %}{{ data.amount }}{% endblock %}", False),
    ('{% extends "pack/sms.txt.j2" %}\n{% block content %}\n\n{{ data.missing.x }}'
     "{% endblock %}\n", True),
    ('{% extends "pack/sms.txt.j2" %}\n{% block content %}{{ lipsum }}{% endblock %}', True),
    ('{% extends "pack/sms.txt.j2" %}\n{% block content %}{{ brand.sms.get("x", "-") }} '
     "{{ brand.sms.keys()|list|length > 0 }} {{ message.created_at }}{% endblock %}", True),
    ('{% extends "pack/sms.txt.j2" %}\n{% block content %}   {% endblock %}', True),
    ('{% extends "pack/missing.txt.j2" %}{% block content %}x{% endblock %}', False),
    ('{% extends "templates/product_offer/sms.txt.j2" %}{% block content %}x{% endblock %}',
     False),
]


@pytest.mark.parametrize(("source", "through_layout"), _SOURCES)
def test_every_kind_of_source_gives_the_full_paths_message_or_error(
        tmp_path: Any, source: str, through_layout: bool) -> None:
    """Sources the plan renders through their layout and sources it renders through their
    own root give the full path's bytes, entry and summary, or its very error."""
    import shutil

    folder = tmp_path / "templates"
    shutil.copytree(TEST_TEMPLATES / "quick_note", folder / "quick_note")
    (folder / "quick_note" / "sms.txt.j2").write_text(source, "utf-8")
    engine = Engine(PACK, folder, record=None, run_id="run-1", clock=lambda: CREATED)
    spec = _spec(str(folder), "quick_note", NOWS[0])
    req = CASES[-1][2][0]
    try:
        full: Any = _render_full(engine, spec, copy.deepcopy(req), ("sms",), None)
    except CCMError as exc:
        full = exc
    try:
        fast: Any = _fast_sms(engine, spec, copy.deepcopy(req), None)
    except CCMError as exc:
        fast = exc
    if isinstance(full, CCMError):
        assert type(fast) is type(full)
        assert str(fast) == str(full)
        assert fast.context == full.context  # file and line included
    else:
        assert fast is not None
        assert _without_id(fast) == _without_id(full[0])
    plan = _plan_for(engine, spec)  # the plan _fast_sms rendered with
    assert plan is not None
    parts = plan._for("en_GB")
    assert parts.template is not None
    assert (parts.layout is not None) == through_layout


@pytest.mark.parametrize(("templates", "template"), [(c[0], c[1]) for c in CASES])
def test_the_example_templates_are_rendered_through_their_layout(
        templates: str, template: str) -> None:
    """Every SMS source of the examples only extends the pack's layout: the comparisons
    above test the plan's layout shortcut, not only its fallback."""
    from ccm.render.smsplan import extends_only

    engine = _engine(templates)
    tpl = engine.template(template)
    env = engine._environment(tpl, "sms", "en_GB")
    assert extends_only(env, tpl.source_name("sms")) == "pack/sms.txt.j2"


def test_a_source_changed_on_disk_after_loading_renders_through_its_own_root(
        tmp_path: Any) -> None:
    """The plan reads the source again to see whether it only extends its layout: when the
    file changed since the engine compiled it, the plan does not trust that reading."""
    import os
    import shutil

    folder = tmp_path / "templates"
    shutil.copytree(TEST_TEMPLATES / "quick_note", folder / "quick_note")
    source = folder / "quick_note" / "sms.txt.j2"
    engine = Engine(PACK, folder, record=None, run_id="run-1", clock=lambda: CREATED)
    spec = _spec(str(folder), "quick_note", NOWS[0])
    req = CASES[-1][2][0]
    full = _render_full(engine, spec, copy.deepcopy(req), ("sms",), None)  # compiles it
    stat = source.stat()
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    fast = _fast_sms(engine, spec, copy.deepcopy(req), None)
    assert fast is not None
    assert _without_id(fast) == _without_id(full[0])
    plan = _plan_for(engine, spec)
    assert plan is not None
    assert plan._for("en_GB").template is not None
    assert plan._for("en_GB").layout is None


# -- the request's walk and schema in one pass (ccm/render/_request_shape.py) ----------


class _Key(str):
    """A field name of a subclass of str: the walk refuses it."""


def _texts(most: int) -> st.SearchStrategy[str]:
    """Text, mostly short, sometimes empty, at its length limit or over it by one, or with
    controls or surrogates."""
    return st.one_of(st.text(max_size=8), st.text(max_size=8), st.text(max_size=8),
                     st.just(""), st.just("b" * most), st.just("c" * (most + 1)),
                     st.sampled_from(["a\x00b", "\ud800", "Ünïcode"]))


_WRONG = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(),
                   st.just([]), st.just({}), st.just(("a",)), st.just(_Key("k")))
_CUSTOMER_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "id": st.one_of(_texts(128), _texts(128), st.integers(-10**20, 10**20),
                    st.sampled_from([1.0, True, _Key("C1")])),
    "name": _texts(200), "salutation": _texts(200), "locale": _texts(35),
    "timezone": _texts(64), "segment": _texts(64), "document_code": _texts(64),
    "email": st.one_of(st.sampled_from(["a@example.com", "a.b@x-y.co.uk", "", "a@b",
                                        "A <a@example.com>", "a@example.com\n",
                                        "a" * 310 + "@example.com"]), st.emails()),
    "phone": st.one_of(st.sampled_from(["+447700900123", "", "+44 7700", "+0123456789",
                                        "+1234567", "+123456789012345", "447700900123",
                                        "+447700900123\n"]),
                       st.from_regex(r"\+[0-9]{6,16}", fullmatch=True)),
    "date_of_birth": st.sampled_from(["1984-03-17", "1984-02-30", "84-03-17", "",
                                      "1984-03-17T00:00"]),
    "consents": st.dictionaries(st.one_of(st.sampled_from(["sms", "email", "pdf"]),
                                          st.text(max_size=3), st.just(_Key("sms"))),
                                st.one_of(st.booleans(), _WRONG), max_size=3),
    "address": st.dictionaries(
        st.one_of(st.sampled_from(["lines", "postcode", "city", "country"] * 3),
                  st.text(max_size=3)),
        st.one_of(_texts(16), _texts(100),
                  st.lists(st.one_of(_texts(100), _WRONG), max_size=7), _WRONG),
        max_size=4),
}


@st.composite
def near_requests(draw: st.DrawFn) -> Any:
    """Requests near ccm's request schema: each field valid, at its limits or wrong."""
    customer: dict[Any, Any] = {}
    keys = draw(st.lists(st.sampled_from(sorted(_CUSTOMER_FIELDS)), unique=True))
    if "id" not in keys and draw(st.integers(0, 9)):
        keys.append("id")
    for key in keys:
        customer[key] = draw(_WRONG if draw(st.integers(0, 29)) == 0
                             else _CUSTOMER_FIELDS[key])
    if draw(st.integers(0, 9)) == 0:  # a field the schema allows as anything
        customer[draw(st.one_of(st.text(max_size=4), st.just(_Key("name")), st.just(1)))] = \
            draw(st.one_of(_JSON, _WRONG))
    req: dict[Any, Any] = {"customer": customer}
    data = draw(st.sampled_from(["data", "data", "data", "none", "wrong"]))
    if data == "data":
        req["data"] = draw(st.dictionaries(st.text(max_size=4), _JSON, max_size=4))
    elif data == "wrong":
        req["data"] = draw(_WRONG)
    if draw(st.integers(0, 9)) == 0:
        req[draw(st.sampled_from(["x", "", _Key("customer"), 2]))] = draw(_JSON)
    if draw(st.integers(0, 9)) == 0:  # about the walk's depth limit
        deep: Any = draw(st.one_of(st.integers(), st.just([]), st.just({})))
        for _ in range(draw(st.integers(28, 31))):
            deep = [deep]
        req["data"] = {"deep": deep}
    other = draw(st.integers(0, 19))
    if other == 0:
        return draw(_WRONG)
    return {"customer": customer, "data": None} if other == 1 else req


_KNOWN = frozenset(_CUSTOMER_FIELDS)


@given(near_requests())
@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
def test_the_one_pass_check_is_the_walk_and_the_compiled_schema(obj: Any) -> None:
    """Property: the fused check accepts only what the walk and the compiled request schema
    both accept, and (for customers of the schema's own fields and an id that is a str or
    an int) everything they accept: the plan's answers cannot move."""
    from ccm.render.template import request_fast_validator, request_shape_check

    _SHAPE_CHECK = request_shape_check()
    assert _SHAPE_CHECK is not None
    validate = request_fast_validator()
    both = plain_request(obj)
    if both:
        try:
            validate(obj)
        except Exception:
            both = False
    sure = _SHAPE_CHECK(obj)
    if sure:
        assert both
    customer = obj.get("customer") if type(obj) is dict else None
    ordinary = (type(customer) is dict and customer.keys() <= _KNOWN
                and type(customer.get("id")) in (str, int))
    if ordinary:
        assert sure == both
    event(f"sure: {sure}, walk and schema: {both}, ordinary: {ordinary}")


def _nested(count: int) -> Any:
    deep: Any = 1
    for _ in range(count):
        deep = [deep]
    return deep


@pytest.mark.parametrize(("obj", "sure"), [
    ({"customer": {"id": "C1"}}, True),
    ({"customer": {"id": 7}, "data": {}}, True),
    ({"customer": {"id": "x" * 128}}, True),
    ({"customer": {"id": "x" * 129}}, False),
    ({"customer": {"id": ""}}, False),
    ({"customer": {"id": True}}, False),
    ({"customer": {"id": 1.0}}, False),  # an integer to the schema: the walk and it decide
    ({"customer": {"name": "A"}}, False),
    ({"customer": {"id": "C1"}, "data": None}, False),
    ({"customer": {"id": "C1"}, "other": {}}, False),
    ({_Key("customer"): {"id": "C1"}}, False),
    ({"customer": {"id": "C1", _Key("name"): "A"}}, False),
    ({"customer": {"id": "C1", "phone": "+447700900123"}}, True),
    ({"customer": {"id": "C1", "phone": "+447700900123\n"}}, False),
    ({"customer": {"id": "C1", "email": ""}}, True),
    ({"customer": {"id": "C1", "date_of_birth": "1984-02-30"}}, False),
    ({"customer": {"id": "C1", "consents": {"sms": 1}}}, False),
    ({"customer": {"id": "C1", "address": {"lines": ["a"] * 6}}}, True),
    ({"customer": {"id": "C1", "address": {"lines": ["a"] * 7}}}, False),
    ({"customer": {"id": "C1", "address": {"lines": ("a",)}}}, False),
    ({"customer": {"id": "C1", "address": {"flat": "2"}}}, False),
    ({"customer": {"id": "C1"}, "data": {"x": _nested(29)}}, True),  # 32 levels deep
    ({"customer": {"id": "C1"}, "data": {"x": _nested(30)}}, False),
    ({"customer": {"id": "C1"}, "data": {"x": [float("nan")]}}, False),
    ({"customer": {"id": "C1"}, "data": {"x": {1: 2}}}, False),
])
def test_the_one_pass_check_at_the_schemas_edges(obj: Any, sure: bool) -> None:
    """The fused check's answer at each limit, and the walk's and compiled schema's with it
    (accepted by both for every True)."""
    from ccm.render.template import request_fast_validator, request_shape_check

    _SHAPE_CHECK = request_shape_check()
    assert _SHAPE_CHECK is not None
    assert _SHAPE_CHECK(obj) is sure
    if sure:
        assert plain_request(obj)
        request_fast_validator()(obj)


def test_the_one_pass_check_is_written_for_this_request_schema() -> None:
    """ccm/render/_request_shape.py implements one version of the request schema: a change
    to the schema fails here (read that module against it, then update PINNED)."""
    from ccm._schema import load_schema
    from ccm.render._request_shape import PINNED, schema_sha256

    assert schema_sha256(load_schema("request")) == PINNED, (
        "ccm/schemas/request.schema.json changed: check ccm/render/_request_shape.py "
        "against it, then set its PINNED to the new schema_sha256")


def test_another_request_schema_turns_the_one_pass_check_off(monkeypatch: Any) -> None:
    """With a schema the check was not written for, there is no check (the plan then runs
    the walk and the compiled schema), and the plan still makes the same messages."""
    import ccm.render._request_shape as shape
    import ccm.render.smsplan as smsplan
    from ccm._schema import load_schema
    from ccm.render.template import _FORMATS, MAX_DEPTH

    changed = copy.deepcopy(load_schema("request"))  # (load_schema's answer is shared)
    changed["properties"]["customer"]["properties"]["name"]["maxLength"] = 100
    monkeypatch.setattr(shape, "load_schema", lambda name: changed)
    assert shape.request_check(MAX_DEPTH, _FORMATS) is None
    monkeypatch.undo()
    assert shape.request_check(MAX_DEPTH, _FORMATS) is not None

    engine = _engine(str(TEMPLATES))
    plan = SmsPlan.build(engine, "payment_reminder")
    assert plan is not None
    reqs = [copy.deepcopy(sample) for sample in CASES[0][2]]
    fused = [plan.request(copy.deepcopy(r)) for r in reqs]
    monkeypatch.setattr(smsplan, "request_shape_check", lambda: None)
    assert [plan.request(copy.deepcopy(r)) for r in reqs] == fused
    assert all(answer is not None for answer in fused)


def _validated(obj: Any) -> Any:
    from ccm.errors import DataError
    from ccm.render.template import validate_request

    try:
        req = validate_request(obj)
    except DataError as exc:
        return ("error", str(exc), dict(exc.context))
    return ("request", req.customer, req.data, getattr(req, "_text_checked", None))


@given(obj=near_requests())
@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow,
                                                    HealthCheck.function_scoped_fixture])
def test_validate_request_answers_as_its_full_checks(obj: Any, monkeypatch: Any) -> None:
    """Property: ``validate_request``'s shortcut (the one-pass check, then the compact
    JSON for size and text) gives the Request, or the error, its full checks give."""
    import ccm.render.template as template

    quick = _validated(copy.deepcopy(obj))
    with monkeypatch.context() as patch:
        patch.setattr(template, "request_shape_check", lambda: None)
        full = _validated(copy.deepcopy(obj))
    assert quick == full


@pytest.mark.parametrize("obj", [
    {"customer": {"id": "C1"}, "data": {"t": "a\x01b"}},
    {"customer": {"id": "C1"}, "data": {"t": "\ud800"}},
    {"customer": {"id": "C1"}, "data": {"t": "\\b \\u0001 tab\there"}},
    {"customer": {"id": "C1", "timezone": "Mars/Olympus"}},
    {"customer": {"id": "C1"}, "data": {"t": "x" * 2_000_001}},
])
def test_validate_requests_shortcut_leaves_refusals_to_the_full_checks(
        obj: Any, monkeypatch: Any) -> None:
    """Text the record cannot hold, an unknown zone, a request over the size budget: the
    same error with the shortcut as without (and a plain backslash is no false refusal)."""
    import ccm.render.template as template

    quick = _validated(copy.deepcopy(obj))
    monkeypatch.setattr(template, "request_shape_check", lambda: None)
    assert quick == _validated(copy.deepcopy(obj))
