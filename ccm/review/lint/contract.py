"""The data contract, checked statically: the template's Jinja AST against its request schema.

Every ``data.…`` path a source reads (``data.account.name``,
``data["amount"]``, ``data.get("details")``, ``tx.amount`` inside
``{% for tx in data.transactions %}``) must be declared in the contract;
every required top-level field must be read by some source of the template
or be marked ``"x-unused": "why"`` in the schema. Numbers and dates printed
as they are (``{{ data.amount }}``) skip the locale filters.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import Environment, nodes

__all__ = ["Use", "resolve", "unformatted", "uses"]

#: Filters that format for the locale.
LOCALE_FILTERS = frozenset({"money", "number", "percent", "date", "datetime", "time",
                            "decimal", "currency", "format_date", "iban"})


@dataclass(frozen=True)
class Use:
    """A data path a source reads (``("account", "name")``; ``"[]"`` is an array item)."""

    path: tuple[str, ...]
    line: int


def _path(node: nodes.Node, aliases: Mapping[str, tuple[str, ...]]) -> tuple[str, ...] | None:
    """The data path ``node`` reads, or None when it is not one."""
    if isinstance(node, nodes.Name):
        if node.name == "data":
            return ()
        return aliases.get(node.name)
    if isinstance(node, nodes.Getattr):
        base = _path(node.node, aliases)
        if base is None:
            return None
        return base if node.attr in ("get", "items", "keys", "values") else (*base, node.attr)
    if isinstance(node, nodes.Getitem):
        base = _path(node.node, aliases)
        if base is None:
            return None
        if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            return (*base, node.arg.value)
        return (*base, "[]")
    if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Getattr) and \
            node.node.attr == "get" and node.args and isinstance(node.args[0], nodes.Const):
        base = _path(node.node.node, aliases)
        if base is not None and isinstance(node.args[0].value, str):
            return (*base, node.args[0].value)
    if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Getattr) and \
            node.node.attr in ("items", "values", "keys"):
        return _path(node.node.node, aliases)
    if isinstance(node, nodes.Filter) and node.node is not None and \
            node.name in ("sort", "list", "reverse", "batch", "selectattr", "rejectattr"):
        return _path(node.node, aliases)
    return None


def _aliases(tree: nodes.Template) -> dict[str, tuple[str, ...]]:
    """Loop variables and ``set`` names bound to data paths (arrays give their items)."""
    aliases: dict[str, tuple[str, ...]] = {}
    for _ in range(3):  # nested loops: a few passes settle the chain
        for loop in tree.find_all(nodes.For):
            base = _path(loop.iter, aliases)
            if base is None:
                continue
            target = loop.target
            if isinstance(target, nodes.Name):
                aliases[target.name] = (*base, "[]")
            elif isinstance(target, nodes.Tuple) and len(target.items) == 2:
                second = target.items[1]
                if isinstance(second, nodes.Name):
                    aliases[second.name] = (*base, "{}")
        for assign in tree.find_all(nodes.Assign):
            if isinstance(assign.target, nodes.Name):
                base = _path(assign.node, aliases)
                if base is not None:
                    aliases[assign.target.name] = base
    return aliases


def uses(env: Environment, source: str) -> list[Use]:
    """Every data path read by ``source`` (the longest path of each expression)."""
    tree = env.parse(source)
    aliases = _aliases(tree)
    out: list[Use] = []
    inner: set[int] = set()
    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Call)):
        if id(node) in inner:
            continue
        path = _path(node, aliases)
        if path is None:
            continue
        for child in node.find_all((nodes.Getattr, nodes.Getitem, nodes.Call)):
            inner.add(id(child))
        if path:
            out.append(Use(path, node.lineno))
    return out


def resolve(schema: Mapping[str, Any], path: tuple[str, ...], root: Mapping[str, Any]
            ) -> Mapping[str, Any] | None:
    """The sub-schema of ``path``; None when the schema does not declare it."""
    current: Mapping[str, Any] = schema
    for key in path:
        current = _deref(current, root)
        if key == "{}":
            extra = current.get("additionalProperties")
            current = extra if isinstance(extra, Mapping) else {}
            continue
        if key == "[]":
            items = current.get("items")
            if isinstance(items, Mapping):
                current = items
                continue
            if current.get("type") == "array" or "items" in current:
                return {}
            return None if current.get("type") not in (None, "object") else {}
        props = current.get("properties")
        if isinstance(props, Mapping) and key in props:
            current = props[key]
            continue
        extra = current.get("additionalProperties")
        if isinstance(extra, Mapping):
            current = extra
            continue
        if props is None and extra is not False and current.get("type") in (None, "object") \
                and "$ref" not in current:
            return {}  # an open object: anything may be in it
        return None
    return _deref(current, root)


def _deref(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, Mapping) else {}
        return target if isinstance(target, Mapping) else {}
    return schema


def _kind(schema: Mapping[str, Any] | None) -> str | None:
    if not schema:
        return None
    kind = schema.get("type")
    if kind == "number":  # integers are counts (plural forms), fine as they are
        return "number"
    if kind == "string" and schema.get("format") in ("date", "date-time"):
        return "date"
    return None


def _printed(node: nodes.Node) -> Iterator[nodes.Node]:
    """Expressions printed as they are: an Output's children, and trans/_() arguments."""
    for out in node.find_all(nodes.Output):
        for child in out.nodes:
            if isinstance(child, nodes.TemplateData):
                continue
            yield child
            for pair in child.find_all(nodes.Pair):
                yield pair.value
            for keyword in child.find_all(nodes.Keyword):
                yield keyword.value


def unformatted(env: Environment, source: str, schema: Mapping[str, Any]
                ) -> list[tuple[int, str, str]]:
    """``(line, path, kind)`` of numbers and dates printed without a locale filter."""
    tree = env.parse(source)
    aliases = _aliases(tree)
    found = []
    for expr in _printed(tree):
        if isinstance(expr, nodes.MarkSafeIfAutoescape | nodes.MarkSafe):
            expr = expr.expr
        if isinstance(expr, nodes.Filter) and expr.name in LOCALE_FILTERS:
            continue
        # A path printed as it is, or through a filter that does not format for the locale
        # ("%.2f"|format(data.amount), data.amount|round).
        candidates = [expr]
        if isinstance(expr, nodes.Filter):
            candidates = [n for n in (expr.node, *expr.args) if n is not None]
        for candidate in candidates:
            path = _path(candidate, aliases)
            if not path:
                continue
            kind = _kind(resolve(schema, path, schema))
            if kind is not None:
                found.append((expr.lineno, ".".join(("data", *path)).replace(".[]", "[]"),
                              kind))
    return found
