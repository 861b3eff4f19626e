"""Shared pieces of the benchmarks: example data, the naive baseline, timing, results.

Timing uses CPU time of this process (``time.process_time``) for single-process
measurements: it is what "per core" means, and it is far less disturbed than
wall time when other work shares the machine. Runs that use worker processes
are timed by the wall clock (and say so). Competing variants are interleaved
and the best of several rounds is kept, so a burst of load on the machine
hurts both sides of a ratio alike.
"""

from __future__ import annotations

import copy
import functools
import io
import json
import os
import random
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PACK = ROOT / "brand_packs" / "acme"
TEMPLATES = ROOT / "templates"

__all__ = [
    "PACK",
    "ROOT",
    "TEMPLATES",
    "NaiveLoop",
    "NaiveTemplate",
    "Result",
    "best_of",
    "cpu_seconds",
    "developer_filters",
    "developer_translations",
    "load_average",
    "naive_contexts",
    "naive_env",
    "naive_statement_pipeline",
    "naive_template",
    "requests_for",
]


@dataclass
class Result:
    """One measured figure; ``ratio``/``target`` when the issue sets a target for it."""

    id: str
    title: str
    value: float
    unit: str
    target: float | None = None
    higher_is_better: bool = True
    details: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        return self.value >= self.target if self.higher_is_better else self.value <= self.target

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["met"] = self.met
        return out


def load_average() -> str:
    """The 1/5/15 minute load average and core count, to judge how noisy a run was."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "unknown"
    return f"{one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def cpu_seconds(fn: Callable[[], Any]) -> float:
    """CPU seconds this process spends running ``fn``."""
    start = time.process_time()
    fn()
    return time.process_time() - start


def best_of(rounds: int, variants: dict[str, Callable[[], Any]]) -> dict[str, float]:
    """Run each variant ``rounds`` times, interleaved; the least CPU time of each."""
    best: dict[str, float] = {}
    for _ in range(rounds):
        for name, fn in variants.items():
            seconds = cpu_seconds(fn)
            best[name] = min(seconds, best.get(name, float("inf")))
    return best


def _samples(template: str) -> list[dict[str, Any]]:
    files = sorted((TEMPLATES / template / "samples").glob("*.json"))
    return [json.loads(p.read_text("utf-8")) for p in files]


def requests_for(
    template: str, n: int, *, seed: int = 7, prefix: str = "B"
) -> Iterator[dict[str, Any]]:
    """``n`` distinct, valid requests for an example template, varied from its samples.

    Customers get distinct ids and names, and amounts are scaled, so no two
    renders produce the same source text (which would flatter any cache).
    Every customer consents to every channel.
    """
    rng = random.Random(seed)
    samples = _samples(template)
    for i in range(n):
        req = copy.deepcopy(samples[i % len(samples)])
        customer = req["customer"]
        customer["id"] = f"{prefix}{i:07d}"
        customer["name"] = f"{customer.get('name', 'Customer')} {i}"
        customer["consents"] = {"email": True, "sms": True}
        _scale_amounts(req["data"], 1 + rng.random() / 10)
        yield req


def _scale_amounts(node: Any, factor: float) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, float) and key != "rate":
                node[key] = round(value * factor, 2)
            else:
                _scale_amounts(value, factor)
    elif isinstance(node, list):
        for item in node:
            _scale_amounts(item, factor)


# --- the naive baseline -----------------------------------------------------------


def developer_filters() -> dict[str, Callable[..., str]]:
    """The template filters as an application developer writes them: Babel's public API.

    The naive loops must not borrow ccm's own formatters (ccm remembers Babel's
    patterns per locale and currency; the naive loop would then be credited with
    ccm's work). These call ``babel.numbers`` / ``babel.dates`` per value, with
    the locale and time zone from the render context, and write the same text as
    ccm's filters (each naive loop checks that on its contexts before timing).
    """
    from datetime import date, datetime, time
    from decimal import Decimal
    from zoneinfo import ZoneInfo

    from babel import dates, numbers
    from jinja2 import pass_context

    def when(value: Any) -> Any:
        if isinstance(value, str):
            return date.fromisoformat(value) if len(value) == 10 else datetime.fromisoformat(
                value.replace("Z", "+00:00"))
        return value

    def local(ctx: Any, value: datetime) -> datetime:
        if value.tzinfo is None:
            value = value.replace(tzinfo=ZoneInfo("UTC"))
        return value.astimezone(ZoneInfo(ctx.get("timezone") or "UTC"))

    @pass_context
    def money(ctx: Any, amount: Any, currency: str, format_type: str = "standard") -> str:
        return numbers.format_currency(Decimal(str(amount)), currency, locale=ctx["locale"],
                                       format_type=format_type)  # type: ignore[arg-type]

    @pass_context
    def number(ctx: Any, value: Any) -> str:
        return numbers.format_decimal(Decimal(str(value)), locale=ctx["locale"])

    @pass_context
    def decimal(ctx: Any, value: Any, digits: int = 2) -> str:
        fmt = "#,##0." + "0" * digits if digits else "#,##0"
        return numbers.format_decimal(Decimal(str(value)), format=fmt, locale=ctx["locale"])

    @pass_context
    def percent(ctx: Any, value: Any, digits: int = 0) -> str:
        fmt = "#,##0" + ("." + "0" * digits if digits else "") + "%"
        return numbers.format_percent(Decimal(str(value)), format=fmt, locale=ctx["locale"])

    @pass_context
    def date_(ctx: Any, value: Any, format: str = "medium") -> str:
        value = when(value)
        if isinstance(value, datetime):
            value = local(ctx, value).date()
        return dates.format_date(value, format=format, locale=ctx["locale"])

    @pass_context
    def datetime_(ctx: Any, value: Any, format: str = "medium") -> str:
        value = when(value)
        if not isinstance(value, datetime):
            value = datetime.combine(value, time())
        value = local(ctx, value)
        return dates.format_datetime(value, format=format, tzinfo=value.tzinfo,
                                     locale=ctx["locale"])

    @pass_context
    def time_(ctx: Any, value: Any, format: str = "short") -> str:
        value = local(ctx, when(value))
        return dates.format_time(value, format=format, tzinfo=value.tzinfo,
                                 locale=ctx["locale"])

    def iban(value: Any) -> str:
        raw = "".join(str(value).split()).upper()
        return " ".join(raw[i:i + 4] for i in range(0, len(raw), 4))

    return {"money": money, "number": number, "decimal": decimal, "percent": percent,
            "date": date_, "datetime": datetime_, "time": time_, "iban": iban}


def naive_env(*, autoescape: bool, filters: dict[str, Any] | None = None,
              translations: Any = None, environment: Any = None, **options: Any) -> Any:
    """The ``jinja2.Environment`` of the naive loops: the pack and template sources, plain Jinja.

    ``filters`` defaults to :func:`developer_filters`; ``translations`` (see
    :func:`developer_translations`) are installed as Jinja's i18n extension
    takes them, none by default. ``environment`` (a subclass of Jinja's) and
    ``options`` are for the floor's tuned environment (``floor_bench.py``).
    """
    import jinja2

    env = (environment or jinja2.Environment)(
        loader=jinja2.PrefixLoader({
            "pack": jinja2.FileSystemLoader(str(PACK / "layouts")),
            "templates": jinja2.FileSystemLoader(str(TEMPLATES)),
        }),
        autoescape=autoescape, extensions=["jinja2.ext.i18n"], trim_blocks=True,
        lstrip_blocks=True, **options,
    )
    env.filters.update(developer_filters() if filters is None else filters)
    if translations is None:
        env.install_null_translations(newstyle=True)  # type: ignore[attr-defined]
    else:
        env.install_gettext_translations(translations, newstyle=True)  # type: ignore[attr-defined]
    return env


@functools.lru_cache(maxsize=64)
def developer_translations(template: str, locale: str) -> Any:
    """The pack's and the template's messages for ``locale`` (the template's win), as a
    developer loads them with Babel: each ``messages.po`` compiled to a catalog once."""
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po
    from babel.support import NullTranslations, Translations

    merged: Any = None
    for root in (PACK, TEMPLATES / template):
        for name in (locale, locale.split("_")[0]):
            po = root / "locales" / name / "LC_MESSAGES" / "messages.po"
            if po.is_file():
                with po.open("rb") as fh:
                    catalog = read_po(fh, locale=locale)
                compiled = io.BytesIO()
                write_mo(compiled, catalog)
                compiled.seek(0)
                found = Translations(fp=compiled)
                if merged is None:
                    merged = found
                else:
                    merged.merge(found)
                break
    return merged if merged is not None else NullTranslations()


@functools.lru_cache(maxsize=4)
def _context_engine(created_at: str) -> Any:
    from ccm.render.engine import Engine

    return Engine(PACK, TEMPLATES, record=None, clock=lambda: datetime.fromisoformat(created_at))


#: The naive contexts' message time unless a benchmark gives its own.
_CREATED_AT = "2026-03-02T15:00:00+00:00"


def naive_contexts(template: str, channel: str, requests: list[dict[str, Any]],
                   created_at: str = _CREATED_AT) -> list[dict[str, Any]]:
    """The variables ccm gives ``template``'s ``channel`` for each request, built by ccm.

    The naive loops render these prepared contexts (outside their timing): a
    developer's loop would build them too, so this flatters the naive side.
    """
    from ccm.message import Message
    from ccm.render.template import validate_request

    engine = _context_engine(created_at)
    tpl = engine.template(template)
    out = []
    for raw in requests:
        req = validate_request(raw)
        locale = engine.pack.resolve_locale(req.customer.get("locale"))
        message = Message(
            message_id="0" * 32, customer_id=req.customer_id, template=tpl.id,
            template_version=tpl.version, pack=engine.pack.id, pack_version="1",
            channel=channel, locale=locale, message_type=tpl.message_type,
            journey=tpl.journey, content=b"", created_at=created_at)
        ctx = engine.context(tpl, req, channel, locale, message)
        for name in ("gettext", "ngettext", "_"):
            ctx.pop(name, None)
        out.append(ctx)
    return out


class NaiveTemplate:
    """A template's source in one naive environment per locale, picked by the context's."""

    def __init__(self, template: str, source: str, autoescape: bool,
                 filters: dict[str, Any] | None = None) -> None:
        self.template, self.source, self.autoescape = template, source, autoescape
        self.filters = filters
        self.by_locale: dict[str, Any] = {}

    def for_locale(self, locale: str) -> Any:
        found = self.by_locale.get(locale)
        if found is None:
            env = naive_env(autoescape=self.autoescape, filters=self.filters,
                            translations=developer_translations(self.template, locale))
            found = self.by_locale[locale] = env.get_template(self.source)
        return found

    def render(self, ctx: dict[str, Any]) -> str:
        return str(self.by_locale[ctx["locale"]].render(ctx))


def naive_template(template: str, channel: str, contexts: list[dict[str, Any]],
                   filters: dict[str, Any] | None = None) -> NaiveTemplate:
    """``template``'s ``channel`` source in the naive environments (autoescaped unless SMS),
    after checking it writes, for every context, the very text ccm's own render writes
    (ccm's sandboxed environment, filters and translations).

    ``filters`` defaults to :func:`developer_filters` (Babel called per value).
    """
    from ccm.render.environment import render_source

    engine = _context_engine(_CREATED_AT)
    tpl = engine.template(template)
    source = tpl.source_name(channel)
    naive = NaiveTemplate(template, source, channel != "sms", filters)
    for ctx in contexts:
        locale = ctx["locale"]
        mine = naive.for_locale(locale).render(ctx)
        theirs = render_source(engine._environment(tpl, channel, locale), source,
                               {**ctx, **engine._gettext(tpl, locale)},
                               meter=engine.budget(tpl).start()).text
        if mine != str(theirs):
            raise RuntimeError(f"{source}: the naive loop writes other text than ccm's "
                               f"for {ctx['customer'].get('id')!r} ({locale})")
    return naive


class NaiveLoop:
    """The loop a developer writes without ccm, per message: plain jinja2 with Babel filters
    on the template's own source and ccm's context (built outside the timing), plus
    ``mjml2html`` for an email."""

    def __init__(self, template: str, channel: str, requests: list[dict[str, Any]],
                 created_at: str = _CREATED_AT) -> None:
        self.contexts = naive_contexts(template, channel, requests, created_at)
        self.template = naive_template(template, channel, self.contexts)
        self.channel = channel

    def run(self) -> None:
        render = self.template.render
        if self.channel == "email":
            from mjml import mjml2html

            for ctx in self.contexts:
                mjml2html(render(ctx))
        else:
            for ctx in self.contexts:
                render(ctx)


class NaivePipeline:
    """What an application would write without ccm: jinja2 + WeasyPrint + pypdf, per statement.

    A plain (unsandboxed) ``jinja2.Environment`` renders the same template and
    pack layout with Babel-backed filters (:func:`developer_filters`), the
    pack's and template's translations (:func:`developer_translations`) and the
    same context, so the HTML is the very HTML ccm lays out;
    WeasyPrint's ``HTML(...).write_pdf()`` with its default fetcher turns it
    into a PDF; pypdf encrypts it with AES-256 and the same
    user password.
    """

    def __init__(self, template: str = "monthly_statement") -> None:
        self.tpl = _context_engine(_CREATED_AT).template(template)
        self.naive = NaiveTemplate(template, self.tpl.source_name("pdf"), autoescape=True)
        self.base_url = PACK.as_uri() + "/"

    def context(self, request: dict[str, Any]) -> dict[str, Any]:
        """The same variables ccm gives the template (built by ccm, outside the timing)."""
        return naive_contexts(self.tpl.id, "pdf", [request], "2025-11-01T09:00:00+00:00")[0]

    def check(self, contexts: list[dict[str, Any]]) -> None:
        """Fail unless the naive environment writes ccm's HTML for ``contexts``."""
        naive_template(self.tpl.id, "pdf", contexts)

    def html(self, context: dict[str, Any]) -> str:
        return self.naive.for_locale(context["locale"]).render(context)

    def pdf(self, html: str, password: str) -> bytes:
        import weasyprint
        from pypdf import PdfReader, PdfWriter

        plain = weasyprint.HTML(string=html, base_url=self.base_url).write_pdf()
        writer = PdfWriter(clone_from=PdfReader(io.BytesIO(plain)))
        writer.encrypt(password, os.urandom(16).hex(), algorithm="AES-256")
        out = io.BytesIO()
        writer.write(out)
        return out.getvalue()

    def statement(self, context: dict[str, Any]) -> bytes:
        """One statement, start to finish."""
        password = context["customer"].get("document_code", "")
        return self.pdf(self.html(context), password)


def naive_statement_pipeline(template: str = "monthly_statement") -> NaivePipeline:
    """The naive baseline for ``template``'s PDF."""
    return NaivePipeline(template)
