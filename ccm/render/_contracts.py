"""A fast "certainly valid" check of requests and data contracts, compiled by fastjsonschema.

``jsonschema`` walks a schema through generic machinery: about 520 µs for a
request and its contract, more than rendering an SMS. ``fastjsonschema``
compiles a schema to Python code once (about 22 µs for the same check; the
hand-written compiler this replaced took 370 µs with its fallbacks, see
``benchmarks/library_bench.py``, figure ``f-contracts``).

The compiled check only answers *is this valid?*: callers run ``jsonschema``
whenever the answer is not ``True``, so the errors users see (path, rule,
message) are always jsonschema's own. A ``False`` may be wrong in the safe
direction (it only costs the slow path); a ``True`` must not be. Hence:

* only schemas within a subset whose meaning is the same in fastjsonschema
  and in jsonschema's drafts 6 to 2020-12 get a check (:func:`compile_check`
  returns ``None`` otherwise): no ``enum``/``const`` of numbers or booleans
  (Python's ``1 == True``), ``items`` only as one schema, ``$ref`` only alone
  and local;
* ``format`` calls the very ``jsonschema.FormatChecker`` of the slow path;
* instances that are not plain JSON (tuples, subclasses, other objects) are
  answered ``False`` before the compiled code sees them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import fastjsonschema

__all__ = ["Check", "as_check", "compile_check", "compile_validator"]

Check = Callable[[Any], bool]

#: Keywords that never affect validity (``errorMessage``: the words of a failed
#: pattern, see :func:`ccm.render.template.describe_rule`).
_ANNOTATIONS = frozenset({
    "$schema", "$id", "$comment", "title", "description", "examples", "default",
    "deprecated", "readOnly", "writeOnly", "$defs", "definitions", "errorMessage",
})
_SUPPORTED = frozenset({
    "type", "properties", "required", "additionalProperties", "items", "minItems",
    "maxItems", "minLength", "maxLength", "pattern", "format", "minimum", "maximum",
    "exclusiveMinimum", "exclusiveMaximum", "enum", "const", "$ref",
})
_TYPES = frozenset({"object", "array", "string", "number", "integer", "boolean", "null"})
_SCALARS = (str, int, float, bool, type(None))


class _Unsupported(Exception):
    """The schema uses something outside the subset: no fast check."""


def _in_subset(schema: Any, depth: int = 0) -> None:
    if depth > 32:
        raise _Unsupported("too deep")
    if isinstance(schema, bool):
        return
    if not isinstance(schema, dict):
        raise _Unsupported("schema")
    keys = set(schema) - _ANNOTATIONS
    if keys - _SUPPORTED:
        raise _Unsupported(", ".join(sorted(keys - _SUPPORTED)))
    if "$ref" in schema:
        ref = schema["$ref"]
        if keys != {"$ref"} or not isinstance(ref, str) or not ref.startswith("#/"):
            raise _Unsupported("$ref")
    kinds = schema.get("type", ())
    for kind in (kinds,) if isinstance(kinds, str) else kinds:
        if kind not in _TYPES:
            raise _Unsupported(f"type {kind!r}")
    for key in ("enum", "const"):
        if key in schema:
            values = schema[key] if key == "enum" else [schema[key]]
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise _Unsupported(key)
    if "format" in schema and not isinstance(schema["format"], str):
        raise _Unsupported("format")
    for key in ("properties", "$defs", "definitions"):
        for sub in dict(schema.get(key, {})).values():
            _in_subset(sub, depth + 1)
    for key in ("additionalProperties", "items"):
        if key in schema:
            _in_subset(schema[key], depth + 1)


def _formats_in(schema: Any) -> set[str]:
    found: set[str] = set()
    stack = [schema]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if isinstance(item.get("format"), str):
                found.add(item["format"])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def _plain(value: Any) -> bool:
    """True when ``value`` is made only of ``dict``, ``list`` and JSON scalars."""
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is dict:
            if not all(type(k) is str for k in item):
                return False
            stack.extend(item.values())
        elif kind is list:
            stack.extend(item)
        elif kind not in _SCALARS:
            return False
    return True


def compile_validator(schema: Mapping[str, Any],
                      format_checker: Any) -> Callable[[Any], Any] | None:
    """fastjsonschema's compiled function of ``schema`` (raises when it refuses), or None.

    The raw function accepts tuples as arrays and objects that are not plain
    JSON; callers that use it directly must have checked the instance is
    plain JSON themselves (:func:`compile_check` does; the batch fast path
    walks each request once).
    """
    try:
        _in_subset(schema)
        # Every format jsonschema knows, checked by jsonschema's own function; the rest
        # (no checker installed for them) accept anything, as jsonschema does.
        names = set(format_checker.checkers) | _formats_in(schema)
        formats = {name: _remembered(format_checker, name) for name in names}
        validate: Callable[[Any], Any] = fastjsonschema.compile(
            dict(schema), formats=formats, use_default=False)
    except (_Unsupported, fastjsonschema.JsonSchemaDefinitionException, TypeError,
            ValueError, KeyError):
        return None
    return validate


#: Most string answers one format check remembers (a batch repeats its dates).
_REMEMBER = 65536


def _remembered(format_checker: Any, name: str) -> Callable[[Any], bool]:
    """``format_checker.conforms(value, name)``, remembered for strings (a pure function)."""
    seen: dict[str, bool] = {}

    def conforms(value: Any) -> bool:
        if type(value) is not str:
            return bool(format_checker.conforms(value, name))
        answer = seen.get(value)
        if answer is None:
            answer = bool(format_checker.conforms(value, name))
            if len(seen) < _REMEMBER:
                seen[value] = answer
        return answer

    return conforms


def compile_check(schema: Mapping[str, Any], format_checker: Any) -> Check | None:
    """A function ``instance -> bool`` (True only when ``schema`` accepts it), or None.

    ``format_checker`` is the ``jsonschema.FormatChecker`` the slow path uses,
    so ``format`` means exactly the same on both paths.
    """
    validate = compile_validator(schema, format_checker)
    return None if validate is None else as_check(validate)


def as_check(validate: Callable[[Any], Any]) -> Check:
    """The "certainly valid" check around a :func:`compile_validator` function."""

    def check(instance: Any) -> bool:
        if not _plain(instance):
            return False
        try:
            validate(instance)
        except fastjsonschema.JsonSchemaValueException:
            return False
        return True

    return check
