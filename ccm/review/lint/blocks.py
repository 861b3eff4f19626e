"""Blocks a source fills that the layout it extends does not have.

Jinja renders a child template through its parent: a ``{% block %}`` the
parent (or its parents) never defines is dropped without a word. A template
whose ``{% block contnet %}`` is misspelt, or a pack layout whose
``{% block content %}`` was renamed, renders and passes every other check
with the message's whole text missing. This finds such blocks in the syntax
tree, before anything is rendered.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator

import jinja2
from jinja2 import nodes

from ccm.errors import CCMError
from ccm.render.environment import check_reach
from ccm.review.lint.sources import read_text

__all__ = ["unknown_blocks"]

#: Parents followed up an ``extends`` chain (a layout extending a layout ...).
_MAX_DEPTH = 8


def _outer_blocks(node: nodes.Node) -> Iterator[nodes.Block]:
    """The blocks of ``node`` not inside another block (those a child fills in its parent)."""
    for child in node.iter_child_nodes():
        if isinstance(child, nodes.Block):
            yield child
        else:
            yield from _outer_blocks(child)


def _parent(tree: nodes.Template) -> str | None:
    """The literal name a template extends, or None (no extends, or a computed name)."""
    for ref in tree.find_all(nodes.Extends):
        target = ref.template
        return target.value if isinstance(target, nodes.Const) and \
            isinstance(target.value, str) else None
    return None


def _defined(env: jinja2.Environment, parent: str, child: str) -> set[str] | None:
    """Every block name ``parent`` and its own parents define, or None when one of them
    cannot be read: missing, refused to ``child`` as a render would refuse it, or not
    compiling (each a render error or unsafe construct of its own)."""
    names: set[str] = set()
    seen: set[str] = set()
    name: str | None = parent
    requester = child
    while name is not None and name not in seen and len(seen) < _MAX_DEPTH:
        seen.add(name)
        try:
            check_reach(name, requester)
            if env.loader is None:
                return None
            source, filename, _ = env.loader.get_source(env, name)
            tree = env.parse(source, name, filename)
        except (jinja2.TemplateError, CCMError, OSError):
            return None
        names.update(block.name for block in tree.find_all(nodes.Block))
        requester, name = name, _parent(tree)
    return names


def unknown_blocks(env: jinja2.Environment, filename: str, name: str
                   ) -> list[tuple[int, str]]:
    """``(line, message)`` for each block of the source ``filename`` (loader name ``name``)
    that the layout it extends does not define; raises ``jinja2.TemplateSyntaxError``."""
    tree = env.parse(read_text(filename), name, filename)
    parent = _parent(tree)
    if parent is None:
        return []
    defined = _defined(env, parent, name)
    if defined is None:
        return []
    out = []
    for block in _outer_blocks(tree):
        if block.name in defined:
            continue
        close = difflib.get_close_matches(block.name, sorted(defined), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        out.append((block.lineno, (
            f"block {block.name!r} is not in {parent!r}, the layout this source extends, so "
            f"what it holds is never shown ({hint}the layout's blocks: "
            f"{', '.join(sorted(defined)) or '(none)'}): rename it here, or add the block "
            "to the layout if the layout lost it")))
    return out
