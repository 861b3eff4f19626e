"""A template's constants folded in: compiled once per template, channel and locale.

Many expressions of a pack's layouts and a template's sources are the same
for every message of one template, channel and locale: the palette
(``{{ brand.palette.primary }}``, or ``{% set p = brand.palette %}`` and
``{{ p.primary }}``), the text direction and what is derived from it
(``{% set start = "right" if dir == "rtl" else "left" %}``), ``lang``,
translations without variables (``{{ _("Pay now") }}``, ``{% trans %}Payment
reminder{% endtrans %}``). Rendered as written, each costs a sandboxed lookup
or call, an escape and a chunk of output per message. Here they are replaced
by their values in the template's syntax tree before Jinja compiles it, and
Jinja's own constant folding then writes them into the template's static
text: one compile per template, channel and locale, the same output.

What is folded, and only where nothing can change it:

* ``lang``, ``dir``, ``locale`` and ``brand.<key>`` (every key but the
  per-customer ``greeting``) -- when no template of the chain (the template,
  the layouts it extends, what they include) assigns the name anywhere (a
  child template's top-level ``set`` overrides its layout's names) and every
  template of the chain is named by a constant;
* ``_("text")`` and ``gettext("text")`` without variables, evaluated with
  the template's own catalog and autoescaping -- unless a template of the
  chain changes autoescaping in a block, or the call fails (it then fails at
  render time, as before);
* a name a template sets once, at its top, before anything else runs, to an
  expression that folds (``{% set p = brand.palette %}``), inside that
  template -- unless the chain assigns the name anywhere else, or uses
  ``self`` (a block called before the layout's top has run).

Lookups keep the sandbox's rules (they go through the environment's
``getattr``/``getitem``, and a value is folded only when it is plain data),
filters that need the render's context (``money``, ``date``) are never
folded, and a template that cannot be analysed is compiled as written. The
tests render every example template, pack, channel and locale both ways and
require the same text.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.optimizer import Optimizer
from jinja2.runtime import new_context
from jinja2.visitor import NodeTransformer
from markupsafe import Markup

from ccm.render.sandbox import _DICT_ATTRIBUTES, _SMALL

__all__ = ["Constants", "FoldedEnvironments"]

#: Names Jinja binds by itself in loops, macros and call blocks: never folded.
_IMPLICIT = frozenset({"loop", "caller", "varargs", "kwargs", "self", "super"})
#: Context names whose value is the same for every message of a locale.
_CONTEXT_NAMES = ("lang", "dir", "locale")
_GETTEXT = frozenset({"_", "gettext"})
_PLAIN = (str, int, float, bool, type(None))


class Constants:
    """What one template, channel and locale share: context names, brand, translations."""

    __slots__ = ("brand", "gettext", "names")

    def __init__(self, names: Mapping[str, Any], brand: Mapping[str, Any],
                 gettext: Mapping[str, Callable[..., Any]]) -> None:
        self.names = dict(names)
        #: ``brand`` without what varies per message (the greeting).
        self.brand = {k: v for k, v in brand.items() if k != "greeting"}
        self.gettext = {k: v for k, v in gettext.items() if k in _GETTEXT}


def _plain_data(value: Any, depth: int = 0) -> bool:
    """Strings, numbers and dicts or lists of them: what may be written into code."""
    if type(value) in _PLAIN or type(value) is Markup:
        return True
    if depth > 4:
        return False
    if type(value) is dict:
        return all(type(k) is str and _plain_data(v, depth + 1) for k, v in value.items())
    if type(value) in (list, tuple):
        return all(_plain_data(v, depth + 1) for v in value)
    return False


def _assigned(tree: nodes.Template) -> Counter[str]:
    """How often each name is bound in ``tree``: set, for, macro arguments, with, import."""
    counts: Counter[str] = Counter()
    for name in tree.find_all(nodes.Name):
        if name.ctx in ("store", "param"):
            counts[name.name] += 1
    for macro in tree.find_all((nodes.Macro,)):
        counts[macro.name] += 1
    for imported in tree.find_all((nodes.Import,)):
        counts[imported.target] += 1
    for from_import in tree.find_all((nodes.FromImport,)):
        for entry in from_import.names:
            counts[entry[1] if isinstance(entry, tuple) else entry] += 1
    return counts


class _Chain:
    """What the templates an entry template renders with bind, and whether it can be folded."""

    def __init__(self, env: jinja2.Environment, entry: str) -> None:
        self.assigned: Counter[str] = Counter()
        self.foldable = True
        self.uses_self = False
        self.changes_autoescape = False
        seen: set[str] = set()
        todo = [entry]
        loader = env.loader
        assert loader is not None
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            source, filename, _ = loader.get_source(env, name)
            tree = env.parse(source, name, filename)
            self.assigned.update(_assigned(tree))
            if any(n.name == "self" for n in tree.find_all(nodes.Name)):
                self.uses_self = True
            if any(True for _ in tree.find_all((nodes.ScopedEvalContextModifier,
                                                nodes.EvalContextModifier))):
                self.changes_autoescape = True
            for ref in tree.find_all((nodes.Extends, nodes.Include, nodes.Import,
                                      nodes.FromImport)):
                target = getattr(ref, "template", None)
                if not isinstance(target, nodes.Const) or not isinstance(target.value, str):
                    self.foldable = False  # a name known only at render time
                    continue
                if not isinstance(ref, nodes.Extends) and not getattr(ref, "with_context", False):
                    self.foldable = False  # rendered without the context: names undefined
                todo.append(target.value)


class _Folder(NodeTransformer):
    """Replaces the constants of one template's tree (see the module docstring)."""

    def __init__(self, env: jinja2.Environment, name: str | None, constants: Constants,
                 chain: _Chain) -> None:
        self.env = env
        self.name = name
        self.constants = constants
        self.chain = chain
        self.eval_ctx = nodes.EvalContext(env, name)
        self.values: dict[str, Any] = {
            n: v for n, v in constants.names.items() if not chain.assigned[n]}
        self.brand = not chain.assigned["brand"]
        self.calls = {n: f for n, f in constants.gettext.items()
                      if not chain.assigned[n] and not chain.changes_autoescape}

    def _const(self, value: Any, node: nodes.Node) -> nodes.Node:
        if not _plain_data(value):
            return node
        try:
            return nodes.Const.from_untrusted(value, lineno=node.lineno, environment=self.env)
        except nodes.Impossible:
            return node

    def visit_Template(self, node: nodes.Template) -> nodes.Node:
        body = node.body
        start = len(body)
        for index, child in enumerate(body):
            if isinstance(child, nodes.Output) and all(
                    isinstance(c, nodes.TemplateData) and not c.data.strip()
                    for c in child.nodes):
                continue
            if isinstance(child, nodes.Extends):
                continue
            if not (isinstance(child, nodes.Assign) and isinstance(child.target, nodes.Name)):
                start = index
                break
            target = child.target.name
            child.node = self.visit(child.node)
            folded = Optimizer(self.env).visit(child.node, self.eval_ctx)
            child.node = folded
            if (isinstance(folded, nodes.Const) and self.chain.assigned[target] == 1
                    and target not in _IMPLICIT and not self.chain.uses_self
                    and target not in _CONTEXT_NAMES and target != "brand"
                    and target not in _GETTEXT):
                self.values[target] = folded.value
        node.body[start:] = [self.visit(child) for child in body[start:]]
        return node

    def visit_Name(self, node: nodes.Name) -> nodes.Node:
        if node.ctx == "load" and node.name in self.values:
            return self._const(self.values[node.name], node)
        return node

    def _brand_key(self, node: nodes.Getattr | nodes.Getitem) -> str | None:
        inner = node.node
        if not (self.brand and isinstance(inner, nodes.Name) and inner.name == "brand"
                and inner.ctx == "load" and node.ctx == "load"):
            return None
        if isinstance(node, nodes.Getattr):
            key = node.attr
            if key in _DICT_ATTRIBUTES:
                return None  # brand.items is the dict's method, not a key
        else:
            if not isinstance(node.arg, nodes.Const) or type(node.arg.value) is not str:
                return None
            key = node.arg.value
        return key if key in self.constants.brand else None

    def visit_Getattr(self, node: nodes.Getattr) -> nodes.Node:
        key = self._brand_key(node)
        if key is not None:
            return self._const(self.constants.brand[key], node)
        return self.generic_visit(node)

    def visit_Getitem(self, node: nodes.Getitem) -> nodes.Node:
        key = self._brand_key(node)
        if key is not None:
            return self._const(self.constants.brand[key], node)
        return self.generic_visit(node)

    def visit_Call(self, call: nodes.Call) -> nodes.Node:
        node = self.generic_visit(call)
        if not isinstance(node, nodes.Call):
            return node
        func = node.node
        if not (isinstance(func, nodes.Name) and func.ctx == "load" and func.name in self.calls
                and len(node.args) == 1 and isinstance(node.args[0], nodes.Const)
                and type(node.args[0].value) is str and not node.kwargs
                and node.dyn_args is None and node.dyn_kwargs is None):
            return node
        gettext = self.calls[func.name]
        context = new_context(self.env, self.name, {}, {func.name: gettext}, True)
        try:
            value = context.call(gettext, node.args[0].value)
        except Exception:
            return node  # fails at render time, as written
        if type(value) not in (str, Markup) or len(value) > _SMALL:
            return node  # the sandbox checks a long result's size against the render's budget
        return self._const(value, node)


class FoldedEnvironments:
    """Per entry template and key: an overlay of ``env`` compiling with constants folded.

    ``get`` returns the environment to render ``name`` in: an overlay whose
    templates are compiled with ``constants`` folded, or ``env`` itself when
    the template's chain cannot be folded (or more than ``maxsize`` overlays
    exist). Each overlay renders one entry template only: its compiled
    layouts hold that template's constants.
    """

    def __init__(self, env: jinja2.Environment, maxsize: int = 256) -> None:
        self.env = env
        self.maxsize = maxsize
        self._envs: dict[tuple[Any, ...], jinja2.Environment] = {}
        self._lock = threading.Lock()

    def get(self, name: str, key: tuple[Any, ...],
            constants: Callable[[], Constants]) -> jinja2.Environment:
        found = self._envs.get((name, *key))
        if found is not None:
            return found
        with self._lock:
            found = self._envs.get((name, *key))
            if found is not None:
                return found
            if len(self._envs) >= self.maxsize:
                return self.env
            found = self._overlay(name, constants())
            self._envs[(name, *key)] = found
        return found

    def _overlay(self, name: str, constants: Constants) -> jinja2.Environment:
        try:
            chain = _Chain(self.env, name)
        except Exception:  # a source that does not load or parse: its render says why
            return self.env
        if not chain.foldable:
            return self.env
        overlay = self.env.overlay(cache_size=-1)
        env = self.env

        def fold(tree: nodes.Template, template: str | None) -> nodes.Template:
            # Every replacement is sound on its own: a pass stopped half way by a tree
            # it does not expect leaves a tree that renders the same.
            try:
                return _Folder(env, template, constants, chain).visit(tree)  # type: ignore[no-any-return]
            except Exception:
                return tree

        overlay._ccm_fold = fold  # type: ignore[attr-defined]
        return overlay
