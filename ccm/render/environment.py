"""The sandboxed Jinja environment: one per brand pack, shared by every template.

Templates are semi-trusted: they run in an
:class:`~jinja2.sandbox.ImmutableSandboxedEnvironment` with
:class:`~jinja2.StrictUndefined` (with the default ``Undefined`` a blocked
attribute would silently render as empty). Customer data is untrusted: HTML
and MJML sources are autoescaped (``select_autoescape`` does not cover
``.mjml`` on its own), and data is only ever a value, never template source.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.ext import _make_new_gettext, _make_new_ngettext
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import Markup

from ccm.errors import BudgetError, RenderError, SandboxError, TemplateError, TemplateSyntaxError
from ccm.render.i18n import FILTERS

__all__ = ["RenderedSource", "create_environment", "render_source"]

#: Sources whose output is markup and must be autoescaped.
_ESCAPED_SUFFIXES = (".html.j2", ".mjml.j2", ".html", ".mjml", ".xml.j2", ".svg.j2")


def _autoescape(name: str | None) -> bool:
    return bool(name) and name.endswith(_ESCAPED_SUFFIXES)  # type: ignore[union-attr]


def create_environment(pack_layouts: Path, templates_dir: Path) -> ImmutableSandboxedEnvironment:
    """Build the environment for one pack.

    ``pack/…`` names the pack's layouts, ``templates/…`` the templates.
    """
    loader = jinja2.PrefixLoader(
        {
            "pack": jinja2.FileSystemLoader(str(pack_layouts)),
            "templates": jinja2.FileSystemLoader(str(templates_dir)),
        }
    )
    env = ImmutableSandboxedEnvironment(
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
    env.install_null_translations(newstyle=True)  # type: ignore[attr-defined]
    return env


def gettext_functions(translations: Any) -> dict[str, Callable[..., Any]]:
    """Per-render ``gettext``/``ngettext``/``_`` bound to one catalog.

    Newstyle and autoescape-aware.
    """
    gettext = _make_new_gettext(translations.gettext)
    ngettext = _make_new_ngettext(translations.ngettext)
    return {"gettext": gettext, "ngettext": ngettext, "_": gettext}


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


def _consume(chunks: Iterator[str], *, name: str, deadline: float | None, max_chars: int) -> str:
    out: list[str] = []
    size = 0
    for chunk in chunks:
        out.append(chunk)
        size += len(chunk)
        if size > max_chars:
            raise BudgetError(f"{name}: output exceeds the {max_chars} character budget",
                              path=name, budget="size")
        if deadline is not None and time.monotonic() > deadline:
            raise BudgetError(f"{name}: rendering exceeded its time budget",
                              path=name, budget="time")
    return "".join(out)


def render_source(
    env: ImmutableSandboxedEnvironment,
    name: str,
    context: Mapping[str, Any],
    *,
    blocks: tuple[str, ...] = (),
    deadline: float | None = None,
    max_chars: int = 5_000_000,
) -> RenderedSource:
    """Render template ``name`` with ``context`` inside the time and size budget.

    Returns the text and the rendered value of each named block (``subject``,
    ``preheader``) that the template or its layout defines. Jinja errors are
    translated: syntax → :class:`TemplateSyntaxError`, sandbox escapes →
    :class:`SandboxError`, undefined names and other failures →
    :class:`RenderError`, each naming file and line.
    """
    try:
        template = env.get_template(name)
    except jinja2.TemplateSyntaxError as exc:
        where = f"{exc.filename or exc.name}:{exc.lineno}"
        raise TemplateSyntaxError(f"{where}: {exc.message}", path=exc.filename or exc.name,
                                  line=exc.lineno) from exc
    except jinja2.TemplateNotFound as exc:
        raise TemplateError(f"{name}: template source not found: {exc.name}", path=name) from exc
    try:
        ctx = template.new_context(dict(context))
        text = _consume(template.root_render_func(ctx), name=name, deadline=deadline,
                        max_chars=max_chars)
        rendered_blocks = {}
        for block in blocks:
            funcs = ctx.blocks.get(block)
            if funcs:
                value = _consume(funcs[0](ctx), name=f"{name}#{block}", deadline=deadline,
                                 max_chars=10_000)
                rendered_blocks[block] = " ".join(Markup(value).striptags().split()) \
                    if _autoescape(name) else " ".join(value.split())
        return RenderedSource(text, rendered_blocks)
    except BudgetError:
        raise
    except jinja2.exceptions.SecurityError as exc:
        filename, line = _where(exc, name)
        raise SandboxError(f"{filename}:{line}: blocked by the sandbox: {exc}", path=filename,
                           line=line) from exc
    except jinja2.UndefinedError as exc:
        filename, line = _where(exc, name)
        raise RenderError(f"{filename}:{line}: {exc.message}", path=filename, line=line) from exc
    except jinja2.TemplateSyntaxError as exc:
        where = f"{exc.filename or exc.name}:{exc.lineno}"
        raise TemplateSyntaxError(f"{where}: {exc.message}", path=exc.filename or exc.name,
                                  line=exc.lineno) from exc
    except jinja2.TemplateNotFound as exc:
        raise TemplateError(f"{name}: included template not found: {exc.name}", path=name) from exc
    except RenderError as exc:
        filename, line = _where(exc, name)
        raise type(exc)(f"{filename}:{line}: {exc.message}", **{**exc.context, "path": filename,
                                                                  "line": line}) from exc
    except RecursionError as exc:
        raise BudgetError(f"{name}: recursion too deep", path=name, budget="depth") from exc
    except (TypeError, ValueError, ArithmeticError, LookupError, AttributeError) as exc:
        filename, line = _where(exc, name)
        raise RenderError(f"{filename}:{line}: {type(exc).__name__}: {exc}", path=filename,
                          line=line) from exc


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
