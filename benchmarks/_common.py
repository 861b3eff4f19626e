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
import io
import json
import os
import random
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
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
    "Result",
    "best_of",
    "cpu_seconds",
    "load_average",
    "naive_statement_pipeline",
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


class NaivePipeline:
    """What an application would write without ccm: jinja2 + WeasyPrint + pypdf, per statement.

    A plain (unsandboxed) ``jinja2.Environment`` renders the same template and
    pack layout with the same filters and context, so the HTML is the very
    HTML ccm lays out; WeasyPrint's ``HTML(...).write_pdf()`` with its default
    fetcher turns it into a PDF; pypdf encrypts it with AES-256 and the same
    user password.
    """

    def __init__(self, template: str = "monthly_statement") -> None:
        import jinja2

        from ccm.render.engine import Engine
        from ccm.render.i18n import FILTERS

        self.engine = Engine(PACK, TEMPLATES, record=None)
        self.tpl = self.engine.template(template)
        self.env = jinja2.Environment(
            loader=jinja2.PrefixLoader({
                "pack": jinja2.FileSystemLoader(str(PACK / "layouts")),
                "templates": jinja2.FileSystemLoader(str(TEMPLATES)),
            }),
            autoescape=True, extensions=["jinja2.ext.i18n"], trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters.update(FILTERS)
        self.env.install_null_translations(newstyle=True)  # type: ignore[attr-defined]
        self.base_url = PACK.as_uri() + "/"

    def context(self, request: dict[str, Any]) -> dict[str, Any]:
        """The same variables ccm gives the template (built by ccm, outside the timing)."""
        from ccm.message import Message
        from ccm.render.template import validate_request

        req = validate_request(request)
        locale = self.engine.pack.resolve_locale(req.customer.get("locale"))
        message = Message(
            message_id="0" * 32, customer_id=req.customer_id, template=self.tpl.id,
            template_version=self.tpl.version, pack="acme", pack_version="1", channel="pdf",
            locale=locale, message_type=self.tpl.message_type, journey=self.tpl.journey,
            content=b"", created_at="2025-11-01T09:00:00+00:00",
        )
        ctx = self.engine.context(self.tpl, req, "pdf", locale, message)
        for name in ("gettext", "ngettext", "_"):
            ctx.pop(name, None)
        return ctx

    def html(self, context: dict[str, Any]) -> str:
        return self.env.get_template(self.tpl.source_name("pdf")).render(context)

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
