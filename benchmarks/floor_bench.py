"""The floor (k): the least CPU per message that ccm's guarantees need, done without ccm.

Issue 12 asks ``ccm batch`` to be at least as fast as a naive loop that only
renders (plain jinja2 with Babel filters, from contexts built outside its
timing), record with master key included on ccm's side. This measures the
least any implementation of ccm's guarantees must do per message, with the
cheapest pieces known, in one plain Python loop, against the same naive loop
in the same invocation:

1. the input line parsed with ``json``'s own scanner (``ccm batch`` reads JSONL);
2. the request schema and the template's contract, checked by hand with the
   answers of fastjsonschema's compiled functions (ccm's validators; the tests
   compare them on thousands of altered requests);
3. the text: SMS, the template in a plain ``jinja2.Environment`` per locale
   set up for speed (no sandbox, no budgets, no reload checks, the root
   render function called directly) with ccm's filters (currency formats and
   dates remembered, far cheaper than Babel's calls) and the translations,
   from contexts built outside the timing, as the naive loop's are (checked
   to write ccm's text for every context before the timing); email, ccm's
   own ``Engine.render`` bytes, made outside the timing, its cost measured
   apart and added (the cheapest email render known: already below the
   naive loop, figure i-email-api);
4. the record in ccm's own format, so that ``Record.verify`` accepts it and
   ``Record.content`` decrypts it (``tests/test_benchmark_baselines.py``): ccm's
   tables and indexes, WAL with ``synchronous=FULL``, one transaction and one
   ``executemany`` per table per 256 messages; per message the SHA-256 of the
   content, a new customer's data key wrapped by the master key, the content
   sealed with it (AES-256-GCM), the chain link (SHA-256 of the canonical
   JSON of the message, assembled from constant pieces), the message row;
   message ids as ccm makes them (UUID version 7), one clock reading per chunk;
5. the output: one JSONL line per message, one file per 256 messages, fsynced.

Left out, each in the floor's favour: the reads before a commit
(idempotency keys, chain heads, known data keys), the contact policy, SMS
normalising and segments, the sandbox and the render budgets, building the
context, the parameters digest, staging and renaming the output, the summary.

**The complete floor** (SMS, ``run(..., complete=True)``) adds what ccm must also do
per message, each in its cheapest known form (:class:`Complete`): the context
built from the parsed request (``Engine.context``'s, compared in the tests),
the contact policy (consent, quiet hours per time zone once per chunk), the
sandbox's least (a printed value must be text or a number: Jinja's
``finalize``) and the render budget (a deadline, read before and after), ccm's SMS finishing
(normalised text, encoding, segments), the parameters digest (ccm's
canonical JSON of the request), the reads before a commit (recorded
idempotency keys, messages inside the caps' window, chain heads, data keys:
one query each per chunk) and the output staged, synced and renamed after the
commit, the folder synced after the rename. Still left out: the summary, the checks
``ccm batch`` makes of its own inputs and state, error handling per row.

The complete floor is written for speed without changing an answer
(:meth:`Floor._complete`): each step runs over a whole chunk in turn (its
code stays hot); lines are read with orjson and the canonical JSON written
with it where orjson is installed and where its text is certainly json's
(json's own scanner and C encoder otherwise, and for anything orjson reads or
writes differently: the tests hold such requests); ccm's ``money``, SMS
normalising and Jinja's gettext calls with ccm's answers, without their
general machinery (the tests compare them with ccm's); the child template's
blocks stacked on its layout's once; the render budget as ccm keeps it (a
``time.monotonic()`` deadline); what was made before the run frozen for the
collector, which looks at what the run makes every 100,000 allocations instead
of 700 (the run leaves no garbage cycles: the test counts them; the naive loop
gains nothing from the same). Without orjson it runs on the standard library
alone (about 5 µs more per SMS).

* ``k-sms-floor``: naive µs per SMS / floor µs per SMS -- the best ratio an
  implementation of the guarantees can reach against the naive loop, as far
  as anyone has found (``ccm batch`` measured 0.22-0.26x: figure g-sms).
* ``k-sms-floor-complete``: naive µs per SMS / complete floor µs per SMS: the
  best ratio any implementation of everything ``ccm batch`` guarantees per SMS
  can reach, as far as anyone has found.
* ``k-email-floor``: naive µs per email / (the floor without the render +
  ccm's ``Engine.render``): the best ratio with today's email render.

For people: no target, no assertion. CPU time of this one process, variants
interleaved, best of the rounds.

    python benchmarks/floor_bench.py [--quick]     # ~15 s (--quick ~5 s)
    python benchmarks/run.py --only floor
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import re
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from _common import (
    PACK,
    TEMPLATES,
    NaiveLoop,
    Result,
    best_of,
    developer_translations,
    load_average,
    naive_env,
    naive_template,
    requests_for,
)

TEMPLATE = "payment_reminder"
AS_OF = "2026-03-02T15:00:00+00:00"  # daytime in every sample's zone (no quiet hours)
#: Messages per record transaction and per output file, as ``ccm batch``'s tasks.
CHUNK = 256
#: Message ids start with this time in ms (a fixed clock: no reading per message).
_AT_MS = 1_772_463_600_000


def _clock() -> datetime:
    return datetime.fromisoformat(AS_OF)


#: The message row's columns in ccm's order (checked against ``ccm.record.entries``).
_ROW = ("message_id", "idempotency_key", "params_sha256", "customer_id", "channel", "template",
        "template_version", "pack", "pack_version", "message_type", "journey", "locale",
        "created_at", "status", "reason", "content_sha256", "archival_sha256",
        "sources_sha256", "archive_ref", "segment")
_quote = json.encoder.encode_basestring  # type: ignore[attr-defined]  # canonical JSON
_quote_ascii = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]  # json.dumps
#: The UUID variant digit for each random hex digit (RFC 9562: 10xx).
_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}



# --- the two schemas, checked by hand ----------------------------------------------------
#
# The same answers as fastjsonschema's compiled functions of ``ccm/schemas/request.schema.json``
# and ``templates/payment_reminder/contract.schema.json`` (ccm's ``request_fast_validator`` and
# ``Template.fast_validator``) on what ``json`` parses, every keyword of both: types (an
# integer may be a float with no fraction, a bool is no number), required and additional
# properties, lengths in code points, items, bounds (compared as fastjsonschema compares,
# so that NaN passes as it does there), patterns, and ``format: date`` through jsonschema's
# own checker, remembered per string as ccm remembers it (``uri`` has no checker installed:
# anything passes, as there). ``tests/test_benchmark_baselines.py`` compares the answers
# on many altered requests.

try:
    import orjson
except ImportError:  # not one of ccm's dependencies: json's own scanner then
    orjson = None

#: orjson reads an integer beyond 64 bits as a float where json keeps an int (for all else
#: it accepts it gives json's values; it refuses NaN, infinities, lone surrogates and a
#: byte order mark, which json then reads): such a float is 9.2e18 or more, written with
#: "e+" in the request's canonical JSON, and a line whose canonical JSON has "e+" is read
#: again by json (:meth:`Floor._complete`).


class _ReadAgain(Exception):
    """A line orjson may have read otherwise than json: json reads it again."""


class Refused(ValueError):
    """A request or its data is not what the schemas allow."""


#: The customer's text fields: the most code points each may have (minLength 1 apart).
_CUSTOMER_TEXT = {"name": 200, "salutation": 200, "email": 320, "phone": 32, "locale": 35,
                  "timezone": 64, "segment": 64}
#: customer.email and customer.phone: the schema's patterns (an empty value: none given).
_ATEXT = "[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_CUSTOMER_PATTERN = {
    "email": re.compile(f"^(?:{_ATEXT}+(?:\\.{_ATEXT}+)*@[A-Za-z0-9-]+(?:\\.[A-Za-z0-9-]+)+)?\\Z"
                        ).search,
    "phone": re.compile("^(?:\\+[1-9][0-9]{7,14})?\\Z").search,
}
_ADDRESS_TEXT = {"postcode": 16, "city": 100, "country": 100}
_ADDRESS_KEYS = frozenset({"lines", *_ADDRESS_TEXT})
_REQUEST_KEYS = frozenset({"customer", "data"})
_DATA_REQUIRED = frozenset({"amount", "currency", "due_date", "days_overdue", "pay_url"})
_DATA_KEYS = _DATA_REQUIRED | {"reference"}
_CURRENCY = re.compile("^[A-Z]{3}\\Z").search
_PAY_URL = re.compile("^https://[^\\s]+\\Z").search
_REFERENCE = re.compile("^[A-Za-z0-9][A-Za-z0-9 ./-]*\\Z").search


def _date_check() -> Callable[[str], bool]:
    """jsonschema's ``format: date`` (ccm's checker), remembered per string."""
    import jsonschema

    conforms = jsonschema.Draft202012Validator.FORMAT_CHECKER.conforms
    seen: dict[str, bool] = {}

    def is_date(value: str) -> bool:
        answer = seen.get(value)
        if answer is None:
            answer = bool(conforms(value, "date"))
            if len(seen) < 65536:
                seen[value] = answer
        return answer

    return is_date


_is_date = _date_check()


def _integral(value: Any) -> bool:
    kind = type(value)
    return kind is int or (kind is float and value.is_integer())


_CUSTOMER_KEYS = frozenset({*_CUSTOMER_TEXT, "id", "consents", "address", "date_of_birth",
                            "document_code"})


def _ordinary_numbers(request: dict[str, Any]) -> bool:
    """True when every float of a checked request is zero or between 1e-4 and 1e16 in size,
    where orjson writes each as json does (``repr``: no exponent): the customer has only the
    schema's own fields (none a float but the id) and the data's numbers are such."""
    customer, data = request["customer"], request["data"]
    if not customer.keys() <= _CUSTOMER_KEYS or type(customer["id"]) is float:
        return False
    if not data.keys() <= _DATA_KEYS:
        return False
    for value in (data["amount"], data["days_overdue"]):
        if type(value) is float and not (1e-4 <= abs(value) < 1e16 or value == 0.0):
            return False
    return True


def check_request(request: Any) -> None:
    """``ccm/schemas/request.schema.json``: raises :class:`Refused` where it refuses."""
    if type(request) is not dict or "customer" not in request:
        raise Refused("request")
    if not request.keys() <= _REQUEST_KEYS:
        raise Refused("request: other fields")
    customer = request["customer"]
    if type(customer) is not dict:
        raise Refused("customer")
    if "data" in request and type(request["data"]) is not dict:
        raise Refused("data")
    text = _CUSTOMER_TEXT
    for key, value in customer.items():
        most = text.get(key)
        if most is not None:
            if type(value) is not str or len(value) > most:
                raise Refused(key)
            pattern = _CUSTOMER_PATTERN.get(key)
            if pattern is not None and not pattern(value):
                raise Refused(key)
        elif key == "id":
            if type(value) is str:
                if not 0 < len(value) <= 128:
                    raise Refused(key)
            elif not _integral(value):
                raise Refused(key)
        elif key == "consents":
            if type(value) is not dict:
                raise Refused(key)
            for given in value.values():
                if type(given) is not bool:
                    raise Refused(key)
        elif key == "address":
            if type(value) is not dict or not value.keys() <= _ADDRESS_KEYS:
                raise Refused(key)
            for part, line in value.items():
                if part == "lines":
                    if type(line) is not list or len(line) > 6:
                        raise Refused(part)
                    for item in line:
                        if type(item) is not str or len(item) > 100:
                            raise Refused(part)
                elif type(line) is not str or len(line) > _ADDRESS_TEXT[part]:
                    raise Refused(part)
        elif key == "date_of_birth":
            if type(value) is not str or not _is_date(value):
                raise Refused(key)
        elif key == "document_code" and (type(value) is not str or not 0 < len(value) <= 64):
            raise Refused(key)
    if "id" not in customer:
        raise Refused("id")


def check_data(data: Any) -> None:
    """``templates/payment_reminder/contract.schema.json``: raises :class:`Refused`."""
    if type(data) is not dict:
        raise Refused("data")
    keys = data.keys()
    if not (_DATA_REQUIRED <= keys <= _DATA_KEYS):
        raise Refused("data: fields")
    amount = data["amount"]
    kind = type(amount)
    if kind is not int and kind is not float:
        raise Refused("amount")
    if amount > 1000000000 or amount <= 0:
        raise Refused("amount")
    currency = data["currency"]
    if type(currency) is not str or not _CURRENCY(currency):
        raise Refused("currency")
    due = data["due_date"]
    if type(due) is not str or not _is_date(due):
        raise Refused("due_date")
    days = data["days_overdue"]
    if not _integral(days) or days < 0 or days > 3650:
        raise Refused("days_overdue")
    url = data["pay_url"]
    if type(url) is not str or len(url) > 500 or not _PAY_URL(url):
        raise Refused("pay_url")
    if "reference" in data:
        reference = data["reference"]
        if (type(reference) is not str or not 0 < len(reference) <= 40
                or not _REFERENCE(reference)):
            raise Refused("reference")


def _plain_money(locale: Any, currency: str, format_type: str,
                 formatter: Callable[[Any], str]) -> Callable[[str], str | None] | None:
    """ccm's currency ``formatter`` (``ccm.render.i18n._currency_formatter``) for an amount
    written as Python writes a float or an int that needs no rounding: digits, at most one
    point, no more decimals than the currency has (after trailing zeros), not negative.
    Quantizing such an amount only pads its decimals, so the text is the same pieces put
    together: the same pattern, symbols and grouping, taken as that function takes them.
    None (where it answers None) for anything else; checked against ``formatter`` on a
    sweep of amounts first (None when any differs)."""
    import random
    from decimal import Decimal

    from babel import numbers

    try:
        pattern = locale.currency_formats[format_type]
        digits = numbers.get_currency_precision(currency)
        group = numbers.get_group_symbol(locale, numbering_system="latn")
        point = numbers.get_decimal_symbol(locale, numbering_system="latn")
        symbol = numbers.get_currency_symbol(currency, locale)
    except Exception:
        return None

    def currency_text(text: str) -> str:
        return text.replace("¤¤", currency.upper()).replace("¤", symbol)

    prefix, suffix = currency_text(pattern.prefix[0]), currency_text(pattern.suffix[0])
    minimum = pattern.int_prec[0]
    first, rest = pattern.grouping

    def plain(text: str) -> str | None:
        whole, _, frac = text.partition(".")
        frac = frac.rstrip("0")
        if (len(frac) > digits or not whole.isdigit() or not whole.isascii()
                or len(whole) > 20 or (frac and not frac.isdigit())):
            return None
        whole = whole.rjust(minimum, "0")
        size, tail = first, ""
        while len(whole) > size:
            tail = group + whole[-size:] + tail
            whole = whole[:-size]
            size = rest
        if digits:
            return prefix + whole + tail + point + frac.ljust(digits, "0") + suffix
        return prefix + whole + tail + suffix

    rng = random.Random(0)
    sweep: list[Any] = [0, 0.0, 1, 5, 10, 999, 1000, 12345678, 0.5, 0.05, 0.005, 1.25, 100.0,
                        999.99, 1234.5, 99999.99, 1e15, 123456789012.25, 86.4, 240.0]
    sweep += [round(rng.uniform(0, 10 ** rng.randint(0, 12)), rng.randint(0, 3))
              for _ in range(3000)]
    sweep += [rng.randint(0, 10 ** rng.randint(0, 15)) for _ in range(300)]
    for amount in sweep:
        made = plain(str(amount))
        if made is not None and made != formatter(Decimal(str(amount))):
            return None
    return plain


def _money_filter() -> Callable[..., str]:
    """ccm's ``money`` filter with the same answers: ccm's own currency formatter, found once
    per locale, currency and format (a dict instead of two LRU caches and a hashed Babel
    ``Locale``), ccm's filter itself for anything else (bools, infinities, names, unknown
    locales, what the fast formatter cannot round)."""
    from decimal import Decimal

    from jinja2 import pass_context
    from jinja2.utils import missing

    from ccm.render import i18n

    formatters: dict[tuple[Any, Any, Any], Callable[[Any], str]] = {}
    plains: dict[tuple[Any, Any, Any], Callable[[str], str | None] | None] = {}
    slow = i18n.money

    @pass_context
    def money(ctx: Any, amount: Any, currency: Any, format_type: Any = "standard") -> str:
        kind = type(amount)
        if kind is float or kind is int:
            locale = ctx.resolve_or_missing("locale")  # Context.get("locale")
            key = (None if locale is missing else locale, currency, format_type)
            fast = formatters.get(key)
            if fast is None:
                if type(currency) is not str or format_type == "name":
                    return slow(ctx, amount, currency, format_type)  # type: ignore[no-any-return]
                try:
                    locale = i18n._babel_locale(str(key[0] or "en"))
                except Exception:
                    return slow(ctx, amount, currency, format_type)  # type: ignore[no-any-return]
                fast = i18n._currency_formatter(locale, currency, format_type)
                if fast is None:
                    return slow(ctx, amount, currency, format_type)  # type: ignore[no-any-return]
                formatters[key] = fast
                plains[key] = _plain_money(locale, currency, format_type, fast)
            text = str(amount)
            plain = plains[key]
            if plain is not None:
                made = plain(text)
                if made is not None:
                    return made
            value = Decimal(text)
            if value.is_finite():
                try:
                    return fast(value)
                except ArithmeticError:
                    pass
        return slow(ctx, amount, currency, format_type)  # type: ignore[no-any-return]

    return money


def _newstyle_gettext(func: Callable[[str], str], env: Any) -> Any:
    """``jinja2.ext._make_new_gettext(func)`` calling ``func`` directly."""
    from jinja2 import pass_context
    from markupsafe import Markup

    @pass_context
    def gettext(__context: Any, __string: str, **variables: Any) -> str:
        try:
            rv: Any = func(__string)
        except StopIteration:
            rv = env.undefined("value was undefined because a callable raised a StopIteration"
                               " exception")
        if __context.eval_ctx.autoescape:
            rv = Markup(rv)
        return rv % variables  # type: ignore[no-any-return]

    return gettext


def _newstyle_ngettext(func: Callable[[str, str, int], str], env: Any) -> Any:
    """``jinja2.ext._make_new_ngettext(func)`` calling ``func`` directly."""
    from jinja2 import pass_context
    from markupsafe import Markup

    @pass_context
    def ngettext(__context: Any, __singular: str, __plural: str, __num: int,
                 **variables: Any) -> str:
        variables.setdefault("num", __num)
        try:
            rv: Any = func(__singular, __plural, __num)
        except StopIteration:
            rv = env.undefined("value was undefined because a callable raised a StopIteration"
                               " exception")
        if __context.eval_ctx.autoescape:
            rv = Markup(rv)
        return rv % variables  # type: ignore[no-any-return]

    return ngettext


class FloorText:
    """The template in plain jinja2 per locale, set up for speed: ccm's filters (``money``
    with its formatters found once, :func:`_money_filter`) and the translations, no reload
    checks, a plain template cache and globals, dict keys looked up before attributes, a
    context made with its parts ready (the child template's blocks already stacked on the
    layout's: what its ``{% extends %}`` does each time, done once) and callables' context
    passing looked up once per callable; the layout's root render function called directly."""

    def __init__(self, channel: str, contexts: list[dict[str, Any]],
                 finalize: Callable[[Any], Any] | None = None) -> None:
        import types

        import jinja2
        from jinja2 import nodes
        from jinja2.runtime import Context, EvalContext
        from jinja2.utils import _PassArg

        from ccm.render.i18n import FILTERS

        reference = naive_template(TEMPLATE, channel, contexts, FILTERS)  # ccm's text, checked
        filters = {**FILTERS, "money": _money_filter()}
        names = frozenset(dir(dict))

        class Env(jinja2.Environment):
            def getattr(self, obj: Any, attribute: str) -> Any:
                if type(obj) is dict and attribute not in names:
                    try:
                        return obj[attribute]
                    except KeyError:
                        pass
                return jinja2.Environment.getattr(self, obj, attribute)

        from jinja2.compiler import CodeGenerator, optimizeconst

        class FastGetattr(CodeGenerator):
            """Jinja's code, but ``a.b`` (b no attribute of dict) written as
            ``a["b"] if type(a) is dict and "b" in a else environment.getattr(a, "b")``:
            what ``Env.getattr`` answers, without a call when ``a`` is a dict holding ``b``."""

            @optimizeconst
            def visit_Getattr(self, node: Any, frame: Any) -> None:
                if self.environment.is_async or node.attr in names:
                    return CodeGenerator.visit_Getattr.__wrapped__(self, node, frame)
                self.fast_names = getattr(self, "fast_names", 0) + 1
                name, key = f"t_ga_{self.fast_names}", repr(node.attr)
                self.write(f"({name}[{key}] if type({name} := ")
                self.visit(node.node, frame)
                self.write(f") is dict and {key} in {name} else "
                           f"environment.getattr({name}, {key}))")
                return None

        Env.code_generator_class = FastGetattr
        passing: dict[Any, Any] = {}  # plain functions and methods: how each takes a context
        plain = (types.FunctionType, types.MethodType)
        builtin = types.BuiltinFunctionType
        general = Context.call

        class FastContext(Context):
            """Jinja's context; ``call`` as Jinja's, with each plain function's ``pass_*``
            looked up once (a plain function's ``__call__`` never carries one)."""

            def call(__self, __obj: Any, *args: Any, **kwargs: Any) -> Any:
                pass_arg = passing.get(__obj, passing)
                if pass_arg is passing:
                    if type(__obj) is builtin:  # a builtin carries no pass_* (no attributes)
                        kwargs.pop("_block_vars", None)
                        kwargs.pop("_loop_vars", None)
                        return __obj(*args, **kwargs)
                    if type(__obj) not in plain:
                        return general(__self, __obj, *args, **kwargs)
                    pass_arg = passing[__obj] = _PassArg.from_obj(__obj)
                if pass_arg is _PassArg.context:
                    if kwargs.get("_loop_vars"):
                        __self = __self.derived(kwargs["_loop_vars"])
                    if kwargs.get("_block_vars"):
                        __self = __self.derived(kwargs["_block_vars"])
                    args = (__self, *args)
                elif pass_arg is _PassArg.eval_context:
                    args = (__self.eval_ctx, *args)
                elif pass_arg is _PassArg.environment:
                    args = (__self.environment, *args)
                kwargs.pop("_block_vars", None)
                kwargs.pop("_loop_vars", None)
                try:
                    return __obj(*args, **kwargs)
                except StopIteration:
                    return __self.environment.undefined(
                        "value was undefined because a callable raised a StopIteration "
                        "exception")

        self.Context, self.EvalContext = FastContext, EvalContext
        self.by_locale: dict[str, tuple[Any, ...]] = {}
        for locale in sorted({ctx["locale"] for ctx in contexts}):
            env = naive_env(autoescape=channel != "sms", filters=filters,
                            translations=developer_translations(TEMPLATE, locale),
                            environment=Env, auto_reload=False, cache_size=-1,
                            finalize=finalize)
            env.context_class = FastContext
            # Jinja's newstyle gettext and ngettext (jinja2.ext), calling the catalog's own
            # functions directly where Jinja calls them through Context.call (which, for a
            # function without pass_*, only calls it).
            catalog = developer_translations(TEMPLATE, locale)
            found = getattr(catalog, "ugettext", None) or catalog.gettext
            found_n = getattr(catalog, "ungettext", None) or catalog.ngettext
            if any(_PassArg.from_obj(f) or _PassArg.from_obj(f.__call__)
                   for f in (found, found_n)):
                raise RuntimeError("a catalog function takes a context")
            env.globals["gettext"] = env.globals["_"] = _newstyle_gettext(found, env)
            env.globals["ngettext"] = _newstyle_ngettext(found_n, env)
            template = env.get_template(reference.source)
            template.globals = dict(template.globals)
            # The child's {% extends %} (nothing else at its top level, a layout that extends
            # nothing): its blocks stacked on the layout's, the layout's root to render.
            body = env.parse(env.loader.get_source(env, reference.source)[0]).body
            extends = body[0] if body else None
            if (not isinstance(extends, nodes.Extends)
                    or not isinstance(extends.template, nodes.Const)
                    or not all(isinstance(node, nodes.Block) for node in body[1:])):
                raise RuntimeError(f"{reference.source}: not a plain child template")
            layout = env.get_template(extends.template.value)
            layout_body = env.parse(env.loader.get_source(env, extends.template.value)[0])
            if any(True for _ in layout_body.find_all(nodes.Extends)):
                raise RuntimeError(f"{layout.name}: the layout extends another")
            blocks = {k: [v] for k, v in template.blocks.items()}
            for k, v in layout.blocks.items():
                blocks.setdefault(k, []).append(v)
            self.by_locale[locale] = (env, template.globals, set(template.globals),
                                      template.name, blocks, layout.root_render_func)
        for ctx in contexts:
            if self.render(ctx) != reference.render(ctx):
                raise RuntimeError(f"{reference.source}: the floor's text is not ccm's")

    def render(self, ctx: dict[str, Any]) -> str:
        return self.render_parent({**self.by_locale[ctx["locale"]][1], **ctx}, ctx["locale"])

    def names(self) -> dict[str, dict[str, Any]]:
        """The template's globals per locale (Jinja's names besides a context's variables)."""
        return {locale: made[1] for locale, made in self.by_locale.items()}

    def render_parent(self, parent: dict[str, Any], locale: str) -> str:
        """The text for ``parent``: a context's variables over the locale's :meth:`names`."""
        env, _, keys, name, blocks, root = self.by_locale[locale]
        context = self.Context.__new__(self.Context)  # Context.__init__'s fields, ready made
        context.parent = parent
        context.vars = {}
        context.environment = env
        context.eval_ctx = self.EvalContext(env, name)
        context.exported_vars = set()
        context.name = name
        context.globals_keys = keys
        context.blocks = blocks  # read only: a layout that extends nothing never adds to it
        return "".join(root(context))


def _printable(value: Any) -> Any:
    """The least of the sandbox's output check: a printed value is text or a number."""
    if type(value) in _PRINTABLE:
        return value
    raise TypeError(f"a {type(value).__name__} is not printed")


_PRINTABLE = frozenset({str, int, float})
_FIELD = re.compile(r"\{(\w+)\}")


def _normaliser() -> Callable[[str], str]:
    """ccm's :func:`~ccm.channels.sms.normalise` with the same answers, its test of a text
    beyond ASCII made on the characters other than printable ASCII and newline only (those
    are in its set of kept characters from the start, and it only grows), its spaces
    replaced one by one (no ``translate`` over the whole text): ccm's function itself for
    ASCII and for anything its shortcuts do not take."""
    import unicodedata

    from ccm.channels import sms

    if not {chr(i) for i in range(0x20, 0x7F)} | {"\n"} <= sms._KEPT:
        raise RuntimeError("ccm's SMS normalising changed: update _normaliser")
    normalise, tidy, kept, kept_or_space = sms.normalise, sms._tidy, sms._KEPT, sms._KEPT_OR_SPACE
    spaces, is_normalized = sms._SPACE_TABLE, unicodedata.is_normalized
    special = re.compile("[^\n\x20-\x7e]").findall

    def fast(text: str) -> str:
        if text.isascii() or not is_normalized("NFC", text):
            return normalise(text)
        found = set(special(text))
        if found <= kept:
            return tidy(text)
        if found <= kept_or_space:
            # text.translate(spaces): each character not kept is one of its spaces.
            for ch in found - kept:
                if spaces.get(ord(ch)) != " ":
                    return tidy(text.translate(spaces))
                text = text.replace(ch, " ")
            return tidy(text)
        return normalise(text)

    return fast


class Complete:
    """What the plain floor leaves out, per SMS, each in its cheapest known form.

    Everything a message needs that does not depend on the request is made
    here, once (outside the timing): per locale the brand values, the message
    variables and the parameters digest's JSON around the request.
    """

    def __init__(self, budget_s: float = 5.0) -> None:
        from ccm.channels.sms import finish_sms
        from ccm.render.engine import Engine

        engine = Engine(PACK, TEMPLATES, record=None, clock=_clock)
        tpl = engine.template(TEMPLATE)
        self.finish_sms = finish_sms
        self.pack = engine.pack
        self.by_locale: dict[str, tuple[dict[str, Any], str, str, dict[str, Any], str, str]] = {}
        for locale in self.pack.locales:
            brand = dict(engine._brand("sms", locale))
            fallback = brand.pop("_greeting_fallback")
            message = {"id": "", "channel": "sms", "template": tpl.id,
                       "template_version": tpl.version, "message_type": tpl.message_type,
                       "journey": tpl.journey, "confidential": tpl.confidential,
                       "letter": tpl.letter, "password_hint": None, "unsubscribe_url": None,
                       "document_url": None, "web_version_url": None, "created_at": ""}
            digest_prefix = (f'{{"channel":"sms","locale":{_quote_ascii(locale)},"pack":'
                             f'{_quote_ascii(self.pack.id)},"pack_version":'
                             f'{_quote_ascii(self.pack.version)},"request":')
            # The greeting as ccm's _greeting writes it: a pattern with one {field}, its text
            # around it (ccm's own function for any other pattern).
            greeting = brand["greeting"]
            fields = list(_FIELD.finditer(greeting))
            plan = ((fields[0].group(1), greeting[:fields[0].start()],
                     greeting[fields[0].end():]) if len(fields) == 1 else None)
            self.by_locale[locale] = (brand, fallback, greeting, message, digest_prefix,
                                      locale.split("_")[0], plan,
                                      "rtl" if self.pack.is_rtl(locale) else "ltr")
        from ccm.render.engine import _greeting

        self.greeting = _greeting
        self.resolved: dict[Any, str] = {}
        self.digest_suffix = (f',"template":{_quote_ascii(tpl.id)},"template_version":'
                              f'{_quote_ascii(tpl.version)}}}')
        # json.dumps(..., sort_keys=True, default=str, separators=(",", ":")) as its C
        # encoder is made (markers, default, quote, indent, separators, sort_keys, skipkeys,
        # allow_nan); no circular check (parsed JSON has no cycles: the same text).
        self.encode = json.encoder.c_make_encoder(  # type: ignore[attr-defined]
            None, str, _quote_ascii, None, ":", ",", True, False, True)
        self.dumps = None if orjson is None else orjson.dumps
        self.sort_keys = None if orjson is None else orjson.OPT_SORT_KEYS
        from ccm.channels import sms
        from ccm.errors import RenderError

        self.normalise, self.not_gsm7 = _normaliser(), sms._NOT_GSM7.search
        self.gsm7_wide, self.ucs2_wide = sms._GSM7_EXT_RE.findall, sms._ASTRAL.findall
        self.costs, self.split, self.empty = sms._costs, sms._split, RenderError
        if (sms._GSM7_SINGLE, sms._UCS2_SINGLE) != (160, 70):
            raise RuntimeError("ccm's SMS sizes changed: update Complete.finish")
        quiet = self.pack.raw["policy"]["quiet_hours"]
        self.quiet = (_minutes(quiet["start"]), _minutes(quiet["end"]))
        self.zones: dict[str, Any] = {}
        self.budget_s = budget_s

    def context(self, customer: dict[str, Any], data: dict[str, Any], message_id: str,
                created: str, names: dict[str, dict[str, Any]] | None = None,
                ) -> tuple[dict[str, Any], str]:
        """The template's variables for one request (as ccm's ``Engine.context``), its locale;
        with ``names`` (per locale), made over the locale's (a render's whole namespace)."""
        asked = customer.get("locale")
        locale = self.resolved.get(asked)
        if locale is None:
            locale = self.resolved[asked] = self.pack.resolve_locale(asked)
        brand, fallback, greeting, message, _, lang, plan, direction = self.by_locale[locale]
        if plan is None:
            written = self.greeting(greeting, fallback, customer)
        else:  # {field} from the customer, or the fallback
            value = customer.get(plan[0])
            kind = type(value)
            text = str(value).strip() if kind is str or kind is int else ""
            written = plan[1] + text + plan[2] if text else fallback
        return {**(names[locale] if names else {}), "customer": customer, "data": data,
                "brand": {**brand, "greeting": written},
                "message": {**message, "id": message_id, "created_at": created},
                "locale": locale, "lang": lang, "dir": direction,
                "timezone": customer.get("timezone") or "UTC"}, locale

    def permitted(self, customer: dict[str, Any], at: datetime, allowed: dict[str, bool],
                  ) -> bool:
        """The contact policy: not opted out of SMS, not inside quiet hours (per time zone,
        once per chunk: one clock reading per chunk)."""
        consents = customer.get("consents")
        if consents and consents.get("sms") is False:
            return False
        zone = customer.get("timezone") or "UTC"
        found = allowed.get(zone)
        if found is None:
            from zoneinfo import ZoneInfo

            local = at.astimezone(self.zones.get(zone) or self.zones.setdefault(
                zone, ZoneInfo(zone)))
            minute = local.hour * 60 + local.minute
            start, end = self.quiet
            found = allowed[zone] = not (minute >= start or minute < end)
        return found

    def finish(self, text: str, deadline: float, ended: float | None = None,
               ) -> tuple[str, int]:
        """The render budget (ccm's: a ``time.monotonic()`` deadline, against the clock read
        when the render ``ended``, or now); the text as an SMS carries it (ccm's
        :func:`~ccm.channels.sms.finish_sms` without a segment limit, its own pieces: the
        text normalised, GSM-7 or UCS-2, units, segments; an empty text refused) and its
        segments."""
        if (time.monotonic() if ended is None else ended) > deadline:
            raise RuntimeError("over the render budget")
        text = self.normalise(text)
        if self.not_gsm7(text) is None:
            units = len(text) + len(self.gsm7_wide(text))
            if units <= 160:
                if units:
                    return text, 1
                raise self.empty("SMS body is empty", channel="sms")
            return text, len(self.split(text, self.costs(text, "GSM-7"), "GSM-7"))
        units = len(text) + len(self.ucs2_wide(text))
        if units <= 70:
            return text, 1
        return text, len(self.split(text, self.costs(text, "UCS-2"), "UCS-2"))

    def canonical(self, request: dict[str, Any], read_by_orjson: bool = False) -> bytes:
        """ccm's canonical JSON of a request (``json.dumps`` with sorted keys, compact, ASCII)
        as UTF-8: orjson's where installed and where it is certainly the same text (no DEL;
        no number it writes otherwise: every float of the request between 1e-4 and 1e16 or
        zero, :func:`_ordinary_numbers`, or else no "e+", "e-" or "0.0000" anywhere; text
        beyond ASCII escaped as json escapes it), else json's own C encoder.

        ``read_by_orjson``: orjson read the request, which reads an integer beyond 64 bits
        as a float (9.2e18 or more, never ordinary, written with "e+"): json's text with
        "e+" raises :class:`_ReadAgain` (orjson's text never has one where it is used).
        Each test of the text below is a search for one byte (``memchr``) where it can be.
        """
        dumps = self.dumps
        if dumps is not None:
            try:
                out = dumps(request, option=self.sort_keys)
            except TypeError:  # an integer beyond 64 bits
                out = None
            if out is not None and b"\x7f" not in out and (
                    _ordinary_numbers(request) or (b"e+" not in out and b"e-" not in out
                                                   and b"0.0000" not in out)):
                if out.isascii():
                    return out  # type: ignore[no-any-return]
                # Text beyond ASCII, with no escape of orjson's (no backslash) and nothing
                # beyond U+FFFF (no UTF-8 lead byte F0-F4): json writes each character
                # beyond ASCII as \uXXXX (lower-case hex), as backslashreplace does but for
                # \xXX below U+0100 (UTF-8 lead bytes C2, C3): there every "\x" is \u00.
                if (b"\\" not in out and b"\xf0" not in out and b"\xf1" not in out
                        and b"\xf2" not in out and b"\xf3" not in out and b"\xf4" not in out):
                    escaped: bytes = out.decode().encode("ascii", "backslashreplace")
                    if b"\xc3" in out or b"\xc2" in out:
                        return escaped.replace(b"\\x", b"\\u00")
                    return escaped
        made = "".join(self.encode(request, 0)).encode()
        if read_by_orjson and b"e+" in made:
            raise _ReadAgain
        return made

    def params(self, customer: dict[str, Any], data: dict[str, Any], locale: str) -> str:
        """The parameters digest (ccm's canonical JSON of the request, template and pack)."""
        return hashlib.sha256(
            self.by_locale[locale][4].encode() + self.canonical({"customer": customer,
                                                                 "data": data})
            + self.digest_suffix.encode()).hexdigest()

    @staticmethod
    def reads(db: sqlite3.Connection, customers: list[str], at: datetime,
              keys: list[str] | None = None) -> None:
        """The chunk's reads before its commit: messages inside the widest cap window,
        chain heads, data keys; with ``keys``, the idempotency keys already recorded (else
        left to the unique index)."""
        marks = ", ".join("?" * len(customers))
        if keys is not None and db.execute(
                "SELECT idempotency_key, message_id, params_sha256 FROM messages WHERE "
                f"idempotency_key IN ({', '.join('?' * len(keys))})", keys).fetchall():
            raise RuntimeError("the floor's customers are new: no key is recorded yet")
        since = (at - timedelta(days=7)).isoformat(timespec="microseconds")
        since = since[:10] + " " + since[11:26]
        found = db.execute(
            "SELECT customer_id, created_at, message_type, channel FROM messages WHERE "
            f"customer_id IN ({marks}) AND status = 'generated' AND created_at >= ?",
            (*customers, since)).fetchall()
        found += db.execute(
            f"SELECT customer_id, MAX(seq), hash FROM chain WHERE customer_id IN ({marks}) "
            "GROUP BY customer_id", customers).fetchall()
        found += db.execute(
            f"SELECT customer_id, key_id, wrapped FROM data_keys WHERE customer_id IN ({marks})",
            customers).fetchall()
        if found:
            raise RuntimeError("the floor's customers are new: it writes each one's first link")


def _minutes(clock: str) -> int:
    hours, minutes = clock.split(":")
    return int(hours) * 60 + int(minutes)


class Floor:
    """The floor loop over ``requests`` for ``channel``; :meth:`run` writes into a folder.

    ``texts`` gives the message text per request instead of the floor's render
    (email: ccm's own bytes, made outside the timing).
    """

    def __init__(self, channel: str, requests: list[dict[str, Any]], master: Any,
                 texts: list[str] | None = None) -> None:
        from ccm.record.entries import _ENTRY_FIELDS
        from ccm.render.engine import Engine
        from ccm.render.template import request_fast_validator

        if tuple(_ENTRY_FIELDS) != _ROW:
            raise RuntimeError("ccm's message row changed: update floor_bench._ROW")
        self.naive = NaiveLoop(TEMPLATE, channel, requests, AS_OF)
        engine = Engine(PACK, TEMPLATES, record=None, clock=_clock)
        tpl = engine.template(TEMPLATE)
        self.channel = channel
        self.template_version = tpl.version
        self.pack_version = engine.pack.version
        self.message_type = tpl.message_type
        self.lines = [json.dumps(r).encode() for r in requests]
        self.contexts = self.naive.contexts
        self.texts = texts
        self.render = FloorText(channel, self.contexts).render if texts is None else None
        #: The complete floor (SMS): the sandbox's output check in the render, and the rest.
        self.checked_text = (FloorText(channel, self.contexts, _printable)
                             if channel == "sms" else None)
        self.checked_render = None if self.checked_text is None else self.checked_text.render
        self.extra = Complete() if channel == "sms" else None
        #: ccm's compiled checks, to compare answers with; the floor checks by hand (the same
        #: answers, :func:`check_request`, :func:`check_data`).
        self.compiled_checks = (request_fast_validator(), tpl.fast_validator)
        if None in self.compiled_checks:
            raise RuntimeError(f"{TEMPLATE}: no compiled validator")
        self.check_request, self.check_data = check_request, check_data
        #: The complete floor's parser of a line: orjson where installed (None: json's).
        self.fast_loads = None if orjson is None else orjson.loads
        self.master = master

    def new_folder(self, root: Path, name: str) -> Path:
        """An empty record (ccm's schema, the master key's fingerprint) and output folder."""
        from ccm.record import Record

        folder = root / name
        folder.mkdir()
        Record(f"sqlite:///{folder / 'record.db'}").close()
        with sqlite3.connect(folder / "record.db") as db:
            db.execute("INSERT INTO ccm_meta (key, value) VALUES (?, ?)",
                       ("master_key_fingerprint", self.master.fingerprint))
        return folder

    def run(self, folder: Path, *, store: bool = True, complete: bool = False) -> None:
        """Every message: parse, check, text; with ``store``, the record and the output.

        ``complete``: also what the plain floor leaves out, each in its cheapest known
        form (see the module docstring, "the complete floor").
        """
        if complete and store:
            # What was made before the run stays for all of it: the collector need not scan it
            # again and again, and it looks at what the run makes every 100,000 allocations
            # instead of 700 (the run leaves no garbage cycles: the test counts them).
            thresholds = gc.get_threshold()
            gc.freeze()
            gc.set_threshold(100_000, *thresholds[1:])
            try:
                self._complete(folder)
            finally:
                gc.set_threshold(*thresholds)
                gc.unfreeze()
            return
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        from ccm.record.archive import aad
        from ccm.record.chain import GENESIS

        db = sqlite3.connect(folder / "record.db", isolation_level=None)
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = FULL")
        insert = {table: f"INSERT INTO {table} ({', '.join(cols)}) "
                         f"VALUES ({', '.join('?' * len(cols))})"
                  for table, cols in (
                      ("data_keys", ("customer_id", "key_id", "wrapped", "created_at")),
                      ("messages", _ROW),
                      ("archive", ("ref", "part", "message_id", "customer_id", "key_id",
                                   "blob")),
                      ("chain", ("customer_id", "seq", "kind", "ref", "at", "detail",
                                 "prev_hash", "hash")))}
        out = None if complete else (folder / "messages.jsonl").open("wb")
        texts, contexts, lines = self.texts, self.contexts, self.lines
        render = self.checked_render if complete else self.render
        check_request, check_data = self.check_request, self.check_data
        wrap, fingerprint = self.master.wrap, self.master.fingerprint
        channel, kind = self.channel, self.message_type
        sha256, loads = hashlib.sha256, json.loads
        scan = json.decoder.JSONDecoder().scan_once
        extra = self.extra
        # The constant pieces of the chain link's canonical JSON (keys sorted, NULLs left out)
        # and of the output line.
        body_tail = (f',"message_type":{_quote(kind)},"pack":"acme","pack_version":'
                     f'{_quote(self.pack_version)},"params_sha256":"')
        body_end = (f'","status":"generated","template":{_quote(TEMPLATE)},'
                    f'"template_version":{_quote(self.template_version)}}}')
        link_tail = f',"kind":"message","prev":"{GENESIS}","ref":"'
        line_mid = (f', "channel": {_quote_ascii(channel)}, "template": '
                    f'{_quote_ascii(TEMPLATE)}, "locale": ')
        base = datetime.fromisoformat(AS_OF)
        try:
            for chunk, start in enumerate(range(0, len(lines), CHUNK)):
                count = min(len(lines), start + CHUNK) - start
                # One clock reading per chunk (a millisecond apart); ids as ccm makes them
                # (UUID version 7), sorted, so each index on message ids is appended to.
                at = base + timedelta(milliseconds=chunk)
                created = at.isoformat(timespec="microseconds")
                created_db = created[:10] + " " + created[11:26]
                quoted_at = _quote(created)
                prefix = f"{_AT_MS + chunk:012x}7"
                hexes = os.urandom(10 * count).hex()
                ids = sorted(prefix + h[0:3] + _VARIANT[h[3]] + h[4:19]
                             for h in (hexes[k:k + 20] for k in range(0, 20 * count, 20)))
                customers, made, locales, params = [], [], [], []
                allowed: dict[str, bool] = {}  # quiet hours per time zone, for this chunk
                for i in range(start, start + count):
                    try:  # json's own scanner; json.loads for anything it does not take whole
                        line = lines[i].decode()
                        request, end = scan(line, 0)
                        if end != len(line):
                            request = loads(line)
                    except (StopIteration, UnicodeDecodeError):
                        request = loads(lines[i])
                    check_request(request)
                    check_data(request["data"])
                    if complete:
                        customer = request["customer"]
                        ctx, locale = extra.context(customer, request["data"], ids[i - start],
                                                    created)
                        if not extra.permitted(customer, at, allowed):
                            raise RuntimeError("the floor's requests are all sent")
                        deadline = time.monotonic() + extra.budget_s
                        text, _ = extra.finish(render(ctx), deadline)
                        params.append(extra.params(customer, request["data"], locale))
                    else:
                        ctx = contexts[i]
                        locale = ctx["locale"]
                        text = render(ctx) if texts is None else texts[i]  # type: ignore[misc]
                    made.append(text)
                    customers.append(request["customer"]["id"])
                    locales.append(locale)
                contents = [text.encode() for text in made]
                digests = [sha256(content).hexdigest() for content in contents]
                if not store:
                    continue
                if complete:  # the reads before the commit: caps, chain heads, data keys
                    extra.reads(db, customers, at)
                noise = os.urandom(72 * count)
                key_ids = noise[:16 * count].hex()
                keys, messages, archive, chain, written = [], [], [], [], []
                for j in range(count):
                    customer, message_id, sha = customers[j], ids[j], digests[j]
                    locale = locales[j]
                    at_noise = 16 * count + 56 * j
                    key = noise[at_noise:at_noise + 32]
                    key_id = key_ids[32 * j:32 * j + 32]
                    wrapped = wrap(key, customer_id=customer,
                                   nonce=noise[at_noise + 32:at_noise + 44])
                    commitment = (f'{{"key_id":"{key_id}","master":"{fingerprint}",'
                                  f'"wrapped_sha256":"{sha256(wrapped).hexdigest()}"}}')
                    nonce = noise[at_noise + 44:at_noise + 56]
                    key_of = f"floor:{TEMPLATE}:{customer}:{channel}"
                    param = params[j] if complete else sha
                    quoted = _quote(customer)
                    keys.append((customer, key_id, wrapped, created_db))
                    archive.append((message_id, "content", message_id, customer, key_id,
                                    nonce + AESGCM(key).encrypt(
                                        nonce, contents[j],
                                        aad(message_id, "content", customer))))
                    messages.append((message_id, key_of, param, customer, channel, TEMPLATE,
                                     self.template_version, "acme", self.pack_version, kind,
                                     None, locale, created_db, "generated", None, sha, None,
                                     None, message_id, None))
                    link = sha256((
                        f'{{"at":{quoted_at},"body":{{"archive_ref":"{message_id}",'
                        f'"channel":{_quote(channel)},"content_sha256":"{sha}",'
                        f'"created_at":{quoted_at},"customer_id":{quoted},'
                        f'"idempotency_key":{_quote(key_of)},"locale":{_quote(locale)},'
                        f'"message_id":"{message_id}"{body_tail}{param}{body_end},'
                        f'"customer_id":{quoted},"detail":{_quote(commitment)}{link_tail}'
                        f'{message_id}","seq":1,"v":1}}').encode()).hexdigest()
                    chain.append((customer, 1, "message", message_id, created_db, commitment,
                                  GENESIS, link))
                    written.append(
                        f'{{"line": {start + j + 1}, "message_id": "{message_id}", '
                        f'"customer_id": {_quote_ascii(customer)}{line_mid}'
                        f'{_quote_ascii(locale)}, "content_sha256": "{sha}", '
                        f'"content": {_quote_ascii(made[j])}}}\n')
                if complete:  # staged and synced first, published after the commit
                    staged = folder / f".staging-{chunk:05d}.jsonl"
                    with staged.open("wb") as fh:
                        fh.write("".join(written).encode())
                        fh.flush()
                        os.fsync(fh.fileno())
                db.execute("BEGIN IMMEDIATE")
                for table, rows in (("data_keys", keys), ("messages", messages),
                                    ("archive", archive), ("chain", chain)):
                    db.executemany(insert[table], rows)
                db.execute("COMMIT")
                if complete:
                    staged.rename(folder / f"messages-{chunk:05d}.jsonl")
                else:
                    assert out is not None
                    out.write("".join(written).encode())
                    out.flush()
                    os.fsync(out.fileno())
        finally:
            if out is not None:
                out.close()
            db.close()


    def _complete(self, folder: Path) -> None:
        """:meth:`run` with ``complete``: the same work and the same record, in one pass per
        message: no lists between steps, constants written into the statements once, the
        ciphers' and hashes' functions called directly, the output written with ``os``."""
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        from ccm.record import archive, keys
        from ccm.record.chain import GENESIS

        db = sqlite3.connect(folder / "record.db", isolation_level=None)
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = FULL")
        directory = os.open(folder, os.O_RDONLY)

        def sql(value: str) -> str:
            return "'" + value.replace("'", "''") + "'"

        channel, kind = self.channel, self.message_type
        # The message row (ccm's columns, _ROW): what varies is bound, the rest written in.
        row = {"message_id": "?1", "idempotency_key": "?2", "params_sha256": "?3",
               "customer_id": "?4", "channel": sql(channel), "template": sql(TEMPLATE),
               "template_version": sql(self.template_version), "pack": "'acme'",
               "pack_version": sql(self.pack_version), "message_type": sql(kind),
               "journey": "NULL", "locale": "?5", "created_at": "?6",
               "status": "'generated'", "reason": "NULL", "content_sha256": "?7",
               "archival_sha256": "NULL", "sources_sha256": "NULL", "archive_ref": "?1",
               "segment": "NULL"}
        insert_messages = (f"INSERT INTO messages ({', '.join(_ROW)}) "
                           f"VALUES ({', '.join(row[c] for c in _ROW)})")
        insert_keys = ("INSERT INTO data_keys (customer_id, key_id, wrapped, created_at) "
                       "VALUES (?, ?, ?, ?)")
        insert_archive = ("INSERT INTO archive (ref, part, message_id, customer_id, key_id, "
                          "blob) VALUES (?1, 'content', ?1, ?2, ?3, ?4)")
        insert_chain = ("INSERT INTO chain (customer_id, seq, kind, ref, at, detail, "
                        f"prev_hash, hash) VALUES (?1, 1, 'message', ?2, ?3, ?4, "
                        f"{sql(GENESIS)}, ?5)")
        lines, extra = self.lines, self.extra
        render, names = self.checked_text.render_parent, self.checked_text.names()
        context, permitted, finish, params = (extra.context, extra.permitted, extra.finish,
                                              extra.params)
        check_request, check_data = self.check_request, self.check_data
        master_seal = self.master._aead.encrypt  # MasterKey.wrap without its argument checks
        wrap_aad, content_aad = keys._WRAP_AAD, archive._AAD
        if (self.master.wrap(b"k" * 32, customer_id="c", nonce=b"n" * 12)
                != b"n" * 12 + master_seal(b"n" * 12, b"k" * 32, wrap_aad + b"c")
                or archive.aad("m", "content", "c") != content_aad + b"m\x00content\x00c"):
            raise RuntimeError("ccm's key wrapping or archive binding changed")
        fingerprint = self.master.fingerprint
        sha256, loads, clock, budget = hashlib.sha256, json.loads, time.monotonic, extra.budget_s
        scan = json.decoder.JSONDecoder().scan_once
        fast_loads = self.fast_loads

        def read(raw: bytes) -> Any:
            """One line: orjson where installed, json's own scanner else; json.loads for
            whatever either refuses or does not take whole."""
            if fast_loads is not None:
                try:
                    return fast_loads(raw)
                except ValueError:
                    return loads(raw)
            try:
                line = raw.decode()
                request, end = scan(line, 0)
                if end == len(line):
                    return request
            except (StopIteration, UnicodeDecodeError):
                pass
            return loads(raw)

        canonical, digest_suffix = extra.canonical, extra.digest_suffix.encode()
        digest_prefix = {locale: made[4].encode() for locale, made in extra.by_locale.items()}
        commitment_head = '{"key_id":"'
        commitment_mid = f'","master":"{fingerprint}","wrapped_sha256":"'
        body_tail = (f',"message_type":{_quote(kind)},"pack":"acme","pack_version":'
                     f'{_quote(self.pack_version)},"params_sha256":"')
        body_end = (f'","status":"generated","template":{_quote(TEMPLATE)},'
                    f'"template_version":{_quote(self.template_version)}}}')
        link_tail = f',"kind":"message","prev":"{GENESIS}","ref":"'
        quoted_channel = _quote(channel)
        quoted_locale = {locale: _quote(locale) for locale in extra.by_locale}
        line_mid = (f', "channel": {_quote_ascii(channel)}, "template": '
                    f'{_quote_ascii(TEMPLATE)}, "locale": ')
        key_prefix = f"floor:{TEMPLATE}:"
        key_suffix = f":{channel}"
        base = datetime.fromisoformat(AS_OF)
        total = len(lines)
        try:
            for chunk, start in enumerate(range(0, total, CHUNK)):
                count = min(total, start + CHUNK) - start
                at = base + timedelta(milliseconds=chunk)
                created = at.isoformat(timespec="microseconds")
                created_db = created[:10] + " " + created[11:26]
                link_head = f'{{"at":{_quote(created)},"body":{{"archive_ref":"'
                link_created = f'","created_at":{_quote(created)},"customer_id":'
                prefix = f"{_AT_MS + chunk:012x}7"
                hexes = os.urandom(10 * count).hex()
                ids = sorted(prefix + h[0:3] + _VARIANT[h[3]] + h[4:19]
                             for h in (hexes[k:k + 20] for k in range(0, 20 * count, 20)))
                noise = os.urandom(72 * count)
                key_hex = noise[:16 * count].hex()
                # Each step over the whole chunk in turn (its code stays hot), then the record.
                raws = lines[start:start + count]
                try:
                    requests = [fast_loads(raw) for raw in raws]  # type: ignore[misc]
                except (TypeError, ValueError):  # no orjson, or a line it refuses: json's
                    requests = [read(raw) for raw in raws]
                for request in requests:
                    check_request(request)
                    check_data(request["data"])
                # The requests' canonical JSON (the parameters digest's): a line orjson may
                # have read otherwise than json (Complete.canonical) is read again by json.
                reread = fast_loads is not None
                try:
                    jsons = [canonical({"customer": request["customer"],
                                        "data": request["data"]}, reread)
                             for request in requests]
                except _ReadAgain:
                    jsons = []
                    for j, request in enumerate(requests):
                        try:
                            jsons.append(canonical({"customer": request["customer"],
                                                    "data": request["data"]}, reread))
                        except _ReadAgain:
                            request = requests[j] = loads(raws[j])
                            check_request(request)
                            check_data(request["data"])
                            jsons.append(canonical({"customer": request["customer"],
                                                    "data": request["data"]}))
                made = [context(request["customer"], request["data"], message_id, created,
                                names)
                        for request, message_id in zip(requests, ids, strict=True)]
                allowed: dict[str, bool] = {}  # quiet hours per time zone, for this chunk
                for request in requests:
                    if not permitted(request["customer"], at, allowed):
                        raise RuntimeError("the floor's requests are all sent")
                # The render budget: the clock read before and after each render, the
                # deadline checked as each text is finished.
                rendered = [(clock(), render(parent, locale), clock()) for parent, locale in made]
                texts = [finish(text, started + budget, ended)[0]
                         for started, text, ended in rendered]
                locales = [locale for _, locale in made]
                params = [sha256(digest_prefix[locale] + request_json
                                 + digest_suffix).hexdigest()
                          for locale, request_json in zip(locales, jsons, strict=True)]
                customers = [str(request["customer"]["id"]) for request in requests]
                # The record, step by step over the chunk: per message a new data key wrapped
                # by the master key, the content sealed with it, the rows and the chain link.
                offsets = range(16 * count, 72 * count, 56)
                keys_made = [noise[o:o + 32] for o in offsets]
                key_ids = [key_hex[k:k + 32] for k in range(0, 32 * count, 32)]
                wrapped = [noise[o + 32:o + 44] + master_seal(noise[o + 32:o + 44], key,
                                                              wrap_aad + who.encode())
                           for o, key, who in zip(offsets, keys_made, customers, strict=True)]
                commitments = [f'{commitment_head}{key_id}{commitment_mid}'
                               f'{sha256(sealed).hexdigest()}"}}'
                               for key_id, sealed in zip(key_ids, wrapped, strict=True)]
                contents = [text.encode() for text in texts]
                shas = [sha256(content).hexdigest() for content in contents]
                blobs = [noise[o + 44:o + 56] + AESGCM(key).encrypt(
                    noise[o + 44:o + 56], content,
                    content_aad + f"{message_id}\x00content\x00{who}".encode())
                    for o, key, content, message_id, who
                    in zip(offsets, keys_made, contents, ids, customers, strict=True)]
                keys_of = [f"{key_prefix}{who}{key_suffix}" for who in customers]
                links = [sha256((
                    f'{link_head}{message_id}","channel":{quoted_channel},'
                    f'"content_sha256":"{sha}{link_created}{quoted},'
                    f'"idempotency_key":{_quote(key_of)},"locale":{quoted_locale[locale]},'
                    f'"message_id":"{message_id}"{body_tail}{param}{body_end},'
                    f'"customer_id":{quoted},"detail":{_quote(commitment)}{link_tail}'
                    f'{message_id}","seq":1,"v":1}}').encode()).hexdigest()
                    for message_id, sha, quoted, key_of, locale, param, commitment
                    in zip(ids, shas, map(_quote, customers), keys_of, locales, params,
                           commitments, strict=True)]
                written = [
                    f'{{"line": {line}, "message_id": "{message_id}", '
                    f'"customer_id": {_quote_ascii(who)}{line_mid}'
                    f'{_quote_ascii(locale)}, "content_sha256": "{sha}", '
                    f'"content": {_quote_ascii(text)}}}\n'
                    for line, message_id, who, locale, sha, text
                    in zip(range(start + 1, start + count + 1), ids, customers, locales, shas,
                           texts, strict=True)]
                stamps = [created_db] * count
                data_keys = zip(customers, key_ids, wrapped, stamps, strict=True)
                messages = zip(ids, keys_of, params, customers, locales, stamps, shas, strict=True)
                archived = zip(ids, customers, key_ids, blobs, strict=True)
                chain = zip(customers, ids, stamps, commitments, links, strict=True)
                extra.reads(db, customers, at, keys_of)  # before the commit: keys, caps,
                # chain heads, data keys
                # The output staged and synced first, published after the commit.
                staged = os.path.join(folder, f".staging-{chunk:05d}.jsonl")
                fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                try:
                    out = memoryview("".join(written).encode())
                    while out:
                        out = out[os.write(fd, out):]
                    os.fsync(fd)
                finally:
                    os.close(fd)
                db.execute("BEGIN IMMEDIATE")
                db.executemany(insert_keys, data_keys)
                db.executemany(insert_messages, messages)
                db.executemany(insert_archive, archived)
                db.executemany(insert_chain, chain)
                db.execute("COMMIT")
                os.rename(staged, os.path.join(folder, f"messages-{chunk:05d}.jsonl"))
                os.fsync(directory)  # the new name is durable too
        finally:
            db.close()
            os.close(directory)


def _timed_runs(floor: Floor, work: Path, rounds: int, **kwargs: Any) -> Callable[[], None]:
    """A callable that runs the floor into the next of ``rounds`` folders made beforehand."""
    tag = "-".join(f"{k}{v}" for k, v in sorted(kwargs.items()))
    folders = [floor.new_folder(work, f"{floor.channel}-{tag}-{r}")
               for r in range(rounds)]

    def run() -> None:
        floor.run(folders.pop(), **kwargs)

    return run


def bench_sms(n: int, rounds: int, work: Path, master: Any) -> list[Result]:
    """The SMS floor and its parts against the naive loop, same invocation."""
    requests = list(requests_for(TEMPLATE, n, prefix="K"))
    floor = Floor("sms", requests, master)
    render = floor.render

    def render_only() -> None:
        for ctx in floor.contexts:
            render(ctx)

    best = best_of(rounds, {
        "naive": floor.naive.run,
        "floor": _timed_runs(floor, work, rounds),
        "parse, check, text": _timed_runs(floor, work, rounds, store=False),
        "text": render_only,
        "complete": _timed_runs(floor, work, rounds, complete=True),
    })
    us = {k: round(1e6 * v / n, 1) for k, v in best.items()}
    return [Result(
        "k-sms-floor", "SMS: the naive loop / the least the guarantees cost (parse, check, "
        "render with ccm's filters, record with master key, JSONL), CPU per message",
        us["naive"] / us["floor"], "x",
        details={"naive µs/SMS": us["naive"], "floor µs/SMS": us["floor"],
                 "of which the text (plain jinja2, ccm's filters)": us["text"],
                 "of which parse and check": round(us["parse, check, text"] - us["text"], 1),
                 "of which record and output": round(us["floor"] - us["parse, check, text"], 1),
                 "messages": n, "load": load_average()},
        note="the best ratio found for an implementation of the guarantees; g-sms asks >= 1.0x"),
        Result(
            "k-sms-floor-complete", "SMS: the naive loop / the complete floor (the floor plus "
            "the context, the contact policy, the sandbox's output check and render budget, "
            "segments, the parameters digest, the reads before a commit, staging), CPU per "
            "message", us["naive"] / us["complete"], "x",
            details={"naive µs/SMS": us["naive"], "complete floor µs/SMS": us["complete"],
                     "over the floor": round(us["complete"] - us["floor"], 1),
                     "messages": n, "load": load_average()},
            note="everything ccm batch must do per SMS, in its cheapest known form")]


def bench_email(n: int, rounds: int, work: Path, master: Any) -> Result:
    """The email floor without the render, plus ccm's render, against the naive loop."""
    from ccm.render.engine import Engine
    from ccm.render.template import validate_request

    requests = list(requests_for(TEMPLATE, n, prefix="L"))
    engine = Engine(PACK, TEMPLATES, record=None, clock=_clock)
    checked = [validate_request(r) for r in requests]
    texts = [engine.render(TEMPLATE, r, "email", record=False).content.decode()
             for r in checked]  # also warms every locale's templates and shapes
    floor = Floor("email", requests, master, texts)

    def ccm_render() -> None:
        for req in checked:
            engine.render(TEMPLATE, req, "email", record=False)

    best = best_of(rounds, {
        "naive": floor.naive.run,
        "floor without the render": _timed_runs(floor, work, rounds),
        "parse and check": _timed_runs(floor, work, rounds, store=False),
        "ccm render": ccm_render,
    })
    us = {k: round(1e6 * v / n, 1) for k, v in best.items()}
    least = us["floor without the render"] + us["ccm render"]
    return Result(
        "k-email-floor", "email: the naive loop / (the least the guarantees cost besides the "
        "render + ccm's Engine.render), CPU per message", us["naive"] / least, "x",
        details={"naive µs/email": us["naive"], "ccm Engine.render µs/email": us["ccm render"],
                 "of which parse and check": us["parse and check"],
                 "of which record and output (19 KB .eml)":
                     round(us["floor without the render"] - us["parse and check"], 1),
                 "messages": n, "load": load_average()},
        note="the best ratio with today's render; target g-email is >= 1.0x")


def run(quick: bool) -> list[Result]:
    """Both floors; ``quick`` uses fewer messages."""
    from ccm.record import MasterKey

    sms_n, email_n, rounds = (1500, 300, 3) if quick else (6000, 1500, 3)
    master = MasterKey.generate()
    work = Path(tempfile.mkdtemp(prefix="ccm-bench-floor-"))
    try:
        return [*bench_sms(sms_n, rounds, work, master),
                bench_email(email_n, rounds, work, master)]
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    import sys

    for result in run("--quick" in sys.argv):
        print(result.id, f"{result.value:.2f}{result.unit}", result.details)
