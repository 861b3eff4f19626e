"""A fast "certainly valid" check for the JSON Schema subset that data contracts use.

``jsonschema`` walks a schema through generic machinery (a validator object
per level, error generators, type checker lookups): about 50 µs for a small
contract, more than rendering an SMS. :func:`compile_check` turns a schema
into nested closures that answer one question -- *is this instance valid?* --
for the keywords ccm's contracts use. It never explains a failure: callers
run ``jsonschema`` whenever the answer is not ``True``, so the errors users
see (path, rule, message) are always jsonschema's own. A ``False`` here may
be wrong in the safe direction (it only costs the slow path); a ``True`` must
not be, so anything outside the subset makes :func:`compile_check` return
``None`` (always use jsonschema), and any value that is not plain JSON
(``dict``, ``list``, ``str``, ``int``, ``float``, ``bool``, ``None``) answers
``False``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["Check", "compile_check"]

Check = Callable[[Any], bool]

#: Keywords that never affect validity.
_ANNOTATIONS = frozenset({
    "$schema", "$id", "$comment", "title", "description", "examples", "default",
    "deprecated", "readOnly", "writeOnly", "$defs", "definitions", "$anchor",
})
_SUPPORTED = frozenset({
    "type", "properties", "required", "additionalProperties", "items", "minItems",
    "maxItems", "minLength", "maxLength", "pattern", "format", "minimum", "maximum",
    "exclusiveMinimum", "exclusiveMaximum", "enum", "const", "$ref",
})
_JSON_SCALARS = (str, int, float, bool, type(None))


class _Unsupported(Exception):
    """The schema uses something outside the subset: no fast check."""


def _is_type(value: Any, name: str) -> bool:
    """jsonschema's draft 6+ type checker, for plain JSON values."""
    if name == "object":
        return type(value) is dict
    if name == "array":
        return type(value) is list
    if name == "string":
        return type(value) is str
    if name == "boolean":
        return type(value) is bool
    if name == "null":
        return value is None
    if name == "number":
        return type(value) in (int, float)
    if name == "integer":
        return type(value) is int or (type(value) is float and value.is_integer())
    raise _Unsupported(name)


def _plain(value: Any) -> bool:
    return isinstance(value, _JSON_SCALARS) or type(value) in (dict, list)


def compile_check(schema: Mapping[str, Any], format_checker: Any) -> Check | None:
    """A function ``instance -> bool`` (True only when ``schema`` accepts it), or None.

    ``format_checker`` is the ``jsonschema.FormatChecker`` the slow path uses,
    so ``format`` means exactly the same on both paths.
    """
    try:
        return _compile(schema, schema, format_checker, depth=0)
    except (_Unsupported, re.error, TypeError, KeyError, ValueError):
        return None


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _compile(schema: Any, root: Mapping[str, Any], formats: Any, depth: int) -> Check:
    if depth > 32:
        raise _Unsupported("too deep")
    if schema is True or schema == {}:
        return _plain
    if not isinstance(schema, dict):
        raise _Unsupported("schema")
    keys = set(schema) - _ANNOTATIONS
    if keys - _SUPPORTED:
        raise _Unsupported(", ".join(sorted(keys - _SUPPORTED)))
    checks: list[Check] = []

    if "$ref" in schema:
        # Only a local "#/$defs/x" alone: drafts disagree about $ref's siblings.
        ref = schema["$ref"]
        if keys != {"$ref"} or not isinstance(ref, str) or not ref.startswith("#/"):
            raise _Unsupported("$ref")
        target: Any = root
        for part in ref[2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        return _compile(target, root, formats, depth + 1)

    if "type" in schema:
        kinds = schema["type"]
        names = (kinds,) if isinstance(kinds, str) else tuple(kinds)
        for name in names:
            _is_type(None, name)  # raises for unknown names
        def types(v: Any, names: tuple[str, ...] = names) -> bool:
            return any(_is_type(v, n) for n in names)

        checks.append(types)

    if "enum" in schema:
        values = schema["enum"]
        if not all(isinstance(e, str) for e in values):
            raise _Unsupported("enum")
        allowed = frozenset(values)
        checks.append(lambda v: type(v) is str and v in allowed)
    if "const" in schema:
        const = schema["const"]
        if not isinstance(const, str):
            raise _Unsupported("const")
        checks.append(lambda v: type(v) is str and v == const)

    # Strings.
    low = schema.get("minLength")
    high = schema.get("maxLength")
    pattern = re.compile(schema["pattern"]) if "pattern" in schema else None
    if low is not None or high is not None or pattern is not None:
        for bound in (low, high):
            if bound is not None and not _number(bound):
                raise _Unsupported("length")

        def strings(v: Any) -> bool:
            if type(v) is not str:
                return True
            if low is not None and len(v) < low:
                return False
            if high is not None and len(v) > high:
                return False
            return pattern is None or pattern.search(v) is not None

        checks.append(strings)
    if "format" in schema:
        fmt = schema["format"]
        if formats is not None:
            checks.append(lambda v: bool(formats.conforms(v, fmt)))

    # Numbers.
    bounds = [(k, schema[k]) for k in ("minimum", "maximum", "exclusiveMinimum",
                                       "exclusiveMaximum") if k in schema]
    if bounds:
        if not all(_number(b) for _, b in bounds):
            raise _Unsupported("bounds")

        def numbers(v: Any) -> bool:
            if type(v) not in (int, float):
                return True
            for kind, bound in bounds:
                if kind == "minimum" and v < bound:
                    return False
                if kind == "maximum" and v > bound:
                    return False
                if kind == "exclusiveMinimum" and v <= bound:
                    return False
                if kind == "exclusiveMaximum" and v >= bound:
                    return False
            return True

        checks.append(numbers)

    # Objects.
    props = schema.get("properties", {})
    if not isinstance(props, dict):
        raise _Unsupported("properties")
    prop_checks = {name: _compile(sub, root, formats, depth + 1) for name, sub in props.items()}
    required = tuple(schema.get("required", ()))
    extra = schema.get("additionalProperties", True)
    extra_check = None if extra is True or extra is False else _compile(extra, root, formats,
                                                                       depth + 1)
    if prop_checks or required or extra is not True:

        def objects(v: Any) -> bool:
            if type(v) is not dict:
                return True
            for name in required:
                if name not in v:
                    return False
            for name, value in v.items():
                check = prop_checks.get(name)
                if check is not None:
                    if not check(value):
                        return False
                elif extra is False:
                    return False
                elif extra_check is not None:
                    if not extra_check(value):
                        return False
                elif not _plain(value):
                    return False
            return True

        checks.append(objects)

    # Arrays.
    item_check = _compile(schema["items"], root, formats, depth + 1) if "items" in schema else None
    min_items, max_items = schema.get("minItems"), schema.get("maxItems")
    if item_check is not None or min_items is not None or max_items is not None:

        def arrays(v: Any) -> bool:
            if type(v) is not list:
                return True
            if min_items is not None and len(v) < min_items:
                return False
            if max_items is not None and len(v) > max_items:
                return False
            if item_check is not None:
                return all(item_check(item) for item in v)
            return all(_plain(item) for item in v)

        checks.append(arrays)

    if not checks:
        return _plain
    if len(checks) == 1:
        only = checks[0]
        return lambda v: _plain(v) and only(v)
    every = tuple(checks)
    return lambda v: _plain(v) and all(c(v) for c in every)
