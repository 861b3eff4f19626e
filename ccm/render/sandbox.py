"""ccm's Jinja sandbox: Jinja's immutable sandbox plus budgets, data-only output and depth limits.

On top of :class:`~jinja2.sandbox.ImmutableSandboxedEnvironment`:

* **Bounded arithmetic and repetition.** ``*``, ``**``, ``+`` and ``%`` are
  intercepted (``intercepted_binops``), so the compiler cannot fold them
  at compile time either: ``{{ 10 ** (10 ** 8) }}`` and ``'A' * 10**9``
  fail before anything big is built. ``~``, filters, method calls and
  ``str.format`` widths are checked too; ``range`` and ``lipsum`` are
  capped. Limits come from the current :class:`~ccm.render.budget.Meter`.
* **Time.** Calls, operators, filters, tests (also those ``map``,
  ``select``, ``groupby`` and the like call), the walks that check values
  and loop iterations count steps on the meter, more for a bigger value;
  it looks at its deadline every few steps.
* **Sizes before building.** A value printed or written by ``tojson`` may
  not hold more items than the value budget; ``join``, ``replace``,
  ``expandtabs``, ``indent``, ``wordwrap``, ``urlize``, ``translate``,
  ``sum(start=[])`` and translations (:func:`check_named_format`) are
  refused when their arguments say the result would be over it; every
  filter's and method's result is checked, escaped text (``Markup``) too.
* **Data only.** Printing, joining, formatting or concatenating a function,
  class, module or Jinja runtime object (``{{ lipsum }}``, ``{{ range }}``,
  ``{{ cycler(1) }}``, ``_()`` or ``{% trans %}`` with one) raises
  :class:`~jinja2.exceptions.SecurityError` instead of showing its repr.
  So does a lazy sequence (``{{ rows|map(attribute='x') }}``, ``|reverse``,
  ``|select``, ``range(3)``, ``data.keys()``): the message says to end the
  expression with ``|list`` or ``|join``.
* **Blocked attributes fail everywhere.** An unsafe attribute raises at once
  (also inside ``map(attribute=...)``, ``sort(attribute=...)``) instead of
  becoming an undefined value that some filters would print.
* **Depth.** Sources nested deeper than :data:`MAX_NESTING` (brackets,
  block tags, chained operators or filters) fail at parse time with a
  syntax error naming the line, never a ``RecursionError``.
"""

from __future__ import annotations

import functools
import math
import re
import string
import types
from collections.abc import Callable, ItemsView, Iterable, Iterator, KeysView, ValuesView
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, cast

from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.environment import TemplateModule
from jinja2.exceptions import SecurityError, TemplateSyntaxError
from jinja2.filters import make_attrgetter
from jinja2.runtime import (
    BlockReference,
    Context,
    LoopContext,
    Macro,
    StrictUndefined,
    TemplateReference,
    Undefined,
)
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedFormatter
from jinja2.utils import Cycler, Joiner, Namespace, generate_lorem_ipsum
from markupsafe import EscapeFormatter, Markup

from ccm.render.budget import _FALLBACK, Meter, _current, current_meter

__all__ = ["MAX_NESTING", "MAX_RANGE", "CCMSandbox", "check_named_format", "check_printable",
           "refuse_repr_conversion"]

#: Deepest nesting of brackets, block tags or chained expressions in a source.
MAX_NESTING = 48
#: Most items ``range()`` may produce.
MAX_RANGE = 100_000
#: Most paragraphs and words per paragraph ``lipsum()`` may produce.
MAX_LIPSUM = 100
#: Loop iterations between two looks at the clock.
_TICK = 256
#: Bits an integer a template computes may have (about 3,000 decimal digits).
MAX_INT_BITS = 10_000

_BLOCK_TAGS = frozenset({"for", "if", "macro", "call", "filter", "block", "with", "trans",
                         "autoescape"})
_DATA_SCALARS = (str, int, float, bool, Decimal, date, datetime, timedelta, type(None))
_RUNTIME = (types.ModuleType, Cycler, Joiner, Namespace, LoopContext, Context, Macro,
            TemplateReference, BlockReference, TemplateModule)
#: Deepest nesting of lists and dicts a printed value may have (requests nest at most 32).
_PRINT_DEPTH = 40
_FAST = frozenset({str, int, float, bool, type(None), Markup})
#: Lazy sequences, whose str() is a Python repr: generators from ``map``,
#: ``select``, ``batch`` and the like, iterators, ranges and dict views.
_LAZY = (Iterator, range, KeysView, ValuesView, ItemsView)
_CONTAINERS = frozenset({list, tuple, dict})
#: Names ``getattr`` finds on a plain dict: these take Jinja's own path.
_DICT_ATTRIBUTES = frozenset(dir(dict))
#: Methods of ``dict`` that only read it: the immutable sandbox allows them (not
#: internal, not in its list of methods that change a ``dict``).
_DICT_READERS = frozenset({"get", "items", "keys", "values"})
#: Results this short are within any value budget (the smallest allowed is 1024).
_SMALL = 1024


def _describe(value: Any) -> str:
    if isinstance(value, type):
        return f"the class {value.__name__!r}"
    if callable(value):
        return f"the function {getattr(value, '__name__', type(value).__name__)!r}"
    return f"a {type(value).__name__!r} object"


class _Walk:
    """The items a deep :func:`check_printable` has visited: the clock is read as it goes,
    and when the value becomes text (``text``: each item at least one character, a string
    its length) the count may not pass the value budget, found before the text is built
    (``([a]*100)|tojson``)."""

    __slots__ = ("left", "meter", "text", "what")

    def __init__(self, text: bool, what: str = "value written as text", extra: int = 0) -> None:
        self.meter = _current.get() or _FALLBACK
        self.text = text
        self.what = what
        self.left = self.meter.max_value + extra

    def count(self, items: int) -> None:
        """``items`` more visited: steps on the meter, and characters when ``text``."""
        self.meter.step(1 + (items >> 6))
        if self.text:
            self.spend(items)

    def spend(self, chars: int) -> None:
        """``chars`` more characters of the text to come."""
        self.left -= chars
        if self.left < 0:
            raise self.meter.too_big(self.meter.max_value - self.left, self.what)


def check_printable(value: Any, *, deep: bool = False, lazy_ok: bool = False,
                    whole: bool = True, text: bool = True, _depth: int = 0,
                    _walk: _Walk | None = None) -> Any:
    """``value`` unchanged when it is data; :class:`SecurityError` for a function,
    class, module or Jinja runtime object (``deep``: inside lists and dicts too),
    and for a lazy sequence unless ``lazy_ok`` (the value goes to a filter that
    iterates it, such as ``join`` or ``list``, rather than being printed; a lazy
    sequence inside a list or dict is refused all the same: it would be printed).
    ``whole``: the value is turned into text as a whole (printed, ``~``, ``%s``), so
    escaped text inside a list or dict would come out as ``Markup('…')``; ``join``,
    ``sort`` and the like take the items one by one (``whole=False``). ``text``: the
    value becomes text (printed, ``tojson``, ``~``), so a deep check refuses one with more
    items than the value budget before the text is built; the walk reads the clock too."""
    kind = type(value)
    if kind is Markup and _depth and whole:
        raise SecurityError("escaped text inside a list or dict prints as a Python repr "
                            "(Markup('…')): print the items, or |join them")
    if kind in _FAST or (not deep and kind in _CONTAINERS):
        return value
    if isinstance(value, Undefined):
        # A missing name (StrictUndefined) fails wherever it would be written; the plain
        # Undefined of ``'x' if false`` (no else) prints as "", but not inside a list.
        if _depth or (deep and isinstance(value, StrictUndefined)):
            value._fail_with_undefined_error()
        return value
    if isinstance(value, _DATA_SCALARS):
        return value
    if isinstance(value, type) or callable(value) or isinstance(value, _RUNTIME):
        raise SecurityError(f"{_describe(value)} is not data and cannot be printed")
    if isinstance(value, (bytes, bytearray, memoryview)):
        raise SecurityError("bytes are not text and print as a Python repr: keep the str")
    if not lazy_ok and isinstance(value, _LAZY):
        raise SecurityError(
            f"a {type(value).__name__!r} (the lazy result of a filter such as map, select,"
            " reverse or batch, a range or a dict view) cannot be printed: end the"
            " expression with |list or |join(', ')")
    if deep:
        if isinstance(value, (dict, list, tuple, set, frozenset)) and _depth >= _PRINT_DEPTH:
            raise SecurityError(f"a value nested deeper than {_PRINT_DEPTH} levels cannot be "
                                "printed: print its parts")
        if isinstance(value, dict):
            if _walk is None:
                _walk = _Walk(text)
            _walk.count(1 + 2 * len(value))
            for key, item in list(value.items()):
                check_printable(key, deep=True, whole=whole, _depth=_depth + 1, _walk=_walk)
                check_printable(item, deep=True, whole=whole, _depth=_depth + 1, _walk=_walk)
                if _walk.text:
                    _walk.spend(_text_size(key) + _text_size(item))
        elif isinstance(value, (list, tuple, set, frozenset)):
            if _walk is None:
                _walk = _Walk(text)
            _walk.count(1 + len(value))
            for item in list(value):
                check_printable(item, deep=True, whole=whole, _depth=_depth + 1, _walk=_walk)
                if _walk.text and isinstance(item, str):
                    _walk.spend(len(item))
    return value


def _text_size(value: Any) -> int:
    return len(value) if isinstance(value, str) else 0


def _finalize(value: Any) -> Any:
    if type(value) in _FAST:
        return value
    return check_printable(value, deep=True)


_SIZED = frozenset({str, bytes, list, tuple, dict, set})


def _size(value: Any) -> int:
    if type(value) in _SIZED:  # the common case, without isinstance's walk
        return len(value)
    try:
        return len(value) if isinstance(value, (str, bytes, list, tuple, dict, set)) else 0
    except TypeError:
        return 0


def _checked_size(value: Any, what: str = "value") -> Any:
    size = _size(value)
    if size:
        meter = current_meter()
        if size > meter.max_value:
            raise meter.too_big(size, what)
    elif type(value) is int and value.bit_length() > MAX_INT_BITS:
        raise current_meter().error("value", f"an integer over {MAX_INT_BITS} bits")
    return value


#: The code of ccm's own functions the sandbox calls directly (:func:`trusted_call`).
_TRUSTED_CODE: set[types.CodeType] = set()


def trusted_call(func: Callable[..., Any]) -> Callable[..., Any]:
    """Mark ``func`` (a ``pass_context`` function of ccm's that does its own checks, the
    templates' ``gettext``) to be called by the sandbox without Jinja's dispatch.

    Recognised by its code, which every closure made from the same definition shares.
    """
    _TRUSTED_CODE.add(func.__code__)
    return func


def _checked_result(result: Any, what: str) -> Any:
    """A filter's or call's ``result``, within the value budget (:func:`_checked_size`):
    short text (``Markup`` too: ``Markup.escape`` makes up to five characters of one) and
    numbers within :data:`MAX_INT_BITS` (``int(base=16)`` and ``int.from_bytes`` have no
    digit limit) pass at once; anything else is measured."""
    if type(result) in _FAST and (
            len(result) <= _SMALL if isinstance(result, str)
            else type(result) is not int or result.bit_length() <= MAX_INT_BITS):
        return result
    return _checked_size(result, what)


def _check_int_args(args: Iterable[Any], what: str) -> None:
    for arg in args:
        if type(arg) is int and abs(arg) > _SMALL and \
                abs(arg) > (meter := current_meter()).max_value:
            raise meter.error("value", f"{what}: an argument is over the "
                              f"{meter.max_value} budget (budget.max_value_size)")


def _refuse_growth(meter: Meter, size: int, what: str) -> None:
    """:class:`BudgetError` when a value about to be built would have ``size`` items or
    characters over the value budget (found from the arguments, before it is built)."""
    if size > meter.max_value:
        raise meter.too_big(size, what)


def _joined(items: Any, separator: Any, *, counted: bool, what: str,
            data_only: bool = True) -> list[Any]:
    """``items`` as a list for a join, each data (``data_only``), the joined text's size
    counted as the items come (``counted``: a string's length, a list's or dict's items as
    when printed, at least a character for anything else) and the clock read as they go:
    a join over a huge or endless sequence stops before it is built."""
    step = len(separator) if isinstance(separator, (str, bytes)) else 0
    walk = _Walk(counted, what, extra=step)
    out: list[Any] = []
    for item in items:
        if isinstance(item, (str, bytes)):
            if counted:
                walk.spend(step + len(item))
        else:
            if data_only and type(item) not in _FAST:
                check_printable(item, deep=True, _walk=walk)
            if counted and not isinstance(item, Undefined):
                walk.spend(step + 1)
        out.append(item)
        if not len(out) & 1023:
            walk.meter.step(_TICKS_PER_1024)
    return out


#: Steps a thousand items of a walk weigh (the meter reads the clock every 32 steps).
_TICKS_PER_1024 = 16


def _grown_text(meter: Meter, name: str, text: Any, args: tuple[Any, ...],
                kwargs: dict[str, Any]) -> None:
    """Refuse a string filter or method whose arguments would make its result over the
    value budget: ``replace`` with a long replacement, ``expandtabs`` with a wide tab,
    ``indent`` of many lines, ``wordwrap`` or ``urlize`` adding a long string per word."""
    if not isinstance(text, (str, bytes)):
        return

    def arg(index: int, key: str, default: Any) -> Any:
        return args[index] if len(args) > index else kwargs.get(key, default)

    size = len(text)
    if name == "replace":
        old, new, count = arg(0, "old", None), arg(1, "new", None), arg(2, "count", -1)
        if isinstance(text, str) and old is not None and new is not None:
            old, new = str(old), str(new)  # what the filter writes (the method would refuse)
        same = (isinstance(old, str) and isinstance(new, str)) or \
            (isinstance(old, bytes) and isinstance(new, bytes))
        if same and len(new) > len(old):
            found = text.count(old) if old else size + 1  # type: ignore[arg-type]
            if type(count) is int and count >= 0:
                found = min(found, count)
            _refuse_growth(meter, size + found * (len(new) - len(old)), "result of replace")
    elif name == "expandtabs":
        tabsize = arg(0, "tabsize", 8)
        tab = "\t" if isinstance(text, str) else b"\t"
        if type(tabsize) is int and tabsize > 1:
            _refuse_growth(meter, size + text.count(tab) * (tabsize - 1),  # type: ignore[arg-type]
                           "result of expandtabs")
    elif name == "indent" and isinstance(text, str):
        width = arg(0, "width", 4)
        extra = len(width) if isinstance(width, str) else width if type(width) is int else 0
        _refuse_growth(meter, size + (text.count("\n") + 1) * extra, "result of indent")
    elif name in ("wordwrap", "urlize") and isinstance(text, str):
        added = sum(len(value) for value in (*args, *kwargs.values()) if isinstance(value, str))
        if added:
            breaks = len(text.split()) + text.count("\n") + 1
            width = arg(0, "width", 79) if name == "wordwrap" else 0
            if type(width) is int and width > 0:
                breaks += size // width
            _refuse_growth(meter, size + breaks * added, f"result of {name}")
    elif name == "translate" and isinstance(text, str):
        table = arg(0, "table", None)
        values = table.values() if isinstance(table, dict) else \
            table if isinstance(table, (list, tuple)) else ()
        longest = max((len(value) for value in values if isinstance(value, str)), default=1)
        _refuse_growth(meter, size * longest, "result of translate")


#: String methods and filters whose result can be much larger than their input.
_GROWING = frozenset({"replace", "expandtabs", "indent", "wordwrap", "urlize", "translate"})


#: A ``%`` conversion's width and precision (``%(name)9s`` too).
_PERCENT_WIDTH = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")


#: A ``%r``/``%a`` conversion (``%(name)r`` too): it writes a Python repr.
_PERCENT_REPR = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(?:\*|\d+)?(?:\.(?:\*|\d+))?[ra]")


def refuse_repr_conversion(fmt: str, *, percent: bool = True) -> None:
    """:class:`SecurityError` for ``%r`` (``percent``) or ``{!r}``: a repr, not text."""
    text = str(fmt)
    found = (_has_repr_conversion(text, percent) if len(text) <= _REMEMBERED_FORMAT
             else _has_repr_conversion.__wrapped__(text, percent))
    if found:
        if percent:
            raise SecurityError("the %r conversion writes a Python repr: use %s")
        raise SecurityError("the !r conversion writes a Python repr: leave it out")


@functools.lru_cache(maxsize=4096)
def _has_repr_conversion(fmt: str, percent: bool) -> bool:
    """(Remembered: the same messages and formats come back with every render.)"""
    if percent:
        return "%" in fmt and _PERCENT_REPR.search(fmt.replace("%%", "")) is not None
    try:
        fields = list(string.Formatter().parse(fmt))
    except ValueError:
        return False  # str.format raises its own error
    return any(conversion in ("r", "a") for _, _, _, conversion in fields)


def _check_format_widths(fmt: str, args: Any, *, percent: bool) -> None:
    """Refuse format strings whose widths or precisions would build a huge string, and
    conversions that write a repr."""
    refuse_repr_conversion(fmt, percent=percent)
    meter = current_meter()
    numbers: list[int] = []
    if percent:
        numbers.append(_named_format(fmt)[0])  # the widest, read once per format
        if "*" in fmt:
            values = args if isinstance(args, tuple) else (args,)
            numbers.extend(v for v in values if type(v) is int)
    else:
        try:
            parsed = list(string.Formatter().parse(fmt))
        except ValueError:
            return  # str.format raises its own error
        for _, _, spec, _ in parsed:
            numbers.extend(int(n) for n in re.findall(r"\d+", spec or ""))
            if spec and "{" in spec:
                for value in (*args[0], *args[1].values()):
                    if type(value) is int:
                        numbers.append(value)
    for number in numbers:
        if number > meter.max_value:
            raise meter.error("value", "a format width is over the "
                              f"{meter.max_value} budget (budget.max_value_size)")


def check_named_format(fmt: str, variables: dict[str, Any]) -> None:
    """Refuse ``fmt % variables`` (a translation's ``%(name)s`` placeholders) whose widths,
    or whose placeholders each repeating a long value, would make text over the value
    budget: found before it is built (``_('%(x)s' * 300, x=long_text)``).

    What the format says is read once per format (:func:`_named_format`): a render
    calls this for every translated message, and the same few come back every time."""
    _check_format_widths(fmt, variables, percent=True)
    uses = _named_format(fmt)[1]
    meter = current_meter()
    size = len(fmt)
    for name, count in uses:
        value = variables.get(name)
        if value is not None:
            size += count * (len(value) if isinstance(value, str) else len(str(value)))
    _refuse_growth(meter, size, "translated text")


#: A ``%(name)`` placeholder.
_PLACEHOLDER = re.compile(r"%\(([^)]*)\)")


#: Longest format string whose facts are remembered: formats come from templates and
#: catalogs (short, the same every render); a long one may be data, and is read afresh.
_REMEMBERED_FORMAT = 1024


def _named_format(fmt: str) -> tuple[int, tuple[tuple[str, int], ...]]:
    """A ``%`` format's widest width or precision (0 without one), and how often each
    ``%(name)`` is used: remembered per (short) format, read by every render."""
    if len(fmt) <= _REMEMBERED_FORMAT:
        return _remembered_format(fmt)
    return _read_format(fmt)


@functools.lru_cache(maxsize=4096)
def _remembered_format(fmt: str) -> tuple[int, tuple[tuple[str, int], ...]]:
    return _read_format(fmt)


def _read_format(fmt: str) -> tuple[int, tuple[tuple[str, int], ...]]:
    widest = 0
    for match in _PERCENT_WIDTH.finditer(fmt):
        for group in match.groups():
            if group and group != "*":
                widest = max(widest, int(group))
    uses: dict[str, int] = {}
    for name in _PLACEHOLDER.findall(fmt):
        uses[name] = uses.get(name, 0) + 1
    return widest, tuple(uses.items())


def _safe_range(*args: int) -> range:
    meter = current_meter()
    meter.check_time()
    rng = range(*args)
    if len(rng) > MAX_RANGE:
        raise meter.error("value", f"range() of {len(rng)} items is over the {MAX_RANGE} limit")
    return rng


def _lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
    meter = current_meter()
    if not (0 <= n <= MAX_LIPSUM) or not (0 <= min <= max <= 10 * MAX_LIPSUM):
        raise meter.error("value", f"lipsum() is limited to {MAX_LIPSUM} paragraphs of at "
                          f"most {10 * MAX_LIPSUM} words")
    return str(generate_lorem_ipsum(n=n, html=html, min=min, max=max))


class _Namespace(Namespace):
    """``namespace()`` whose attributes are size-checked when assigned."""

    def __setitem__(self, name: str, value: Any) -> None:
        meter = current_meter()
        meter.check_time()
        _checked_size(value)
        super().__setitem__(name, value)


def _metered_iter(iterable: Any) -> Any:
    """A loop's iterable, counted: a step per loop, the deadline every :data:`_TICK` items.

    Short lists and tuples go through as they are (a step when the loop starts
    is enough for them; nested loops step once per inner loop).
    """
    meter = current_meter()
    meter.tick()
    if type(iterable) in (list, tuple) and len(iterable) < _TICK:
        return iterable
    return _metered(iterable, meter)


def _metered(iterable: Any, meter: Meter) -> Iterator[Any]:
    count = 0
    for item in iterable:
        count += 1
        if count >= _TICK:
            count = 0
            meter.check_time()
        yield item


class _CheckedFormatter(SandboxedFormatter):
    """Jinja's sandboxed ``str.format``: each field's value, after its ``.attr`` and
    ``[key]`` parts, must be data (``"{0.upper}".format("x")`` reaches a method)."""

    def get_field(self, field_name: str, args: Any, kwargs: Any) -> tuple[Any, str]:
        obj, first = super().get_field(field_name, args, kwargs)
        return check_printable(obj, deep=True), first


class _CheckedEscapeFormatter(_CheckedFormatter, EscapeFormatter):
    """The same for ``Markup.format``: fields escaped."""


class _CodeGenerator(CodeGenerator):
    def _output_child_to_const(self, node: nodes.Expr, frame: Frame, finalize: Any) -> str:
        # Jinja folds a printed expression of literals while it compiles, and its ``~``
        # turns each part into text with str(): ``{{ [1]|reverse ~ "" }}`` would print an
        # iterator's repr past the sandbox. A ``~`` is joined at render time instead, by
        # ccm_concat, which checks the parts. (Jinja's optimizer, which folds the same way
        # inside any expression, is off: CCMSandbox.__init__.)
        if isinstance(node, nodes.Concat) or any(node.find_all(nodes.Concat)):
            raise nodes.Impossible()
        # Jinja escapes a folded value before the finalize sees it (``{{ ''.upper }}`` in an
        # autoescaped template): a value that is not data is left to the render's check.
        value = node.as_const(frame.eval_ctx)
        if type(value) not in _FAST:
            check_printable(value, deep=True)  # raises: Jinja then compiles it for the render
        return super()._output_child_to_const(node, frame, finalize)  # type: ignore[no-any-return]

    def visit_Const(self, node: nodes.Const, frame: Frame) -> None:
        value = node.as_const(frame.eval_ctx)
        if isinstance(value, float) and not math.isfinite(value):
            self.write(f"float({str(value)!r})")  # Jinja writes inf, which is no Python name
            return
        try:
            super().visit_Const(node, frame)
        except ValueError:  # a folded integer Python will not write out (over 4,300 digits)
            self.fail("a number of more than 4,300 digits comes out of this expression; "
                      "write it as a string, or pass it in the request's data", node.lineno)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        # ``a ~ b``: the parts must be data and the result within budget.
        if frame.eval_ctx.volatile:
            func_name = "(markup_join if context.eval_ctx.volatile else str_join)"
        elif frame.eval_ctx.autoescape:
            func_name = "markup_join"
        else:
            func_name = "str_join"
        self.write(f"environment.ccm_concat({func_name}, (")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


def _wrap_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    pass_arg = getattr(func, "jinja_pass_arg", None)
    skip = 1 if pass_arg is not None else 0
    deep = name in _STRINGIFYING
    lazy_ok = name in _ITERATING
    # Filters that write their input as text in one piece (join, sort, tojson, xmlattr and
    # urlencode take lists and dicts apart first).
    whole = deep and not lazy_ok and name not in ("tojson", "xmlattr", "urlencode")
    returns_argument = name in ("default", "d")  # the argument is returned, then printed
    # Filters whose input comes out as text, each item of a list at least one character.
    text = deep and not lazy_ok and name not in ("xmlattr", "urlencode")
    growing = name in _GROWING
    result_of = f"result of filter {name!r}"

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        # Every call counts, also through map, select and the like (which call filters
        # and tests themselves): a call on a big value weighs more (the clock is read
        # sooner), so a filter run a million times over big lists still stops on time.
        meter = _current.get() or _FALLBACK
        values = args[skip:] if skip else args
        meter.step(1 + (_size(values[0]) >> 10) if values else 1)
        if values:
            value = values[0]
            if type(value) not in _FAST:
                check_printable(value, deep=deep, lazy_ok=lazy_ok, whole=whole, text=text)
            if len(values) > 1:
                _check_int_args(values[1:], f"filter {name!r}")
                for item in values[1:]:  # a separator, a replacement, a fill value...
                    if type(item) not in _FAST and not isinstance(item, Undefined):
                        check_printable(item, deep=True, lazy_ok=returns_argument)
                if name == "format" and isinstance(value, str):
                    _check_format_widths(value, tuple(values[1:]), percent=True)
            if name == "pprint" and isinstance(value, Markup):
                raise SecurityError("pprint writes escaped text as a Python repr "
                                    "(Markup('…')): print it directly")
            if name == "indent" and not isinstance(value, str):
                # Jinja's indent adds a newline with +=, which would extend a list in place
                # (the request's own data): indent its text instead.
                args = (*args[:skip], str(value), *values[1:])
            if name == "join":  # items, or their attribute, are turned into text
                separator = values[1] if len(values) > 1 else kwargs.get("d", "")
                by_attribute = len(values) > 2 or kwargs.get("attribute") is not None
                items = _joined(value, separator, counted=not by_attribute,
                                what="result of join")
                args = (*args[:skip], items, *values[1:])
            if name == "sum":
                start = values[2] if len(values) > 2 else kwargs.get("start", 0)
                if type(start) in (list, tuple):
                    attribute = values[1] if len(values) > 1 else kwargs.get("attribute")
                    return _sum_sequences(args[0], value, attribute, start)
            if growing:  # (the filters turn any value into text first)
                subject = args[skip] if name == "indent" else value
                _grown_text(meter, name, subject if isinstance(subject, str) else str(subject),
                            values[1:], kwargs)
        if kwargs:
            _check_int_args(kwargs.values(), f"filter {name!r}")
            for item in kwargs.values():
                if type(item) not in _FAST and not isinstance(item, Undefined):
                    check_printable(item, deep=True, lazy_ok=returns_argument)
            if name == "format" and values and isinstance(values[0], str):
                _check_format_widths(values[0], tuple(kwargs.values()), percent=True)
        result = func(*args, **kwargs)
        return _checked_result(result, result_of)

    wrapped.__name__ = getattr(func, "__name__", name)
    wrapped.__doc__ = func.__doc__
    if pass_arg is not None:
        wrapped.jinja_pass_arg = pass_arg  # type: ignore[attr-defined]
    return wrapped


def _sum_sequences(environment: Any, iterable: Any, attribute: Any, start: Any) -> Any:
    """Jinja's ``sum`` of lists or tuples (``rows|sum(start=[])``), in linear time and within
    the value budget: Python's ``sum`` copies the total at every step (a hundred thousand
    one-item lists took seconds in one C call, out of the clock's reach)."""
    meter = _current.get() or _FALLBACK
    if attribute is not None:
        iterable = map(make_attrgetter(environment, attribute), iterable)
    kind = type(start)
    out = list(start)
    for item in iterable:
        if not isinstance(item, kind):
            raise TypeError(f'can only concatenate {kind.__name__} (not '
                            f'"{type(item).__name__}") to {kind.__name__}')
        meter.step(1 + (len(item) >> 10))
        out.extend(item)
        if len(out) > meter.max_value:
            raise meter.too_big(len(out), "result of sum")
    return kind(out)


def _wrap_test(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """A test that counts on the meter, more for a big value (``select('in', big)`` calls
    one test per item, past the template's own steps)."""

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        meter = _current.get() or _FALLBACK
        weight = 1
        for value in args:
            weight += _size(value) >> 10
        meter.step(weight)
        return func(*args, **kwargs)

    wrapped.__name__ = getattr(func, "__name__", name)
    wrapped.__doc__ = func.__doc__
    pass_arg = getattr(func, "jinja_pass_arg", None)
    if pass_arg is not None:
        wrapped.jinja_pass_arg = pass_arg  # type: ignore[attr-defined]
    return wrapped


#: Filters that turn their input into text (their input is checked deeply).
_STRINGIFYING = frozenset({"string", "join", "pprint", "format", "tojson", "e", "escape",
                           "forceescape", "safe", "urlencode", "xmlattr", "list", "sort",
                           "unique", "center", "indent", "wordwrap", "truncate", "replace",
                           "trim", "title", "upper", "lower", "capitalize", "striptags",
                           "urlize", "wordcount", "first", "last", "min", "max", "sum",
                           "iban"})

#: Filters that iterate their input rather than print it: a lazy sequence
#: (``rows|map(attribute='x')``) may go into them.
_ITERATING = frozenset({"join", "list", "sort", "unique", "first", "last", "min", "max",
                        "sum", "length", "count", "map", "select", "reject", "selectattr",
                        "rejectattr", "batch", "slice", "groupby", "reverse", "random",
                        "default", "d", "dictsort", "items"})


def _nesting_error(name: str | None, filename: str | None, line: int, what: str,
                   limit: int = MAX_NESTING) -> Exception:
    return TemplateSyntaxError(
        f"{what} nested deeper than {limit} levels; split it into macros or "
        "variables", line, name, filename)


def _check_token_depth(env: Any, source: str, name: str | None, filename: str | None) -> None:
    """Brackets and block tags nested too deeply, found by the (iterative) lexer."""
    brackets = blocks = 0
    previous = ""
    try:
        stream = env.lexer.tokeniter(source, name, filename)
        for line, token, value in stream:
            if token == "operator" and value in "([{":
                brackets += 1
                if brackets > MAX_NESTING:
                    raise _nesting_error(name, filename, line, "brackets")
            elif token == "operator" and value in ")]}":
                brackets -= 1
            elif token == "name" and previous in ("block_begin", "linestatement_begin"):
                if value in _BLOCK_TAGS:
                    blocks += 1
                    if blocks > MAX_NESTING // 2:
                        raise _nesting_error(name, filename, line, "block tags",
                                             MAX_NESTING // 2)
                elif value.startswith("end") and value[3:] in _BLOCK_TAGS:
                    blocks -= 1
            elif token == "integer" and len(value) > _LONG_LITERAL:
                _check_integer(value, name, filename, line)
            if token not in ("whitespace", "data"):
                previous = token
    except TemplateSyntaxError:
        raise
    except RecursionError:
        raise _nesting_error(name, filename, 1, "the source") from None


#: Integer literals shorter than this are always read (Python refuses decimal literals of
#: more than ``sys.get_int_max_str_digits()`` digits, 4,300 by default).
_LONG_LITERAL = 640


def _check_integer(value: str, name: str | None, filename: str | None, line: int) -> None:
    """A template error for an integer literal Python will not read (Jinja raises ValueError)."""
    try:
        int(value.replace("_", ""), 0)
    except ValueError:
        raise TemplateSyntaxError(
            f"a number of {len(value.replace('_', ''))} digits is longer than Python reads; "
            "write it as a string, or pass it in the request's data", line, name,
            filename) from None


def _check_tree_depth(tree: nodes.Node, name: str | None, filename: str | None) -> None:
    """Chained operators, filters and attribute lookups nested too deeply."""
    stack: list[tuple[nodes.Node, int]] = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > 3 * MAX_NESTING:
            raise _nesting_error(name, filename, getattr(node, "lineno", 1) or 1, "expressions",
                                 3 * MAX_NESTING)
        stack.extend((child, depth + 1) for child in node.iter_child_nodes())


class CCMSandbox(ImmutableSandboxedEnvironment):
    """The sandbox every ccm template runs in (see the module docstring)."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})
    code_generator_class = _CodeGenerator

    def __init__(self, **options: Any) -> None:
        options.setdefault("finalize", _finalize)
        # Jinja's optimizer evaluates expressions of literals while compiling, past the
        # sandbox's checks (``([1]|reverse ~ "") or "x"`` printed an iterator's repr):
        # every expression is evaluated at render time instead.
        options.setdefault("optimized", False)
        super().__init__(**options)
        self.globals["range"] = _safe_range
        self.globals["lipsum"] = _lipsum
        self.globals["namespace"] = _Namespace
        self.filters["_ccm_iter"] = _metered_iter

    def wrap_filters(self) -> None:
        """Put the budget and data checks around every filter and test (call after adding
        filters or tests)."""
        for name, func in list(self.filters.items()):
            if name != "_ccm_iter" and not getattr(func, "_ccm_wrapped", False):
                wrapped = _wrap_filter(name, func)
                wrapped._ccm_wrapped = True  # type: ignore[attr-defined]
                self.filters[name] = wrapped
        for name, test in list(self.tests.items()):
            if not getattr(test, "_ccm_wrapped", False):
                counted = _wrap_test(name, cast("Callable[..., Any]", test))
                counted._ccm_wrapped = True  # type: ignore[attr-defined]
                self.tests[name] = counted

    # -- parse: depth limits and metered loops

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        _check_token_depth(self, source, name, filename)
        try:
            tree = super()._parse(source, name, filename)
        except RecursionError:
            raise _nesting_error(name, filename, 1, "an expression") from None
        _check_tree_depth(tree, name, filename)
        fold = self.__dict__.get("_ccm_fold")  # an overlay of ccm.render.fold.FoldedEnvironments
        if fold is not None:
            tree = fold(tree, name)
        return tree

    def _generate(self, source: nodes.Template, name: str | None, filename: str | None,
                  defer_init: bool = False) -> str:
        for loop in source.find_all(nodes.For):
            loop.iter = nodes.Filter(loop.iter, "_ccm_iter", [], [], None, None,
                                     lineno=loop.lineno)
        try:
            return super()._generate(source, name, filename, defer_init)
        except RecursionError:
            raise _nesting_error(name, filename, 1, "the source") from None

    def _compile(self, source: str, filename: str) -> types.CodeType:
        try:
            return super()._compile(source, filename)
        except (RecursionError, SyntaxError, MemoryError) as exc:
            raise TemplateSyntaxError(
                f"the source is nested too deeply to compile ({exc.__class__.__name__}); split "
                "it into macros or variables", 1, None, filename) from None

    def make_globals(self, d: Any = None) -> Any:
        """A template's globals as one plain dict (Jinja's ``ChainMap`` costs every render).

        Jinja copies the globals into each render's context; from a ``ChainMap``
        that is a Python-level walk (about a fifth of an SMS render). ccm builds
        its environment completely before loading any template and never
        changes ``env.globals`` afterwards, so a snapshot holds the same names.
        """
        return {**self.globals, **(d or {})}

    # -- runtime hooks

    def getattr(self, obj: Any, attribute: str) -> Any:
        """``data.amount`` on a plain dict without Jinja's failed ``getattr`` first.

        Jinja tries the attribute, catches the ``AttributeError`` and then
        looks the key up. For an exact ``dict`` and a name that is no attribute
        of ``dict`` the attribute lookup can only fail, so the
        key is looked up at once; anything else takes Jinja's own path. The
        methods of an exact ``dict`` that only read it (``brand.sms.get``) are the
        bound methods Jinja's path returns, without its safety checks of names it
        always lets through.
        """
        if type(obj) is dict:
            if attribute not in _DICT_ATTRIBUTES:
                try:
                    return obj[attribute]
                except KeyError:
                    pass
            elif attribute in _DICT_READERS:
                return getattr(obj, attribute)
        return super().getattr(obj, attribute)

    def unsafe_undefined(self, obj: Any, attribute: str) -> Undefined:
        raise SecurityError(
            f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe.")

    def call(__self, __context: Context, __obj: Any, *args: Any,
             **kwargs: Any) -> Any:
        meter = _current.get() or _FALLBACK
        meter.ticks -= 1
        if meter.ticks <= 0:
            meter.tick()
        if args:
            _check_int_args(args, "call")
        if kwargs:
            _check_int_args(kwargs.values(), "call")
        # Jinja's Context.call without its dispatch, for the two callables every render
        # calls (its translations, a small brand mapping's ``get``): what it would do, and
        # the same checks of the result. (``_loop_vars``/``_block_vars`` only change the
        # context's variables, which neither reads.)
        kind = type(__obj)
        if (kind is types.FunctionType and __obj.__code__ in _TRUSTED_CODE) or (
                kind is types.BuiltinMethodType and type(__obj.__self__) is dict
                and __obj.__name__ in _DICT_READERS and len(__obj.__self__) <= _SMALL):
            if "_loop_vars" in kwargs or "_block_vars" in kwargs:
                kwargs.pop("_loop_vars", None)
                kwargs.pop("_block_vars", None)
            result = (__obj(__context, *args, **kwargs) if kind is types.FunctionType
                      else __obj(*args, **kwargs))
            return _checked_result(result, "call result")
        if not __self.is_safe_callable(__obj):
            raise SecurityError(f"{_describe(__obj)} is not safely callable")
        owner = getattr(__obj, "__self__", None) if args or kwargs else None
        if owner is None or (type(owner) is dict and len(owner) <= _SMALL):
            pass  # no bound method, or a small mapping's (brand.sms.get(...)): nothing more
        else:
            size = _size(owner)
            if size > _SMALL:  # big.count(x), big.index(x)...
                meter.step(size >> 10)
            if isinstance(owner, bytes) and __obj.__name__ in _GROWING:
                _grown_text(meter, __obj.__name__, owner, args, kwargs)
            elif isinstance(owner, bytes) and __obj.__name__ == "join" and args:
                args = (_joined(args[0], owner, counted=True, what="result of join",
                                data_only=False), *args[1:])
        if owner is not None and (isinstance(owner, str) or (isinstance(owner, type)
                                                           and issubclass(owner, str))):
            # str and Markup methods turn their arguments into text (Markup.escape(x), a
            # class method, Markup.join([x]), Markup.replace(a, x)): data only.
            name = __obj.__name__
            if name in _GROWING:  # before a result over the value budget is built
                _grown_text(meter, name, owner, args, kwargs)
            if name == "join" and args:  # the items are written one by one
                args = (_joined(args[0], owner, counted=isinstance(owner, str),
                                what="result of join"), *args[1:])
                rest: tuple[Any, ...] = (*args[1:], *kwargs.values())
            else:
                rest = (*args, *kwargs.values())
            for item in rest:
                if type(item) not in _FAST:
                    check_printable(item, deep=True)
        result = __context.call(__obj, *args, **kwargs)
        return _checked_result(result, "call result")

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        meter = current_meter()
        meter.tick()
        if operator == "**":
            if (type(left) is int and type(right) is int and right > 0
                    and left not in (0, 1, -1) and left.bit_length() * right > MAX_INT_BITS):
                raise meter.error("value", f"a power over {MAX_INT_BITS} bits")
        elif operator == "*":
            if type(left) is int and type(right) is int:
                if left.bit_length() + right.bit_length() > MAX_INT_BITS:
                    raise meter.error("value", f"a product over {MAX_INT_BITS} bits")
            else:
                times, seq = (right, left) if type(right) is int else (left, right)
                if type(times) is int and _size(seq) * max(times, 0) > meter.max_value:
                    raise meter.too_big(_size(seq) * times, "repetition")
        elif operator == "+":
            check_printable(left)
            check_printable(right)
            if _size(left) + _size(right) > meter.max_value:
                raise meter.too_big(_size(left) + _size(right), "concatenation")
        elif operator == "%" and isinstance(left, str):
            # A tuple's items, or a dict's values for %(name)s, are the arguments, each
            # written on its own; a dict under a plain %s is written whole.
            if type(right) is tuple:
                for item in right:
                    check_printable(item, deep=True)
            elif type(right) is dict and "%(" in left:
                for key, item in right.items():
                    check_printable(key, deep=True)
                    check_printable(item, deep=True)
            else:
                check_printable(right, deep=True)
            _check_format_widths(left, right, percent=True)
        return _checked_size(super().call_binop(context, operator, left, right))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """``str.format``/``format_map``: data arguments only, every field's value data
        (``{0.upper}`` reaches a method), widths within budget."""
        if (not isinstance(value, (types.MethodType, types.BuiltinMethodType))
                or value.__name__ not in ("format", "format_map")
                or not isinstance(value.__self__, str)):
            return None
        fmt = value.__self__
        kind = type(fmt)
        formatter = (_CheckedEscapeFormatter(self, escape=fmt.escape)
                     if isinstance(fmt, Markup) else _CheckedFormatter(self))
        is_map = value.__name__ == "format_map"

        def checked(*args: Any, **kwargs: Any) -> str:
            current_meter().check_time()
            if is_map:
                if kwargs or len(args) != 1:
                    raise TypeError("format_map() takes exactly one argument")
                positional: tuple[Any, ...] = ()
                named: Any = args[0]
            else:
                positional, named = args, kwargs
            for item in [*positional, *(named.values() if isinstance(named, dict) else ())]:
                check_printable(item, deep=True)
            _check_format_widths(fmt, (positional, named if isinstance(named, dict) else {}),
                                 percent=False)
            return str(_checked_size(kind(formatter.vformat(fmt, positional, named))))

        return checked

    def concat(self, parts: Iterable[str]) -> str:
        """Jinja's join of captured output -- a ``{% set %}`` or ``{% filter %}`` block, a
        macro's or a ``caller()`` body, ``self.block()`` -- within the value budget, found
        before it is joined: a ``{% set %}`` block looping ``{{ big }}`` (the same string
        each time) would otherwise join gigabytes, unchecked. (The document itself is
        streamed and held to the output budget: :func:`~ccm.render.environment.render_source`.)
        """
        if type(parts) is not list:
            parts = list(parts)
        size = sum(map(len, parts))
        meter = current_meter()
        if size > meter.max_value:
            raise meter.too_big(size, "text captured by a {% set %} or {% filter %} block, "
                                "a macro or a call block")
        return "".join(parts)

    def ccm_concat(self, join: Callable[[Iterable[Any]], str], parts: tuple[Any, ...]) -> str:
        """``a ~ b``: each part must be data, the result within the value budget."""
        meter = current_meter()
        meter.check_time()
        size = 0
        for part in parts:
            check_printable(part, deep=True)
            size += _size(part) if isinstance(part, str) else 32
        if size > meter.max_value:
            raise meter.too_big(size, "concatenation")
        return join(parts)
