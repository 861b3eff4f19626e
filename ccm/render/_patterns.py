"""Contract regexes that cannot hang validation: refused when the template loads.

A data contract's ``pattern`` and ``patternProperties`` are run by Python's
``re`` (jsonschema and fastjsonschema alike), a backtracking engine with no
time limit: ``^(a+)+$`` against ``"aaaa…a!"`` takes exponential time, and
the value comes from a request, that is from outside. ``re`` cannot be
interrupted from another thread, so the bound is put where it costs nothing
per message: :func:`check_contract_patterns` reads each pattern once, when
the template is loaded (engine, batch, lint, approval, preview alike), and
refuses the shapes that backtrack exponentially:

* **nested repetition**: a repeated part (``+``, ``*``, ``{m,n}``) that holds
  another variable repetition, unless each round starts or ends with a
  character the inner repetitions cannot match (``(?:\\.[a-z]+)*`` and
  ``(?:[a-z]+,)*`` are fine: every round starts, or ends, at a dot or a comma,
  so the text splits into rounds one way only);
* **ambiguous alternatives** in a repeated part: ``(a|ab)+``, ``(a|a?)+``,
  alternatives that can start with the same character or match nothing.

A possessive repetition (``a++``, ``(?:…)*+``) or an atomic group
(``(?>…)``, Python 3.11) never gives back what it matched, so what is inside
one does not count for the repetition around it: those are the rewrites the
error suggests when the simple one (``^a+$`` for ``^(a+)+$``) does not fit.

Polynomial backtracking (``^\\d+\\d+$``, quadratic) is not refused; it is
bounded by the length of the value: give a patterned string a ``maxLength``
(docs/security.md).

Character sets are compared over the code points below U+3000 (Latin,
Greek, Cyrillic, Arabic, Hebrew, Indic scripts and the punctuation blocks),
with case folded when the pattern ignores case.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from re import _constants as sre  # type: ignore[attr-defined]
from re import _parser  # type: ignore[attr-defined]
from typing import Any

from ccm.errors import TemplateError

__all__ = ["check_contract_patterns", "pattern_problem"]

_UNIVERSE = frozenset(range(0x3000))
_REPEATS = (sre.MAX_REPEAT, sre.MIN_REPEAT)
#: Keywords whose values are data, not schemas (a ``"pattern"`` there is a value).
_DATA_KEYWORDS = frozenset({"enum", "const", "default", "examples"})
#: What a category escape means, by the suffix of its sre name.
_CATEGORIES = {"DIGIT": r"\d", "SPACE": r"\s", "WORD": r"\w", "LINEBREAK": r"\n"}

_Chars = frozenset[int]


@cache
def _category(name: str) -> _Chars:
    """The code points of ``CATEGORY_[UNI_|LOC_][NOT_]<kind>`` in the universe."""
    negate = "_NOT_" in name
    kind = name.rsplit("_", 1)[-1]
    source = _CATEGORIES.get(kind)
    if source is None:
        return _UNIVERSE
    text = "".join(map(chr, sorted(_UNIVERSE)))
    found = frozenset(ord(c) for c in re.findall(source, text))
    return _UNIVERSE - found if negate else found


def _fold(chars: _Chars) -> _Chars:
    out = set(chars)
    for code in chars:
        for variant in (chr(code).lower(), chr(code).upper()):
            if len(variant) == 1:
                out.add(ord(variant))
    return frozenset(out)


class _Reader:
    """The character sets of one parsed pattern."""

    def __init__(self, ignore_case: bool) -> None:
        self.ignore_case = ignore_case

    def single(self, op: Any, av: Any) -> _Chars | None:
        """The characters one single-character token matches; None for other tokens."""
        if op is sre.LITERAL:
            chars: _Chars = frozenset({av})
        elif op is sre.NOT_LITERAL:
            chars = _UNIVERSE - {av}
        elif op is sre.ANY:
            chars = _UNIVERSE
        elif op is sre.IN:
            found: set[int] = set()
            negate = False
            for item_op, item_av in av:
                if item_op is sre.NEGATE:
                    negate = True
                elif item_op is sre.LITERAL:
                    found.add(item_av)
                elif item_op is sre.RANGE:
                    found.update(range(item_av[0], min(item_av[1], 0x2FFF) + 1))
                elif item_op is sre.CATEGORY:
                    found |= _category(str(item_av))
                else:  # a form this reader does not know: it may match anything
                    found |= _UNIVERSE
            chars = _UNIVERSE - frozenset(found) if negate else frozenset(found)
        else:
            return None
        return _fold(chars) if self.ignore_case else chars

    def first(self, seq: Any) -> tuple[_Chars, bool]:
        """The characters ``seq`` can start with, and whether it can match nothing."""
        chars: set[int] = set()
        for op, av in seq:
            got, empty = self.first_token(op, av)
            chars |= got
            if not empty:
                return frozenset(chars), False
        return frozenset(chars), True

    def first_token(self, op: Any, av: Any) -> tuple[_Chars, bool]:
        single = self.single(op, av)
        if single is not None:
            return single, False
        if op in (sre.AT, sre.ASSERT, sre.ASSERT_NOT):
            return frozenset(), True
        if op is sre.SUBPATTERN:
            return self.first(av[3])
        if op is sre.ATOMIC_GROUP:
            return self.first(av)
        if op in (*_REPEATS, sre.POSSESSIVE_REPEAT):
            chars, empty = self.first(av[2])
            return chars, empty or av[0] == 0
        if op is sre.BRANCH:
            firsts = [self.first(alt) for alt in av[1]]
            return (frozenset().union(*(c for c, _ in firsts)),
                    any(e for _, e in firsts))
        return _UNIVERSE, True  # a back reference, a conditional: anything

    def all_chars(self, seq: Any) -> _Chars:
        """Every character ``seq`` can match anywhere."""
        chars: set[int] = set()
        for op, av in seq:
            single = self.single(op, av)
            if single is not None:
                chars |= single
            else:
                for sub in _children(op, av):
                    chars |= self.all_chars(sub)
                if op in (sre.GROUPREF, sre.GROUPREF_EXISTS, sre.GROUPREF_IGNORE,
                          sre.GROUPREF_LOC_IGNORE, sre.GROUPREF_UNI_IGNORE):
                    chars |= _UNIVERSE
        return frozenset(chars)


def _children(op: Any, av: Any) -> list[Any]:
    """The sub-sequences of one token."""
    if op is sre.SUBPATTERN:
        return [av[3]]
    if op is sre.ATOMIC_GROUP:
        return [av]
    if op in (*_REPEATS, sre.POSSESSIVE_REPEAT):
        return [av[2]]
    if op is sre.BRANCH:
        return list(av[1])
    if op in (sre.ASSERT, sre.ASSERT_NOT):
        return [av[1]]
    if op is sre.GROUPREF_EXISTS:
        return [part for part in av[1:] if part is not None]
    return []


def _backtracking(seq: Any) -> Iterator[tuple[Any, Any]]:
    """The variable repetitions and alternations of ``seq`` that can give back what they
    matched: not those inside a possessive repetition or an atomic group."""
    for op, av in seq:
        if op in _REPEATS and av[0] != av[1]:
            yield op, av
        elif op is sre.BRANCH:
            yield op, av
            for alt in av[1]:
                yield from _backtracking(alt)
        elif op in (sre.SUBPATTERN, *_REPEATS, sre.GROUPREF_EXISTS):
            for sub in _children(op, av):
                yield from _backtracking(sub)


def _separator(reader: _Reader, body: Any) -> _Chars | None:
    """The characters that must start each round of ``body`` (a fixed first token), or
    None when a round may start inside a variable repetition."""
    for op, av in body:
        if op in (sre.AT, sre.ASSERT, sre.ASSERT_NOT):
            continue
        if op in _REPEATS and av[0] != av[1]:
            return None
        chars, empty = reader.first_token(op, av)
        return None if empty else chars
    return None


def _end_separator(reader: _Reader, body: Any) -> _Chars | None:
    """The characters that must end each round of ``body`` (a fixed last token: one
    character, a fixed count of one, or a group ending so), or None.

    The mirror of :func:`_separator`: read backwards, a round that must end at a character
    the inner repetitions cannot match splits the text one way only, as one that must start
    at one does (``(?:[a-z]+,)*``, ``(?: ?[A-Z0-9]{4})+``).
    """
    for op, av in reversed(list(body)):
        if op in (sre.AT, sre.ASSERT, sre.ASSERT_NOT):
            continue
        single = reader.single(op, av)
        if single is not None:
            return single
        if op in _REPEATS and av[0] == av[1] >= 1:
            return _end_separator(reader, av[2])
        if op is sre.SUBPATTERN:
            return _end_separator(reader, av[3])
        return None
    return None


def _repeat_problem(reader: _Reader, body: Any) -> str | None:
    """Why repeating ``body`` backtracks exponentially, or None."""
    inner = list(_backtracking(body))
    repeats = [av[2] for op, av in inner if op in _REPEATS]
    if repeats:
        inside = frozenset().union(*(reader.all_chars(r) for r in repeats))
        start, end = _separator(reader, body), _end_separator(reader, body)
        delimited = ((start is not None and not start & inside)
                     or (end is not None and not end & inside))
        if not delimited:
            return "a repetition inside a repetition (nested quantifiers)"
    for op, av in inner:
        if op is not sre.BRANCH:
            continue
        firsts = [reader.first(alt) for alt in av[1]]
        if any(empty for _, empty in firsts):
            return "a repeated alternative that can match nothing"
        seen: set[int] = set()
        for chars, _ in firsts:
            if seen & chars:
                return "repeated alternatives that can start with the same character"
            seen |= chars
    return None


def _walk(reader: _Reader, seq: Any) -> str | None:
    for op, av in seq:
        if op in _REPEATS and av[1] > 1:
            problem = _repeat_problem(reader, av[2])
            if problem is not None:
                return problem
        for sub in _children(op, av):
            problem = _walk(reader, sub)
            if problem is not None:
                return problem
    return None


def pattern_problem(pattern: str) -> str | None:
    """Why ``pattern`` can take exponential time in ``re`` on some text, or None.

    Raises :class:`re.error` when it is not a regular expression.
    """
    parsed = _parser.parse(pattern)
    ignore_case = bool(parsed.state.flags & re.IGNORECASE) or _has_local_ignore_case(parsed)
    return _walk(_Reader(ignore_case), parsed)


def _has_local_ignore_case(seq: Any) -> bool:
    for op, av in seq:
        if op is sre.SUBPATTERN and av[1] & re.IGNORECASE:
            return True
        if any(_has_local_ignore_case(sub) for sub in _children(op, av)):
            return True
    return False


# -- the contract ------------------------------------------------------------------


def _patterns(schema: Any, where: tuple[str, ...], field: str
              ) -> Iterator[tuple[str, tuple[str, ...], str]]:
    """``(pattern, schema location, data field)`` for every regex of a JSON Schema."""
    if isinstance(schema, list):
        for index, item in enumerate(schema):
            yield from _patterns(item, (*where, str(index)), field)
        return
    if not isinstance(schema, dict):
        return
    if isinstance(schema.get("pattern"), str):
        yield schema["pattern"], (*where, "pattern"), field
    for key, value in schema.items():
        if key in _DATA_KEYWORDS or key == "pattern":
            continue
        if key == "properties" and isinstance(value, dict):
            for name, sub in value.items():
                yield from _patterns(sub, (*where, key, name), f"{field}.{name}")
        elif key == "patternProperties" and isinstance(value, dict):
            for regex, sub in value.items():
                yield regex, (*where, key, regex), f"{field}.<key matching {regex!r}>"
                yield from _patterns(sub, (*where, key, regex), f"{field}.<{regex}>")
        elif key in ("items", "additionalItems", "contains", "prefixItems",
                     "unevaluatedItems"):
            yield from _patterns(value, (*where, key), f"{field}[]")
        elif key in ("$defs", "definitions") and isinstance(value, dict):
            for name, sub in value.items():
                yield from _patterns(sub, (*where, key, name), f"#{key}/{name}")
        elif isinstance(value, dict | list):
            yield from _patterns(value, (*where, key), field)


def _line(path: Path, pattern: str) -> int | None:
    """The line of ``pattern`` in the contract file, when it can be found."""
    try:
        lines = path.read_text("utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    needle = json.dumps(pattern)
    for number, line in enumerate(lines, 1):
        if needle in line:
            return number
    return None


def check_contract_patterns(contract: Mapping[str, Any], contract_path: Path,
                            template_id: str) -> None:
    """Refuse (:class:`TemplateError`) a contract regex that can backtrack exponentially,
    naming the template, the file and line, the data field and how to rewrite it."""
    for pattern, where, field in _patterns(contract, ("$",), "data"):
        try:
            problem = pattern_problem(pattern)
        except (re.error, RecursionError, OverflowError) as exc:
            problem = f"not a regular expression Python reads ({exc})"
            advice = "correct it"
        else:
            advice = ("rewrite it so that the text splits into the repeated parts one way "
                      "only (e.g. ^a+$ for ^(a+)+$, [a-z]+ for (a|[b-z])+), or make the "
                      "inner repetition possessive (a++) or atomic ((?>...)); "
                      "docs/security.md, \"Data contracts\"")
        if problem is None:
            continue
        line = _line(contract_path, pattern)
        place = f"{contract_path}:{line}" if line else str(contract_path)
        location = ".".join(where)
        raise TemplateError(
            f"{place}: template {template_id!r}: {location}: the pattern {pattern!r} for "
            f"{field} can take exponential time on a hostile value ({problem}); {advice}",
            path=str(contract_path), line=line, key=location, field=field,
            template=template_id, rule="unsafe-pattern",
        )
