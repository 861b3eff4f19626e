"""The benchmarks' naive loops write ccm's text, with Babel as a developer would call it.

``benchmarks/`` prints ratios of ccm against naive loops (docs/performance.md).
Those loops must not borrow ccm's own formatters (they would be credited with
ccm's work) and must render the very text ccm renders (or the ratio compares
unlike things). CI does not run the benchmarks; this keeps their baseline honest.
"""

from __future__ import annotations

import sqlite3
import sys
import time
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


@pytest.fixture(scope="module")
def floor_bench(common: Any) -> Any:
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import floor_bench
    finally:
        sys.path.remove(str(BENCHMARKS))
    return floor_bench


@pytest.mark.parametrize("channel", ["sms", "email"])
def test_the_floor_writes_a_record_ccm_verifies(common: Any, floor_bench: Any, tmp_path: Path,
                                                channel: str) -> None:
    """The floor loop does the record's whole work: ccm verifies its chain and opens its
    archive, and every output line holds what the record holds."""
    import json

    from ccm.record import MasterKey, Record
    from ccm.render.engine import Engine

    master = MasterKey.generate()
    requests = list(common.requests_for("payment_reminder", 12, prefix="T"))
    texts = None
    if channel == "email":
        engine = Engine(common.PACK, common.TEMPLATES, record=None, clock=floor_bench._clock)
        texts = [engine.render("payment_reminder", r, "email", record=False).content.decode()
                 for r in requests]
    floor = floor_bench.Floor(channel, requests, master, texts)
    folder = floor.new_folder(tmp_path, "run")
    floor.run(folder)
    lines = [json.loads(raw) for raw in (folder / "messages.jsonl").read_bytes().splitlines()]
    assert len(lines) == 12
    assert {line["customer_id"] for line in lines} == {f"T{i:07d}" for i in range(12)}
    record = Record(f"sqlite:///{folder / 'record.db'}", master_key=master)
    try:
        report = record.verify()
        assert report.ok and report.checked == 12 and report.customers == 12
        for line in lines:
            assert record.content(line["message_id"]).decode() == line["content"]
    finally:
        record.close()
    if texts is not None:
        assert [line["content"] for line in lines] == texts
    else:
        assert "Ihre Zahlung" in "".join(line["content"] for line in lines)  # translated


def test_the_complete_floor_does_what_ccm_does(common: Any, floor_bench: Any,
                                               tmp_path: Path) -> None:
    """The complete floor's extra work gives ccm's answers: the context ``Engine.context``
    gives, ccm's parameters digest and segment count, the same texts, a record ccm verifies,
    each chunk published under its final name and nothing left staged."""
    import json

    from ccm.channels.sms import finish_sms
    from ccm.message import Message
    from ccm.record import MasterKey, Record
    from ccm.render.engine import Engine
    from ccm.render.template import validate_request

    master = MasterKey.generate()
    requests = list(common.requests_for("payment_reminder", 300, prefix="C"))
    # Customer fields the schema leaves open, whose canonical JSON a fast encoder or parser
    # could write or read otherwise: small and large floats, integers beyond 64 bits, DEL,
    # other controls, text beyond ASCII.
    # Each on a request whose text is ASCII (en_US) and on one whose text is not (de_DE).
    odd: list[Any] = [3.2e-05, 1e-7, 0.0001, 1e16, 1.5e17, 123456789.125, 10**20, -(10**19),
                      2**64 - 1, "a\x7fb", "tab\there", "\u2028", "é", "e+1", "e-1",
                      {"x": [1.5, None, True, "0.00001"]}, "\U0001f600", "\\xe9 é",
                      "\\\\x41", "\x80\x9f\xff\u0100\uffff", {"é": 1, "e": 2, "ü": {"ß": "\\"}},
                      "\U00040000", "\U00080000", "\U000e0041", "\U00100000"]
    oddly = [at for i in range(len(odd)) for at in (5 * i + 2, 5 * i + 1)]
    for at in oddly:
        requests[at]["customer"]["extra"] = odd[(at - 1) // 5]
    floor = floor_bench.Floor("sms", requests, master)
    extra = floor.extra
    engine = Engine(common.PACK, common.TEMPLATES, record=None, clock=floor_bench._clock)
    tpl = engine.template("payment_reminder")
    # Greetings from the customer's name or salutation, or the fallback without one.
    greeted = []
    for raw in requests[:5]:
        for value in (None, "", "  ", " Ann {name} "):
            changed = json.loads(json.dumps(raw))
            for field in ("name", "salutation"):
                if value is None:
                    changed["customer"].pop(field, None)
                else:
                    changed["customer"][field] = value
            greeted.append(changed)
    for raw in requests[:10] + [requests[at] for at in oddly] + greeted:
        req = validate_request(json.loads(json.dumps(raw)))
        ctx, locale = extra.context(req.customer, req.data, "m" * 32, floor_bench.AS_OF)
        assert locale == engine.pack.resolve_locale(req.customer.get("locale"))
        message = Message(
            message_id="m" * 32, customer_id=req.customer_id, template=tpl.id,
            template_version=tpl.version, pack=engine.pack.id, pack_version="1",
            channel="sms", locale=locale, message_type=tpl.message_type,
            journey=tpl.journey, content=b"", created_at=floor_bench.AS_OF)
        expected = engine.context(tpl, req, "sms", locale, message)
        for name in ("gettext", "ngettext", "_"):
            expected.pop(name)
        assert ctx == expected
        names = floor.checked_text.names()
        assert extra.context(req.customer, req.data, "m" * 32, floor_bench.AS_OF, names) == (
            {**names[locale], **ctx}, locale)
        assert extra.params(req.customer, req.data, locale) == engine._params_sha256(
            tpl, req, "sms", locale)
        text = floor.checked_render(ctx)
        made = finish_sms(text, max_segments=None)
        assert extra.finish(text, time.monotonic() + 5) == (made.text, made.segments)
    with pytest.raises(RuntimeError, match="budget"):
        extra.finish("x", time.monotonic() - 1)
    from ccm.errors import RenderError

    for sample in ["", "  \n ", "a" * 160, "a" * 161, "a" * 500, "€" * 80, "€" * 81, "é" * 200,
                   "ع" * 70, "ع" * 71, "ع" * 300, "😀" * 35, "😀" * 36, "x\u200by\u00a0z",
                   "a\tb  c\n\n\nd", "Ärger  \u2028 über"]:
        try:
            made = finish_sms(sample, max_segments=None)
            expected: Any = (made.text, made.segments)
        except RenderError:
            expected = "empty"
        try:
            got: Any = extra.finish(sample, time.monotonic() + 5)
        except RenderError:
            got = "empty"
        assert got == expected, sample
    # Its normalising is ccm's on texts made of what normalising changes or keeps.
    import random

    from ccm.channels.sms import normalise

    pool = ["a", "Z", " ", "  ", "\n", "\n\n\n", "\t", "\r\n", "\x00", "\x7f", "\xa0", "\u2009",
            "\u3000", "€", "ü", "e\u0301", "\u200d", "\u200c", "\u200b", "\u2028", "\u202e",
            "😀", "ع", "\u0301", "£", "ß", "{", "~"]
    rng = random.Random(12)
    for _ in range(3000):
        sample = "".join(rng.choice(pool) for _ in range(rng.randint(0, 12)))
        assert extra.normalise(sample) == normalise(sample), repr(sample)
    with pytest.raises(TypeError):
        floor_bench._printable(["a list"])

    plain, complete = floor.new_folder(tmp_path, "plain"), floor.new_folder(tmp_path, "all")
    floor.run(plain)
    floor.run(complete, complete=True)
    assert not list(complete.glob(".staging-*"))
    chunks = sorted(complete.glob("messages-*.jsonl"))
    assert len(chunks) == 2  # 300 messages, 256 per chunk
    lines = [json.loads(raw) for chunk in chunks for raw in chunk.read_bytes().splitlines()]
    before = [json.loads(raw) for raw in (plain / "messages.jsonl").read_bytes().splitlines()]
    # The same texts as the plain floor's, normalised as ccm sends them (German amounts
    # have a no-break space before the euro sign: a space in the SMS).
    assert [line["content"] for line in lines] == [
        finish_sms(line["content"], max_segments=None).text for line in before]
    assert any("\xa0" in line["content"] for line in before)
    assert not any("\xa0" in line["content"] for line in lines)
    record = Record(f"sqlite:///{complete / 'record.db'}", master_key=master)
    try:
        report = record.verify()
        assert report.ok and report.checked == 300
        assert record.content(lines[-1]["message_id"]).decode() == lines[-1]["content"]
    finally:
        record.close()
    # Every message's parameters digest is ccm's, read from the record.
    with sqlite3.connect(complete / "record.db") as db:
        recorded = dict(db.execute("SELECT customer_id, params_sha256 FROM messages"))
    for raw in requests:
        req = validate_request(json.loads(json.dumps(raw)))
        locale = engine.pack.resolve_locale(req.customer.get("locale"))
        assert recorded[req.customer_id] == engine._params_sha256(tpl, req, "sms", locale)
    with pytest.raises(RuntimeError, match="customers are new"):  # the reads see the record
        floor.run(complete, complete=True)
    budget, extra.budget_s = extra.budget_s, -1.0  # every render over its budget
    try:
        with pytest.raises(RuntimeError, match="budget"):
            floor.run(floor.new_folder(tmp_path, "budget"), complete=True)
    finally:
        extra.budget_s = budget
    # The complete floor leaves (next to) no garbage cycles for the collector: skipping scans
    # of what was there before it (gc.freeze) does not put work off.
    import gc

    folder = floor.new_folder(tmp_path, "cycles")
    gc.collect()
    gc.disable()
    try:
        floor.run(folder, complete=True)
    finally:
        gc.enable()
    assert gc.collect() < 30  # per run, not per message


def test_the_floors_money_filter_writes_ccms_text(floor_bench: Any) -> None:
    """The floor's ``money`` (formatters found once, amounts that need no rounding put
    together from their pieces) writes what ccm's filter writes, for every kind of amount."""
    import random

    import jinja2

    from ccm.render.i18n import money

    env = jinja2.Environment()
    mine = floor_bench._money_filter()
    rng = random.Random(3)
    amounts: list[Any] = [0, 0.0, -0.0, -1, -2.5, 1, 7, 0.5, 0.005, 0.015, 2.675, 1e-05, 1e16,
                          1.5e17, 10**20, 10**30, float("inf"), float("nan"), True, "12.5",
                          999.995, 1234.5, 86.4, 240.0, 1234567.891]
    amounts += [round(rng.uniform(-1e4, 10 ** rng.randint(0, 13)), rng.randint(0, 4))
                for _ in range(400)]
    for locale in ("en_GB", "de_DE", "en_US", "ar", "en_IN", None):
        ctx = env.context_class(env, {} if locale is None else {"locale": locale}, "t", {})
        for currency in ("GBP", "EUR", "USD", "JPY", "BHD", "AED", "INR"):
            for amount in amounts:
                for format_type in ("standard", "accounting"):
                    try:
                        expected: Any = money(ctx, amount, currency, format_type)
                    except Exception as exc:
                        expected = type(exc)
                    try:
                        got: Any = mine(ctx, amount, currency, format_type)
                    except Exception as exc:
                        got = type(exc)
                    assert got == expected, (locale, currency, amount, format_type)


def test_the_floors_checks_answer_as_ccms_compiled_validators(common: Any,
                                                              floor_bench: Any) -> None:
    """The floor's hand-written checks of the request schema and the template's contract
    accept exactly what ccm's compiled validators (fastjsonschema) accept, field by field
    altered to values at and beyond every bound and of every JSON type."""
    import copy
    import json

    from ccm.render.engine import Engine
    from ccm.render.template import request_fast_validator

    engine = Engine(common.PACK, common.TEMPLATES, record=None, clock=floor_bench._clock)
    check_request, check_data = (request_fast_validator(),
                                 engine.template("payment_reminder").fast_validator)

    def theirs(request: Any) -> bool:
        try:
            check_request(request)
            check_data(request.get("data", {}) if isinstance(request, dict) else {})
        except Exception:
            return False
        return True

    def mine(request: Any) -> bool:
        try:
            floor_bench.check_request(request)
            floor_bench.check_data(request.get("data", {}) if isinstance(request, dict) else {})
        except floor_bench.Refused:
            return False
        return True

    values: list[Any] = [
        None, True, False, 0, 1, -1, 0.5, 1.0, 2.0, -0.0, float("nan"), float("inf"), 1e9,
        1e9 + 1, 1000000000, 3650, 3651, 3650.0, "", "x", "ABC", "abc", "AB1", "ABCD",
        "2025-10-20", "2025-02-30", "2024-02-29", "20251020", "https://a", "https://a b",
        "http://a", "https://é", "RE 2025-10-7730", " RE", "RE_1", "a/b.c-d", [], ["a"],
        ["x" * 101], ["a"] * 6, ["a"] * 7, [1], {}, {"a": True}, {"a": 1}, {"lines": []},
        {"foo": "x"}, {"city": "x" * 101}, "https://" + "x" * 492, "https://" + "x" * 493,
        "+447700900123", "+4477009001234567", "+447700900123\n", "a@b.example",
        "a$b@x.example", "a b@x.example", "a@b.example\n"]
    values += ["x" * n for n in (16, 17, 32, 33, 35, 36, 40, 41, 64, 65, 100, 101, 128, 129,
                                 200, 201, 320, 321, 500)]
    cases = 0
    for base in [json.loads(json.dumps(r)) for r in common.requests_for("payment_reminder", 5)]:
        paths = [("customer", k) for k in [*base["customer"], "id", "salutation", "extra",
                                           "consents", "address", "date_of_birth",
                                           "document_code"]]
        paths += [("data", k) for k in [*base["data"], "reference", "extra"]]
        paths += [("customer", "address", k) for k in
                  ("lines", "postcode", "city", "country", "other")]
        paths += [("customer", "consents", k) for k in ("email", "sms", "pdf", "other")]
        paths += [(k,) for k in ("customer", "data", "other")]
        for path in paths:
            for value in [*values, "<removed>"]:
                request = copy.deepcopy(base)
                node = request
                for part in path[:-1]:
                    node = node[part]
                if value == "<removed>":
                    node.pop(path[-1], None)
                else:
                    node[path[-1]] = copy.deepcopy(value)
                assert mine(request) == theirs(request), (path, value)
                cases += 1
    assert cases > 10000
