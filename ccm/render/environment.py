"""The sandboxed Jinja environment: one per brand pack, shared by every template.

Templates are semi-trusted: they run in an
:class:`~jinja2.sandbox.ImmutableSandboxedEnvironment` with
:class:`~jinja2.StrictUndefined` (with the default ``Undefined`` a blocked
attribute would silently render as empty). Customer data is untrusted: HTML
and MJML sources are autoescaped (``select_autoescape`` does not cover
``.mjml`` on its own), and data is only ever a value, never template source.
"""

from __future__ import annotations

import decimal
import functools
import os
import re
from collections.abc import Callable, Iterator, Mapping
from gettext import NullTranslations
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.loaders import split_template_path
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import Markup

from ccm._files import read_contained_text
from ccm.errors import (
    BudgetError,
    CCMError,
    ConfigError,
    RenderError,
    SandboxError,
    TemplateError,
    TemplateSyntaxError,
    UnsafeFileError,
)
from ccm.render.budget import Budget, Meter, metered
from ccm.render.i18n import FILTERS
from ccm.render.sandbox import (
    CCMSandbox,
    check_named_format,
    check_printable,
    refuse_repr_conversion,
    trusted_call,
)

__all__ = ["ContainedLoader", "RenderedSource", "check_reach", "compile_source",
           "create_environment", "render_source"]

#: Values printed as they are (no need to look closer).
_PLAIN = frozenset({str, int, float, bool, type(None), Markup})

#: Largest template source read, in bytes.
MAX_SOURCE_BYTES = 2 * 1024 * 1024

#: Sources whose output is markup and must be autoescaped.
_ESCAPED_SUFFIXES = (".html.j2", ".mjml.j2", ".html", ".mjml", ".xml.j2", ".svg.j2")


def _autoescape(name: str | None) -> bool:
    return bool(name) and name.endswith(_ESCAPED_SUFFIXES)  # type: ignore[union-attr]


class ContainedLoader(jinja2.BaseLoader):
    """Jinja sources from ``folder``, each read with :func:`ccm._files.read_contained_text`.

    A source must resolve inside ``root`` (the pack for its layouts, the
    templates folder for templates): ``include``, ``import`` and
    ``extends`` of a symlink out of it, a FIFO or a device raise
    :class:`~ccm.errors.UnsafeFileError` naming the file, on every channel.
    So does a hidden source (``pack/.snip.j2``): the digests approval signs
    skip hidden files, so none may shape a message.
    """

    def __init__(self, folder: str | os.PathLike[str], root: str | os.PathLike[str],
                 subroots: Mapping[str, Path] | None = None) -> None:
        self.folder = Path(folder)
        self.root = Path(root)
        #: Loaded template folders by id: a template folder that is itself a
        #: symlink (``ccm lint`` builds such stand-ins) keeps its files in its own root.
        self.subroots = dict(subroots or {})

    def get_source(self, environment: jinja2.Environment,
                   template: str) -> tuple[str, str, Callable[[], bool]]:
        pieces = split_template_path(template)
        path = self.folder.joinpath(*pieces)
        root = self.root
        subroot = self.subroots.get(pieces[0]) if len(pieces) > 1 else None
        if subroot is not None and not Path(os.path.realpath(subroot)).is_relative_to(
                os.path.realpath(root)):
            root = subroot
        try:
            source = read_contained_text(path, root, max_bytes=MAX_SOURCE_BYTES, listed=True)
            mtime = path.stat().st_mtime_ns
        except FileNotFoundError:
            raise jinja2.TemplateNotFound(template) from None
        except NotADirectoryError:
            raise jinja2.TemplateNotFound(template) from None

        def uptodate() -> bool:
            try:
                return path.stat().st_mtime_ns == mtime
            except OSError:
                return False

        return source, str(path), uptodate


def _pieces(name: str) -> list[str] | None:
    try:
        return split_template_path(name)
    except jinja2.TemplateNotFound:  # ".." in it: the loader says "not found"
        return None


def check_reach(name: str, parent: str | None) -> None:
    """Refuse a source ``parent`` may not load: what approval's digest does not cover.

    A message's digest (``Engine.sources_sha256``), which approval signs,
    covers the pack and the template's own folder. So a template
    (``templates/<id>/…``) may ``include``, ``import`` or ``extend`` the
    pack's layouts (``pack/…``) and its own files, and a pack layout only the
    pack's: another template's files, or a shared folder in the templates
    folder, would change a message unseen by its approval. Raises
    :class:`~ccm.errors.UnsafeFileError` naming both.
    """
    reason = _reach(name, parent) if parent is not None else None
    if reason is not None:
        root = parent.split("/", 1)[0] if parent else ""
        raise UnsafeFileError(f"{name}: refused: {reason}", path=name, reason=reason,
                              root=root)


@functools.lru_cache(maxsize=4096)
def _reach(name: str, parent: str) -> str | None:
    """Why ``parent`` may not load ``name`` (:func:`check_reach`), or None; remembered:
    every render of a template that extends a layout asks again."""
    source, target = _pieces(parent), _pieces(name)
    if not source or target is None or len(source) < 2:
        return None
    if source[0] == "templates":
        allowed = target[:1] == ["pack"] or (len(target) > 2 and target[:2] == source[:2])
        where = f"its own folder (templates/{source[1]}/) and the pack's layouts (pack/…)"
    elif source[0] == "pack":
        allowed = target[:1] == ["pack"]
        where = "the pack's layouts (pack/…)"
    else:
        return None
    if allowed:
        return None
    return (f"{parent} may load only {where}, the files its approval covers, not "
            f"{name}; move that file there")


class _FullNames(jinja2.PrefixLoader):
    """A prefix loader that compiles each source under its full name (``templates/x/…``).

    Jinja's own compiles it under the name without its prefix (``x/…``), which
    would leave :func:`check_reach` unable to tell a template from a layout.
    """

    load = jinja2.BaseLoader.load


class _ReachChecked(CCMSandbox):
    """The sandbox with :func:`check_reach` on every ``include``, ``import`` and ``extends``."""

    def join_path(self, template: str, parent: str) -> str:
        # Jinja passes every load from inside a template through here, with the
        # loading template's name; cached templates included.
        check_reach(template, parent)
        return super().join_path(template, parent)


def create_environment(pack_layouts: Path, templates_dir: Path,
                       pack_root: Path | None = None,
                       template_roots: Mapping[str, Path] | None = None,
                       ) -> ImmutableSandboxedEnvironment:
    """Build the environment for one pack.

    ``pack/…`` names the pack's layouts (contained in ``pack_root``, by
    default the layouts' parent), ``templates/…`` the templates (contained
    in the templates folder; a loaded template whose folder is a symlink to
    elsewhere, listed in ``template_roots`` by id, in its own folder). What a
    source may load from another is :func:`check_reach`.
    """
    loader = _FullNames(
        {
            "pack": ContainedLoader(pack_layouts, pack_root or Path(pack_layouts).parent),
            "templates": ContainedLoader(templates_dir, templates_dir, template_roots),
        }
    )
    env = _ReachChecked(
        loader=loader,
        autoescape=_autoescape,
        undefined=jinja2.StrictUndefined,
        extensions=["jinja2.ext.i18n"],
        keep_trailing_newline=False,
        trim_blocks=True,
        lstrip_blocks=True,
        # The engine renders what it loaded (and recorded digests of): edits on
        # disk need a new Engine, as the preview makes after every save.
        auto_reload=False,
        cache_size=-1,
    )
    env.filters.update(FILTERS)
    env.wrap_filters()
    env.install_null_translations(newstyle=True)  # type: ignore[attr-defined]
    env.globals.update(gettext_functions(NullTranslations()))
    return env


def gettext_functions(translations: Any) -> dict[str, Callable[..., Any]]:
    """Per-render ``gettext``/``ngettext``/``_`` bound to one catalog.

    Newstyle and autoescape-aware: what :func:`jinja2.ext._make_new_gettext` and
    ``_make_new_ngettext`` return, with ccm's checks before the text is built (no repr
    conversion, no placeholders that repeat a value over the value budget). Each looks
    its message up once (the check and the text share it) and calls the catalog
    directly; the sandbox calls them directly too (:func:`~ccm.render.sandbox.trusted_call`).
    """
    lookup = translations.gettext
    nlookup = translations.ngettext

    @trusted_call
    @jinja2.pass_context
    def checked_gettext(__context: Any, __string: str, **variables: Any) -> str:
        # ``_("%(x)s", x=lipsum)`` and ``{% trans x=range %}`` must not print a repr.
        if type(__string) is not str:
            check_printable(__string, deep=True)
        if variables:
            refuse_repr_conversion(str(__string))
            for value in variables.values():
                if type(value) not in _PLAIN:
                    check_printable(value, deep=True)
        translated = lookup(__string)
        if variables or (isinstance(translated, str) and "%" in translated):
            # Formatted with % even without variables: ``_('%999999999s')`` (or request
            # data translated) would build a gigabyte before its size was checked.
            check_named_format(str(translated), variables)
        if __context.eval_ctx.autoescape:
            translated = Markup(translated)
        # Always a format string, even without variables (as Jinja's newstyle gettext).
        return translated % variables  # type: ignore[no-any-return]

    @trusted_call
    @jinja2.pass_context
    def checked_ngettext(__context: Any, __singular: str, __plural: str, __num: int,
                         **variables: Any) -> str:
        for value in (__singular, __plural, __num, *variables.values()):
            if type(value) not in _PLAIN:  # (check_printable passes these at once)
                check_printable(value, deep=True)
        refuse_repr_conversion(str(__singular))
        refuse_repr_conversion(str(__plural))
        variables.setdefault("num", __num)
        translated = nlookup(__singular, __plural, __num)
        check_named_format(str(translated), variables)
        if __context.eval_ctx.autoescape:
            translated = Markup(translated)
        return translated % variables  # type: ignore[no-any-return]

    return {"gettext": checked_gettext, "ngettext": checked_ngettext, "_": checked_gettext}


class RenderedSource:
    """The text of a rendered source plus the rendered values of selected blocks."""

    def __init__(self, text: str, blocks: dict[str, str]) -> None:
        self.text = text
        self.blocks = blocks


def _where(exc: BaseException, name: str) -> tuple[str, int | None]:
    """Find the template file and line of an exception raised while rendering."""
    tb = exc.__traceback__
    filename, line = name, None
    while tb is not None:
        code = tb.tb_frame.f_code
        tpl = tb.tb_frame.f_globals.get("__jinja_template__")
        if tpl is not None and code.co_filename == tpl.filename:
            filename = tpl.filename or tpl.name
            line = tpl.get_corresponding_lineno(tb.tb_lineno)
        tb = tb.tb_next
    return filename, line


def _consume(chunks: Iterator[str], *, name: str, meter: Meter, max_chars: int) -> str:
    out: list[str] = []
    size = 0
    for count, chunk in enumerate(chunks, 1):
        out.append(chunk)
        size += len(chunk)
        if size > max_chars:
            raise BudgetError(f"{name}: output exceeds the {max_chars} character budget",
                              path=name, budget="size")
        if not count & 63:
            meter.check_time()
    return "".join(out)


def _get(env: jinja2.Environment, name: str, by: str | None = None) -> jinja2.Template:
    """``name`` compiled, its failures as the ccm errors a render raises (``by``: the
    source that names it, when it is not an entry)."""
    try:
        return env.get_template(name)
    except jinja2.TemplateSyntaxError as exc:
        raise _compile_error(exc) from exc
    except jinja2.TemplateNotFound as exc:
        where = by or name
        raise TemplateError(f"{where}: template source not found: {exc.name}",
                            path=where) from exc


def compile_source(env: jinja2.Environment, name: str) -> None:
    """Compile ``name`` and every source it names (``extends``, ``include``, ``import``,
    recursively) as a render would, without rendering: raises the error a render of
    it would raise at compile time -- :class:`TemplateSyntaxError` (syntax, unknown
    filter or test, nesting over :data:`~ccm.render.sandbox.MAX_NESTING`),
    :class:`TemplateError` (a named source that does not exist), or the loader's
    refusal (outside its root, too big). A name computed at render time cannot be
    followed; the render checks it then.
    """
    from jinja2.meta import find_referenced_templates

    seen: set[str] = set()
    todo: list[tuple[str, str | None]] = [(name, None)]
    while todo:
        current, by = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        template = _get(env, current, by)
        if env.loader is None:  # compiled from a string: it names nothing loadable
            return
        source = env.loader.get_source(env, current)[0]
        tree = env.parse(source, current, template.filename)  # compiled above: it parses
        todo.extend((found, template.filename or current)
                    for found in find_referenced_templates(tree) if found is not None)


def _compile_error(exc: jinja2.TemplateSyntaxError) -> TemplateSyntaxError:
    where = f"{exc.filename or exc.name}:{exc.lineno}"
    return TemplateSyntaxError(f"{where}: {exc.message}", path=exc.filename or exc.name,
                               line=exc.lineno)


def render_source(
    env: ImmutableSandboxedEnvironment,
    name: str,
    context: Mapping[str, Any],
    *,
    blocks: tuple[str, ...] = (),
    deadline: float | None = None,
    max_chars: int | None = None,
    meter: Meter | None = None,
) -> RenderedSource:
    """Render template ``name`` with ``context`` inside the document's budget.

    ``meter`` is the document's :class:`~ccm.render.budget.Meter` (time,
    output and value budgets, shared with the rest of the document); without
    one, a default :class:`~ccm.render.budget.Budget` starts now (its
    deadline replaced by ``deadline`` when given). ``max_chars`` overrides the
    output budget of this source.

    Returns the text and the rendered value of each named block (``subject``,
    ``preheader``) that the template or its layout defines. Every failure a
    template or its data can cause comes out as a ccm error naming file and
    line: syntax → :class:`TemplateSyntaxError`, sandbox escapes and
    non-data output → :class:`SandboxError`, budgets (time, size, value,
    nesting, memory) → :class:`BudgetError`, undefined names and every
    other failure → :class:`RenderError`.
    """
    if meter is None:
        meter = Budget().start()
        if deadline is not None:
            meter.deadline = deadline
    limit = meter.max_output if max_chars is None else max_chars
    template = _get(env, name)
    try:
        with metered(meter, name):
            ctx = template.new_context(dict(context))
            text = _consume(template.root_render_func(ctx), name=name, meter=meter,
                            max_chars=limit)
            rendered_blocks = {}
            for block in blocks:
                funcs = ctx.blocks.get(block)
                if funcs:
                    value = _consume(funcs[0](ctx), name=f"{name}#{block}", meter=meter,
                                     max_chars=10_000)
                    rendered_blocks[block] = " ".join(Markup(value).striptags().split()) \
                        if _autoescape(name) else " ".join(value.split())
        return RenderedSource(text, rendered_blocks)
    except Exception as exc:
        raise translate_error(exc, name) from exc


def translate_error(exc: BaseException, name: str) -> CCMError:
    """The ccm error for an exception raised while ``name`` rendered, with file and line."""
    filename, line = _where(exc, name)
    where = f"{filename}:{line}"
    if isinstance(exc, BudgetError):
        if exc.context.get("line") is None and line is not None:
            return type(exc)(f"{where}: {exc.message.split(': ', 1)[-1]}",
                             **{**exc.context, "path": filename, "line": line})
        return exc
    if isinstance(exc, ConfigError):
        return exc
    if isinstance(exc, jinja2.exceptions.SecurityError):
        return SandboxError(f"{where}: blocked by the sandbox: {exc}", path=filename, line=line)
    if isinstance(exc, jinja2.UndefinedError):
        return RenderError(f"{where}: {_masked(str(exc.message), filename)}", path=filename,
                           line=line)
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return _compile_error(exc)
    if isinstance(exc, jinja2.TemplateNotFound):
        missing = (str(exc.name) if _written(str(exc.name), _source_of(filename))
                   else "a name made while rendering")
        return TemplateError(f"{name}: included template not found: {missing}", path=name)
    if isinstance(exc, RenderError):
        return type(exc)(f"{where}: {exc.message}", **{**exc.context, "path": filename,
                                                         "line": line})
    if isinstance(exc, CCMError):
        return exc
    if isinstance(exc, RecursionError):
        return BudgetError(f"{where}: recursion too deep (a macro calling itself?)",
                           path=filename, line=line, budget="depth")
    if isinstance(exc, MemoryError):
        return BudgetError(f"{where}: out of memory", path=filename, line=line,
                           budget="memory")
    if isinstance(exc, jinja2.TemplateRuntimeError):
        return RenderError(f"{where}: {_masked(str(exc), filename)}", path=filename, line=line)
    if isinstance(exc, ValueError) and "integer string conversion" in str(exc):
        return RenderError(f"{where}: a number of more than 4,300 digits cannot be written as "
                           "text; check the arithmetic that makes it",
                           path=filename, line=line)
    if isinstance(exc, decimal.InvalidOperation):
        return RenderError(f"{where}: {type(exc).__name__}: a number outside what can be "
                           "calculated or written", path=filename, line=line)
    if isinstance(exc, LookupError) and not isinstance(exc, (KeyError, IndexError)):
        # "unknown encoding: <the value>" and the like: the message is the value.
        return RenderError(f"{where}: {type(exc).__name__}: a name the template looked up "
                           "does not exist", path=filename, line=line)
    # TypeError, ValueError, ArithmeticError, LookupError, AttributeError and the
    # rest: a template (or its data) did something its values do not support.
    return RenderError(f"{where}: {type(exc).__name__}: {_short(exc, filename)}", path=filename,
                       line=line)


#: A quoted value in an error message, as ``repr()`` writes it (escaped quotes inside).
_QUOTED = re.compile(r"'(?:[^'\\\n]|\\.)*'" r'|"(?:[^"\\\n]|\\.)*"')
#: Everything from a message's first quote mark to its last (of either kind).
_ANY_QUOTED = re.compile(r"['\"].*['\"]", re.DOTALL)
#: Where Python writes an object's address (``<function f at 0x7f...>``).
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
#: Jinja's and Python's names of types (``'dict object'``, ``'int'``): not data.
_TYPE_NAME = re.compile(r"[A-Za-z_][\w.]* object|NoneType|str|int|float|bool|dict|list|tuple|"
                        r"set|bytes|Markup|Decimal|date|datetime|timedelta")
#: What Jinja says a lookup did not find (``has no element 12345678``: unquoted).
_NO_ELEMENT = re.compile(r"(has no element )(.+)$")


def _source_of(filename: str | None) -> str:
    """The text of the template an error happened in ("" when it cannot be read)."""
    if not filename:
        return ""
    try:
        return Path(filename).read_text("utf-8", errors="replace")
    except OSError:
        return ""


def _written(value: str, source: str) -> bool:
    """``value`` is in the template's source as a whole word (not inside one)."""
    return bool(value) and re.search(
        r"(?<!\w)" + re.escape(value) + r"(?!\w)", source) is not None


def _masked(text: str, filename: str | None) -> str:
    """``text`` without addresses, and without quoted values the template itself does not
    contain: a key looked up from the request's data (a customer's name) is not repeated,
    a field name written in the template (``data.no_such_field``) is."""
    source = _source_of(filename)

    def keep(found: re.Match[str]) -> str:
        inner = found.group(0)[1:-1]
        if inner and (_TYPE_NAME.fullmatch(inner) or _written(inner, source)):
            return found.group(0)
        return "'…'"

    text = _QUOTED.sub(keep, _ADDRESS.sub("", text))
    return _NO_ELEMENT.sub(lambda m: m.group(1) + (m.group(2) if m.group(2) == "'…'"
                                                   or _written(m.group(2), source) else "…"),
                           text)


def _short(exc: BaseException, filename: str | None = None) -> str:
    """The exception's text, without quoted values (they may be customer data)."""
    text = str(exc)
    if not isinstance(exc, (TypeError, AttributeError)):
        # Python quotes values in these messages as '%s', not as a repr: a value with its
        # own quote mark would pair wrongly, so everything between the first and the last
        # quote goes.
        text = _ANY_QUOTED.sub("'…'", text)
    text = _masked(text, filename)
    return text if len(text) <= 300 else text[:300] + "…"


def static_references(env: ImmutableSandboxedEnvironment, name: str) -> list[tuple[str, int, str]]:
    """``(kind, line, target)`` of every extends/include/import in a source.

    ``target`` is ``''`` when the name is dynamic.
    """
    source, filename, _ = env.loader.get_source(env, name)  # type: ignore[union-attr]
    tree = env.parse(source, name, filename)
    out = []
    for node in tree.find_all((nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)):
        target = node.template  # type: ignore[attr-defined]
        value = target.value if isinstance(target, nodes.Const) else ""
        out.append((type(node).__name__.lower(), node.lineno, str(value)))
    return out
