"""A template's constants folded in: compiled once per template, channel and locale.

Many expressions of a pack's layouts and a template's sources are the same
for every message of one template, channel and locale: the palette
(``{% set p = brand.palette %}`` and ``{{ p.primary }}``), the text direction
and what is derived from it (``{% set start = "right" if dir == "rtl" else
"left" %}``), ``lang``, translations without variables (``{{ _("Pay now")
}}``, ``{% trans %}Payment reminder{% endtrans %}``). Rendered as written,
each costs a sandboxed lookup or call, an escape and a chunk of output per
message. Here they are replaced by their values in the template's syntax tree
before Jinja compiles it: printed directly (``{{ p.primary }}``), a value
becomes static text; anywhere else (a filter's input, a ``~`` operand, a
test) it becomes a constant that is still computed with at render time, so
filters, concatenation, their budgets and the sandbox's checks run exactly as
before. Only lookups are done ahead of time, never other work.

What is folded, and only where nothing can change it:

* ``lang``, ``dir``, ``locale`` and ``brand.<key>`` (every key but the
  per-customer ``greeting``) -- unless a template of the chain (the
  template, the layouts it extends, what they include) assigns the name
  anywhere: a child template's top-level ``set`` overrides its layout's
  names, as do loop variables, macro arguments and imports;
* ``_("text")`` and ``gettext("text")`` without variables, evaluated with
  the template's catalog and the autoescaping of the render context the
  template runs in (a layout runs in the context of every template that
  extends it, an included or imported template in its own; several that
  disagree: not folded) -- unless the call fails (it then fails at render
  time, as before) or its result is long (the sandbox checks long results
  against the render's budget);
* a name a template sets once, at its top, before anything else runs, to a
  lookup of those values or a pure expression of them (``{% set p =
  brand.palette %}``; comparisons, conditions, ``and``/``or``/``not``),
  inside that template -- unless the chain assigns the name anywhere else,
  uses ``self``, or a template extending it can run a block from its own
  top-level code (a block inside a top-level ``set``, ``for``, ``filter``
  ...), before this template's top has run;
* only values that are strings, numbers, booleans or none are written in
  (and only those Jinja can write as code: no ``inf``, no huge integers): a
  name bound to a dict or a list stays a name (``x is sameas brand.palette``
  keeps its answer), and only lookups through it are folded.

A chain whose layout is chosen at render time, that imports or includes
without context, or that changes autoescaping in a block is compiled as
written. Lookups go through the environment's own (sandboxed) ``getattr``
and ``getitem``. The tests render every example template, pack, channel,
locale and sample both ways, and hostile sources for each rule above, and
require the same text, blocks and errors.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.runtime import new_context
from markupsafe import Markup

from ccm.render.sandbox import _DICT_ATTRIBUTES, _SMALL

__all__ = ["Constants", "FoldedEnvironments"]

#: Names Jinja binds by itself in loops, macros and call blocks: never folded.
_IMPLICIT = frozenset({"loop", "caller", "varargs", "kwargs", "self", "super"})
#: Context names whose value is the same for every message of a locale.
_CONTEXT_NAMES = ("lang", "dir", "locale")
_GETTEXT = frozenset({"_", "gettext"})
#: Values written into the compiled code.
_SCALARS = frozenset({str, int, float, bool, type(None), Markup})
#: Expressions evaluated ahead of time once their operands are known: pure and cheap.
_PURE = (nodes.CondExpr, nodes.Compare, nodes.Not, nodes.And, nodes.Or)


def _writable(value: Any) -> bool:
    """A scalar Jinja can write into code as it is (not ``inf``, not a 4,300-digit int)."""
    kind = type(value)
    if kind is float:
        return math.isfinite(value)
    if kind is int:
        return bool(value.bit_length() < 4096)
    return kind in _SCALARS


class Constants:
    """What one template, channel and locale share: context names, brand, translations."""

    __slots__ = ("brand", "gettext", "names")

    def __init__(self, names: Mapping[str, Any], brand: Mapping[str, Any],
                 gettext: Mapping[str, Callable[..., Any]]) -> None:
        self.names = dict(names)
        #: ``brand`` without what varies per message (the greeting).
        self.brand = {k: v for k, v in brand.items() if k != "greeting"}
        self.gettext = {k: v for k, v in gettext.items() if k in _GETTEXT}


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


def _both_names(name: str) -> tuple[str, str]:
    """``name`` and the name Jinja's prefix loader compiles it under.

    ``templates/x/email.mjml.j2`` is compiled as ``x/email.mjml.j2``; a rule keyed
    by both forms holds for either (a clash only makes the rules stricter).
    """
    return name, name.split("/", 1)[1] if "/" in name else name


def _runs_blocks_early(tree: nodes.Template) -> bool:
    """Whether top-level code other than a block definition holds a block.

    In a template that extends another, such a block (inside a top-level
    ``set`` block, ``for``, ``filter``, ``if`` ...) runs while this template's
    top-level code runs: before the templates it extends have run theirs.
    """
    return any(not isinstance(node, nodes.Block) and any(True for _ in node.find_all(nodes.Block))
               for node in tree.body)


class _Chain:
    """What the templates an entry template renders with bind, and whether it can be folded."""

    def __init__(self, env: jinja2.Environment, entry: str) -> None:
        self.entry = entry
        self.assigned: Counter[str] = Counter()
        self.foldable = True
        self.uses_self = False
        #: Templates below which (extending them, directly or not) a block can run early.
        self.early: set[str] = set()
        parents: dict[str, str] = {}
        early_here: dict[str, bool] = {}
        #: (template, extends?, template it names): every extends, include and import.
        edges: list[tuple[str, bool, str]] = []
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
                self.foldable = False  # autoescaping that may change at render time
            early_here[name] = _runs_blocks_early(tree)
            extends = list(tree.find_all(nodes.Extends))
            if len(extends) > 1 or (extends and extends[0] not in tree.body):
                self.foldable = False  # which layout depends on the data
            for ref in tree.find_all((nodes.Extends, nodes.Include, nodes.Import,
                                      nodes.FromImport)):
                target = getattr(ref, "template", None)
                if not isinstance(target, nodes.Const) or not isinstance(target.value, str):
                    self.foldable = False  # a name known only at render time
                    continue
                if isinstance(ref, nodes.Extends):
                    parents[name] = target.value
                elif not getattr(ref, "with_context", False):
                    self.foldable = False  # rendered without the context: names undefined
                edges.append((name, isinstance(ref, nodes.Extends), target.value))
                todo.append(target.value)
        # Whose render context each template runs in (its evaluation context, hence the
        # autoescaping translations see): a layout runs in the context of every template
        # that extends it, an included or imported template in a new one of its own.
        # Repeated until nothing changes: a template may gain callers read after it.
        owners: dict[str, set[str]] = {entry: {entry}}
        changed = True
        while changed:
            changed = False
            for name, extends_it, target in edges:
                add = owners.get(name, set()) if extends_it else {target}
                known = owners.setdefault(target, set())
                if not add <= known:
                    known |= add
                    changed = True
        # Walk up from every template that extends another (the entry, and included
        # templates that extend): a template is exposed when one below it runs blocks early.
        for start in parents:
            below_early, name, steps = False, start, 0
            while name in parents and steps < 64:
                below_early = below_early or early_here.get(name, False)
                name, steps = parents[name], steps + 1
                if below_early:
                    self.early.update(_both_names(name))
        #: Per template, the autoescaping of the context it runs in; None: not one answer.
        self.autoescape: dict[str, bool | None] = {}
        for name, whose in owners.items():
            answers = {bool(nodes.EvalContext(env, owner).autoescape) for owner in whose}
            found = answers.pop() if len(answers) == 1 else None  # none or several: unknown
            for key in _both_names(name):
                if key in self.autoescape and self.autoescape[key] != found:
                    found = None
                self.autoescape[key] = found


class _Folder:
    """Replaces the constants of one template's tree (see the module docstring)."""

    def __init__(self, env: jinja2.Environment, name: str | None, constants: Constants,
                 chain: _Chain, store: Callable[[Any], str]) -> None:
        self.env = env
        self.store = store
        self.name = name
        self.constants = constants
        self.chain = chain
        self.eval_ctx = nodes.EvalContext(env, name)
        #: The autoescaping of the render context this template runs in (translations
        #: see it, not this file's own); None: unknown, translations are not folded.
        self.context_autoescape = chain.autoescape.get(name or "")
        self.values: dict[str, Any] = {
            n: v for n, v in constants.names.items() if not chain.assigned[n]}
        self.brand = not chain.assigned["brand"]
        self.calls = {n: f for n, f in constants.gettext.items()
                      if not chain.assigned[n] and self.context_autoescape is not None}
        self.locals = not chain.uses_self and name not in chain.early

    # -- what a node's value is, when it can be known now

    def _value(self, node: nodes.Node) -> tuple[bool, Any]:
        """``(True, value)`` for a lookup of constants or a pure expression of them."""
        if isinstance(node, nodes.Const):
            return True, node.value
        if isinstance(node, nodes.Name):
            if node.ctx == "load" and node.name in self.values:
                return True, self.values[node.name]
            return False, None
        if isinstance(node, nodes.Getattr | nodes.Getitem):
            return self._lookup(node)
        if isinstance(node, nodes.Call):
            return self._gettext(node)
        if isinstance(node, _PURE):
            return self._pure(node)
        return False, None

    def _lookup(self, node: nodes.Getattr | nodes.Getitem) -> tuple[bool, Any]:
        if node.ctx != "load":
            return False, None
        if isinstance(node, nodes.Getattr):
            key: Any = node.attr
        elif isinstance(node.arg, nodes.Const) and type(node.arg.value) in (str, int):
            key = node.arg.value
        else:
            return False, None
        inner = node.node
        if isinstance(inner, nodes.Name) and inner.name == "brand" and inner.ctx == "load":
            if not self.brand or key not in self.constants.brand or (
                    isinstance(node, nodes.Getattr) and key in _DICT_ATTRIBUTES):
                return False, None  # the greeting, a missing key, or a dict method
            return True, self.constants.brand[key]
        known, base = self._value(inner)
        if not known:
            return False, None
        try:
            if isinstance(node, nodes.Getattr):
                value = self.env.getattr(base, key)
            else:
                value = self.env.getitem(base, key)
        except Exception:  # fails at render time, as written
            return False, None
        if isinstance(value, jinja2.Undefined) or callable(value):
            return False, None
        return True, value

    def _gettext(self, node: nodes.Call) -> tuple[bool, Any]:
        func = node.node
        if not (isinstance(func, nodes.Name) and func.ctx == "load" and func.name in self.calls
                and len(node.args) == 1 and isinstance(node.args[0], nodes.Const)
                and type(node.args[0].value) is str and not node.kwargs
                and node.dyn_args is None and node.dyn_kwargs is None):
            return False, None
        gettext = self.calls[func.name]
        context = new_context(self.env, self.name, {}, {func.name: gettext}, True)
        context.eval_ctx.autoescape = bool(self.context_autoescape)
        try:
            value = context.call(gettext, node.args[0].value)
        except Exception:
            return False, None  # fails at render time, as written
        if type(value) not in (str, Markup) or len(value) > _SMALL:
            return False, None  # the sandbox checks a long result against the render's budget
        return True, value

    def _pure(self, node: nodes.Expr) -> tuple[bool, Any]:
        operands = list(node.iter_child_nodes())
        if isinstance(node, nodes.CondExpr) and node.expr2 is None:
            return False, None  # an undefined "else": left to the render
        consts: dict[int, nodes.Const] = {}
        for operand in operands:
            if isinstance(operand, nodes.Operand):
                known, value = self._value(operand.expr)
            else:
                known, value = self._value(operand)
            if not known or not _writable(value):
                return False, None
            consts[id(operand)] = nodes.Const(value)
        try:
            if isinstance(node, nodes.Compare):
                rebuilt: nodes.Expr = nodes.Compare(consts[id(node.expr)], [
                    nodes.Operand(op.op, consts[id(op)]) for op in node.ops])
            elif isinstance(node, nodes.CondExpr):
                assert node.expr2 is not None
                rebuilt = nodes.CondExpr(consts[id(node.test)], consts[id(node.expr1)],
                                         consts[id(node.expr2)])
            elif isinstance(node, nodes.Not):
                rebuilt = nodes.Not(consts[id(node.node)])
            else:
                assert isinstance(node, nodes.And | nodes.Or)
                rebuilt = type(node)(consts[id(node.left)], consts[id(node.right)])
            rebuilt.set_environment(self.env)
            return True, rebuilt.as_const(self.eval_ctx)
        except Exception:
            return False, None

    # -- rewriting

    def _replace(self, node: nodes.Node, printed: bool) -> nodes.Node:
        """``node`` as a folded value when it has a plain one, else with its parts folded."""
        if isinstance(node, nodes.Expr) and not isinstance(
                node, nodes.Const | nodes.EnvironmentAttribute):
            known, value = self._value(node)
            if known and _writable(value):
                if printed:
                    return nodes.Const(value, lineno=node.lineno)
                # Used by an expression that runs at render time: an attribute of the
                # environment, which (unlike a Const) lets nothing around it be evaluated
                # at compile time -- filters, ~ and tests keep the sandbox's checks.
                return nodes.EnvironmentAttribute(self.store(value), lineno=node.lineno)
        return self.generic_visit(node)

    def generic_visit(self, node: nodes.Node) -> nodes.Node:
        for field, old in node.iter_fields():
            if isinstance(old, list):
                new_values: list[Any] = []
                for value in old:
                    if isinstance(value, nodes.Node):
                        value = self._visit(value)
                    new_values.append(value)
                old[:] = new_values
            elif isinstance(old, nodes.Node):
                setattr(node, field, self._visit(old))
        return node

    def _visit(self, node: nodes.Node) -> nodes.Node:
        method = getattr(self, f"visit_{type(node).__name__}", None)
        if method is not None:
            return method(node)  # type: ignore[no-any-return]
        return self._replace(node, printed=False)

    def visit_Output(self, node: nodes.Output) -> nodes.Node:
        children: list[nodes.Expr] = []
        for child in node.nodes:
            if isinstance(child, nodes.MarkSafeIfAutoescape) and \
                    self.context_autoescape is not None:
                known, value = self._value(child.expr)
                if known and type(value) in (str, Markup):
                    # At render time: Markup(value) when the render autoescapes.
                    children.append(nodes.Const(
                        Markup(value) if self.context_autoescape else value, lineno=child.lineno))
                    continue
            children.append(self._replace(child, printed=True))  # type: ignore[arg-type]
        node.nodes = children
        return node

    def visit_Template(self, node: nodes.Template) -> nodes.Template:
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
            # The assignment stays as written (the name keeps its value and identity for
            # other templates); its value is remembered for this template's lookups.
            target = child.target.name
            known, value = self._value(child.node)
            if (known and self.locals and self.chain.assigned[target] == 1
                    and target not in _IMPLICIT and target not in _CONTEXT_NAMES
                    and target != "brand" and target not in _GETTEXT):
                self.values[target] = value
        node.body[start:] = [self._visit(child) for child in body[start:]]
        return node


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
        count = iter(range(1 << 62))

        def store(value: Any) -> str:
            """Keep ``value`` on the overlay: the compiled code reads ``environment.<name>``."""
            name = f"ccm_folded_{next(count)}"
            setattr(overlay, name, value)
            return name

        def fold(tree: nodes.Template, template: str | None) -> nodes.Template:
            # Every replacement is sound on its own: a pass stopped half way by a tree
            # it does not expect leaves a tree that renders the same.
            try:
                return _Folder(env, template, constants, chain, store).visit_Template(tree)
            except Exception:
                return tree

        overlay._ccm_fold = fold  # type: ignore[attr-defined]
        return overlay
