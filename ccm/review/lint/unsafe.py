"""Unsafe template constructs, found in the Jinja syntax tree (and MJML includes).

Flagged: ``|safe`` on anything but a string literal (a literal is the
author's own markup; a variable may carry customer data), ``|attr``,
``{% autoescape false %}``, ``Markup(``, names starting with ``_``
(sandbox probing), include/extends/import of a computed name or of a
source the renderer refuses (another template's, a hidden one), and
``<mj-include>`` of a path outside the pack and template folders or hidden.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import jinja2
from jinja2 import nodes

from ccm._files import unlisted_name
from ccm.errors import UnsafeFileError
from ccm.render.environment import check_reach
from ccm.review.lint.sources import line_at, read_text, searchable

__all__ = ["mj_includes", "unsafe_constructs"]

_MJ_INCLUDE = re.compile(r"<mj-include\b[^>]*?\bpath\s*=\s*(\"[^\"]*\"|'[^']*')", re.IGNORECASE)
_MARKUP_CALL = re.compile(r"\bMarkup\s*\(")


def unsafe_constructs(env: jinja2.Environment, filename: str, name: str
                      ) -> list[tuple[int, str]]:
    """``(line, message)`` for every unsafe construct; raises ``jinja2.TemplateSyntaxError``."""
    tree = env.parse(read_text(filename), name, filename)
    out: list[tuple[int, str]] = []
    for node in tree.find_all(nodes.Filter):
        if node.name == "safe" and not isinstance(node.node, nodes.Const):
            out.append((node.lineno, "|safe marks a value as markup: it is no longer escaped; "
                                     "write the markup in the template instead"))
        elif node.name == "attr":
            out.append((node.lineno, "|attr looks up attributes by computed name; "
                                     "use plain attribute access"))
    for modifier in tree.find_all((nodes.EvalContextModifier, nodes.ScopedEvalContextModifier)):
        for option in modifier.options:
            if option.key == "autoescape" and not (
                isinstance(option.value, nodes.Const) and option.value.value is True
            ):
                out.append((modifier.lineno, "autoescape is switched off: customer data would "
                                             "be written unescaped"))
    for ref in tree.find_all((nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)):
        target = getattr(ref, "template", None)
        kind = type(ref).__name__.lower()
        if not isinstance(target, nodes.Const):
            out.append((ref.lineno, f"{kind} of a computed template name; name the template "
                                    "literally (e.g. \"pack/email.mjml.j2\")"))
        elif isinstance(target.value, str):
            problem = _reach_problem(target.value, name)
            if problem:
                out.append((ref.lineno, f"{kind} of {target.value!r}: {problem}"))
    for call in tree.find_all(nodes.Getattr):
        if call.attr.startswith("_"):
            out.append((call.lineno, f"access to the private attribute {call.attr!r}"))
    for item in tree.find_all(nodes.Getitem):
        arg = item.arg
        if isinstance(arg, nodes.Const) and isinstance(arg.value, str) and \
                arg.value.startswith("_"):
            out.append((item.lineno, f"access to the private attribute {arg.value!r}"))
    visible = searchable(filename)
    for m in _MARKUP_CALL.finditer(visible):
        out.append((line_at(visible, m.start()), "Markup( builds unescaped markup"))
    return sorted(set(out))


def _reach_problem(target: str, name: str) -> str | None:
    """Why the renderer refuses ``name`` loading ``target`` (None: it does not)."""
    if unlisted_name(target):
        return "a hidden file, which the renderer does not read (approval does not cover it)"
    try:
        check_reach(target, name)
    except UnsafeFileError as exc:
        return exc.reason
    return None


def mj_includes(filename: str, roots: Sequence[Path]) -> list[tuple[int, str]]:
    """``(line, message)`` for each ``<mj-include>`` whose path leaves ``roots``."""
    text = searchable(filename)
    out = []
    for m in _MJ_INCLUDE.finditer(text):
        path = m.group(1)[1:-1].strip()
        problem = None
        if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", path) or path.startswith("//"):
            problem = "is a URL"
        elif "\\" in path or PurePosixPath(path).is_absolute():
            problem = "is absolute"
        elif ".." in PurePosixPath(path).parts:
            problem = "climbs out with '..'"
        elif "{{" in path or "{%" in path:
            problem = "is computed"
        elif unlisted_name(path):
            problem = "is hidden (approval does not cover it; the renderer refuses it)"
        else:
            inside = [(root / path).resolve().is_relative_to(root.resolve()) for root in roots]
            if not any(inside):
                problem = "resolves outside the pack"
        if problem:
            out.append((line_at(text, m.start()),
                        f"mj-include path {path!r} {problem}: include files from the pack "
                        "or the template folder by relative path"))
    return out
