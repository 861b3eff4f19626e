"""SMS rendering compiled once per template, pack and locale: the per-row fast path of batches.

:meth:`Engine.render <ccm.render.engine.Engine.render>` does, for every
message, work that does not depend on the request: it looks the template,
its budget, the brand values, translations and password hint up, checks the
call, walks the request three times (shape, size, plain JSON) and copies it.
A :class:`SmsPlan` does all of that once per (engine, template, locale), so
that per request only this is left:

* one pass over the request that is both the walk (exact JSON types, finite
  numbers, depth) and ccm's request schema (:mod:`ccm.render._request_shape`;
  when it is not sure, the walk and the schema as fastjsonschema compiled it),
  then the template's contract as fastjsonschema compiled it
  (:mod:`ccm.render._contracts`);
* the context from precomputed brand values and translations (the constant
  part copied, in the order Jinja would merge it);
* the same sandboxed Jinja, under the template's budget meter; a source that
  only extends its layout (:func:`extends_only`) has the layout loaded once
  and its root's work done here (the blocks stacked, the layout's root run);
* SMS finishing (:func:`ccm.channels.sms.finish_sms`);
* the request's JSON for the parameters digest, written once (its length
  is also the size check).

The plan gives **exactly** Engine.render's bytes or nothing: whenever it is
not certain (a request the walk or a compiled validator does not accept, a
customer without a phone, a listener on the engine), :meth:`SmsPlan.request`
or :meth:`SmsPlan.render` returns ``None`` and the caller takes the full
path, which makes the same message or raises the error naming the field.
Errors of the render itself (budgets, sandbox, undefined names) and of SMS
finishing are raised by the plan as the full path raises them at that step
(``translate_error``, as :func:`~ccm.render.environment.render_source` does),
so a template over its time budget spends it once, not twice.
:meth:`SmsPlan.build` returns ``None`` where the plan does not apply at all
(approval required, a linked PDF document, no fast contract check, no SMS
channel). ``tests/batch/test_fast_rows.py`` compares both paths on generated
requests.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jinja2 import nodes

from ccm.channels import sms as sms_channel
from ccm.errors import DataError
from ccm.message import Request, output_filename
from ccm.render._request_shape import plain_levels
from ccm.render.budget import _current
from ccm.render.engine import _FIELD, DIGEST_ENCODER, Engine, digest_json
from ccm.render.environment import _consume, translate_error
from ccm.render.template import (
    MAX_DEPTH,
    check_timezone,
    json_text_fits,
    request_fast_validator,
    request_shape_check,
)

if TYPE_CHECKING:
    from ccm.render.template import Template

__all__ = ["SmsPlan", "SmsRendered"]

def plain_request(obj: Any) -> bool:
    """True when ``obj`` is a dict of exact JSON types, finite, at most ``MAX_DEPTH`` deep.

    One level-by-level walk (the full path walks three times): whatever it
    refuses goes to the full path, which explains it or accepts it.
    """
    return type(obj) is dict and plain_levels([obj], 0, MAX_DEPTH)


def request_json(obj: dict[str, Any]) -> str:
    """The parameters digest's JSON of a ``obj`` that :func:`plain_request` accepted
    (:func:`~ccm.render.engine.digest_json`)."""
    return digest_json(obj)


@dataclass(frozen=True)
class SmsRendered:
    """One SMS made by the plan: what :class:`~ccm.message.Message` would hold."""

    text: str
    encoding: str
    segments: int
    password_hint: str | None


class _Locale:
    """What a plan needs per locale: brand values, translations, the digest's JSON prefix."""

    __slots__ = ("base", "brand", "dir", "fallback", "fields", "gettext", "greeting", "lang",
                 "layout", "layout_blocks", "literals", "message", "password_hint", "prefix",
                 "template")

    def __init__(self, engine: Engine, tpl: Template, locale: str) -> None:
        cached = engine._brand("sms", locale)
        self.brand = {k: v for k, v in cached.items() if k != "_greeting_fallback"}
        self.greeting = cached["greeting"]
        self.fallback = cached["_greeting_fallback"]
        #: The greeting's literal parts and the customer fields between them.
        self.literals, self.fields = split_greeting(self.greeting)
        self.gettext = engine._gettext(tpl, locale)
        self.lang = locale.split("_")[0]
        self.dir = "rtl" if engine.pack.is_rtl(locale) else "ltr"
        self.password_hint = (engine.password_hint(locale)
                              if tpl.confidential and "pdf" in tpl.channels else None)
        pack = engine.pack
        #: The SMS source compiled with this locale's constants folded (ccm/render/fold.py);
        #: None until first needed (:meth:`SmsPlan._compiled`).
        self.template: Any = None
        #: The layout the source extends and nothing more (:func:`extends_only`), loaded
        #: once, and its blocks; None: the source's own root renders (and loads it).
        self.layout: Any = None
        self.layout_blocks: tuple[tuple[str, Any], ...] = ()
        #: The render context's constant part: the template's globals with this locale's
        #: translations; copied per render.
        self.base: dict[str, Any] = {}
        #: The context's ``message`` without its ``id`` and ``created_at``; copied per render.
        self.message: dict[str, Any] = {}
        self.prefix = (
            '{"channel":"sms","locale":' + DIGEST_ENCODER.encode(locale)
            + ',"pack":' + DIGEST_ENCODER.encode(pack.id)
            + ',"pack_version":' + DIGEST_ENCODER.encode(pack.version) + ',"request":')


class SmsPlan:
    """The SMS of one template for one engine, compiled once (see the module docstring)."""

    def __init__(self, engine: Engine, tpl: Template, locale: str | None,
                 request_check: Callable[[Any], Any], contract_check: Callable[[Any], Any],
                 ) -> None:
        self.engine = engine
        self.tpl = tpl
        self.locale = locale
        self._request_check = request_check
        self._contract_check = contract_check
        self._name = tpl.source_name("sms")
        self._budget = engine.budget(tpl)
        self._max_segments = engine.pack.senders.get("sms", {}).get("max_segments")
        self._locales: dict[str, _Locale] = {}
        self._resolved: dict[Any, str] = {}
        #: Time zones ``check_timezone`` accepted (None: none given).
        self._zones: set[str | None] = set()
        self._suffix = (',"template":' + DIGEST_ENCODER.encode(tpl.id)
                        + ',"template_version":' + DIGEST_ENCODER.encode(tpl.version) + "}")
        self.sources_sha256 = engine.sources_sha256(tpl)
        self._static = {
            "template": tpl.id,
            "template_version": tpl.version,
            "message_type": tpl.message_type,
            "journey": tpl.journey,
            "confidential": tpl.confidential,
            "letter": tpl.letter,
        }

    @classmethod
    def build(cls, engine: Engine, template: str, locale: str | None = None) -> SmsPlan | None:
        """The plan of ``template``'s SMS on ``engine``, or None where it does not apply."""
        tpl = engine.templates.get(template)
        if tpl is None or "sms" not in tpl.channels:
            return None
        if engine.options.require_approval or engine._links_document(tpl):
            return None
        if locale is not None and locale not in engine.pack.locales:
            return None
        request_check = request_fast_validator()
        contract_check = tpl.fast_validator
        if request_check is None or contract_check is None:
            return None
        try:
            engine._env.get_template(tpl.source_name("sms"))
        except Exception:  # a syntax error: the full path reports it
            return None
        return cls(engine, tpl, locale, request_check, contract_check)

    # -- per request ------------------------------------------------------------------

    def request(self, obj: Any) -> tuple[Request, str] | None:
        """The validated request and its JSON (as the digest writes it), or None: full path."""
        sure = request_shape_check()
        if sure is None or not sure(obj):  # not sure: the walk, then the compiled schema
            if not plain_request(obj):
                return None
            try:
                self._request_check(obj)
            except Exception:  # refused, or a format checker that raised: the full path says
                return None
        try:
            self._contract_check(obj.get("data", {}))
        except Exception:  # refused, or a format checker that raised: let the full path say
            return None
        customer = dict(obj["customer"])
        if customer["id"] in (None, ""):
            return None
        zone = customer.get("timezone")  # (a str or None: the schema accepted it)
        if zone not in self._zones:
            try:
                check_timezone(zone)
            except DataError:  # the full path refuses it, naming the customer
                return None
            if len(self._zones) < 4096:
                self._zones.add(zone)
        customer["id"] = str(customer["id"])
        req = Request(customer=customer, data=dict(obj.get("data", {})))
        text = request_json({"customer": customer, "data": req.data})
        if not json_text_fits(text, obj):
            return None  # the full path names the field (or the size)
        return req, text

    def locale_for(self, req: Request) -> str:
        """The locale the engine would render ``req`` in."""
        if self.locale is not None:
            return self.locale
        asked = req.customer.get("locale")
        found = self._resolved.get(asked)
        if found is None:
            found = self.engine.pack.resolve_locale(asked)
            if len(self._resolved) < 4096:
                self._resolved[asked] = found
        return found

    def _for(self, locale: str) -> _Locale:
        parts = self._locales.get(locale)
        if parts is None:
            parts = self._locales[locale] = _Locale(self.engine, self.tpl, locale)
        return parts

    def filename(self, customer_id: str, locale: str) -> str:
        """:func:`~ccm.message.output_filename` of this template's SMS."""
        return output_filename(customer_id, self.tpl.id, locale, "sms")

    def params_sha256(self, request_json: str, locale: str) -> str:
        """:meth:`Engine._params_sha256` from the request's JSON written once."""
        blob = self._for(locale).prefix + request_json + self._suffix
        return hashlib.sha256(blob.encode()).hexdigest()

    def _compiled(self, parts: _Locale, locale: str) -> Any:
        """``parts``' compiled source, its layout when it only extends one, and its
        constant context (set on ``parts`` on its first render)."""
        env = self.engine._environment(self.tpl, "sms", locale)
        template = env.get_template(self._name)
        parent = extends_only(env, self._name)
        # The source read for that is the one compiled unless the file changed since (an
        # engine renders what it loaded): then the source's own root, which is always right.
        if parent is not None and template.is_up_to_date:
            try:  # the very call of the source's root (Jinja's cache, ccm's reach check)
                layout = env.get_template(parent, self._name)
            except Exception:  # the source's own root raises it, at every render
                layout = None
            if layout is not None:
                parts.layout = layout
                parts.layout_blocks = tuple(layout.blocks.items())
        base = dict(template.globals)
        base.update(parts.gettext)
        parts.base = base
        static = self._static
        parts.message = {
            "id": None,
            "channel": "sms",
            "template": static["template"],
            "template_version": static["template_version"],
            "message_type": static["message_type"],
            "journey": static["journey"],
            "confidential": static["confidential"],
            "letter": static["letter"],
            "password_hint": parts.password_hint,
            "unsubscribe_url": None,
            "document_url": None,
            "web_version_url": None,
            "created_at": None,
        }
        parts.template = template
        return template

    def render(self, req: Request, locale: str, message_id: str,
               created_at: str) -> SmsRendered | None:
        """The SMS for ``req``; None when the full path must make (or refuse) it.

        Errors of the render itself (budgets, sandbox, undefined names) and of SMS
        finishing are raised here exactly as the full path raises them at the same
        step, so a template that runs out of its budget spends it once.
        """
        customer = req.customer
        if not customer.get("phone") or self.engine._listeners:
            return None
        parts = self._for(locale)
        template = parts.template
        if template is None:
            template = self._compiled(parts, locale)
        meter = self._budget.start()
        brand = dict(parts.brand)
        brand["greeting"] = _greeting(parts, customer)
        # Engine.context's names after the template's globals (the translations among
        # them: ``parts.base``), as Jinja's new_context merges them, in the same order.
        ctx = parts.base.copy()
        ctx["customer"] = customer
        ctx["data"] = req.data
        ctx["brand"] = brand
        message = parts.message.copy()  # (assigning its keys keeps their order)
        message["id"] = message_id
        message["created_at"] = created_at
        ctx["message"] = message
        ctx["locale"] = locale
        ctx["lang"] = parts.lang
        ctx["dir"] = parts.dir
        ctx["timezone"] = customer.get("timezone") or "UTC"
        meter.name = self._name
        token = _current.set(meter)
        try:
            context = template.new_context(ctx, shared=True)
            layout = parts.layout
            if layout is None:
                chunks = template.root_render_func(context)
            else:
                # What the source's root does before it hands over to its layout (the
                # layout was loaded, and its reach checked, once: the same every render).
                blocks = context.blocks
                for block_name, block in parts.layout_blocks:
                    blocks.setdefault(block_name, []).append(block)
                chunks = layout.root_render_func(context)
            text = _consume(chunks, name=self._name, meter=meter, max_chars=meter.max_output)
        except Exception as exc:
            # What render_source raises for the same source and context: rendering it again
            # on the full path would spend the budget twice (and count against --cpu-limit).
            raise translate_error(exc, self._name) from exc
        finally:
            _current.reset(token)
            meter.name = ""
        # Raises as the full path does (empty body, over the pack's segment limit).
        result = sms_channel.finish_sms(text, max_segments=self._max_segments)
        return SmsRendered(result.text, result.encoding, result.segments, parts.password_hint)


def extends_only(env: Any, name: str) -> str | None:
    """The layout source ``name`` extends, when that is all its root does; else None.

    That is: the source starts with ``{% extends "<constant>" %}`` and has nothing
    else at its top level but blocks and text (which Jinja drops in a child). Its root
    then only loads the layout, adds the layout's blocks below its own and renders the
    layout's root: :meth:`SmsPlan.render` does that with the layout loaded once.
    Anything else (a ``set``, an ``import``, a computed or conditional ``extends``) or a
    source that does not parse: None, and the source's own root renders.
    """
    try:
        source, _, _ = env.loader.get_source(env, name)
        body = env.parse(source, name).body
    except Exception:
        return None
    if not body or type(body[0]) is not nodes.Extends:
        return None
    parent = body[0].template
    if type(parent) is not nodes.Const or type(parent.value) is not str:
        return None
    for node in body[1:]:
        if type(node) is nodes.Block:
            continue
        if type(node) is nodes.Output and all(type(part) is nodes.TemplateData
                                              for part in node.nodes):
            continue
        return None
    return parent.value


def split_greeting(pattern: str) -> tuple[list[str], list[str]]:
    """A greeting pattern's literal parts and, between them, its ``{field}`` names."""
    pieces = _FIELD.split(pattern)
    return pieces[0::2], pieces[1::2]


def _greeting(parts: Any, customer: dict[str, Any]) -> str:
    """:func:`ccm.render.engine._greeting` with the pattern split once per locale (``parts``:
    a :class:`_Locale`, or anything with its ``greeting``, ``fallback``, ``literals`` and
    ``fields``)."""
    fallback: str = parts.fallback
    if not parts.fields:
        greeting: str = parts.greeting
        return greeting
    literals: list[str] = parts.literals
    out = [literals[0]]
    for name, literal in zip(parts.fields, literals[1:], strict=True):
        value = customer.get(name)
        if not isinstance(value, str | int) or isinstance(value, bool):
            return fallback
        text = str(value).strip()
        if not text:
            return fallback
        out.append(text)
        out.append(literal)
    return "".join(out)
