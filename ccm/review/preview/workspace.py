"""What the preview shows, without any web framework: packs, templates, rendered views.

A :class:`Workspace` holds the pack folders and the templates folder. Every
change on disk starts a new *generation* (:meth:`Workspace.bump`): engines
are rebuilt from scratch on first use, so a change to ``pack.yaml``,
``template.yaml``, a layout, a translation or a sample is always seen.
Rendered views are cached per generation; renders run one at a time (they are
CPU bound, and one engine is not shared by concurrent renders).

Nothing here raises for a broken pack or template: errors become
:class:`ErrorInfo` values (kind, message, file, line, an excerpt of the
source) that the page shows where the output would be.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ccm._files import read_contained, read_contained_text
from ccm.errors import CCMError, UnsafeFileError

if TYPE_CHECKING:
    from ccm.render.engine import Engine

__all__ = [
    "EmailView",
    "ErrorInfo",
    "FindingView",
    "Listing",
    "PdfView",
    "SmsView",
    "View",
    "ViewKey",
    "Workspace",
]

#: Views kept in memory (each holds page images, a few hundred KB).
_MAX_VIEWS = 24
_EXCERPT = 3
_WHERE = re.compile(r"^(?P<path>[^\n]+?):(?P<line>\d+): ")


@dataclass(frozen=True)
class ErrorInfo:
    """An error as the page shows it: what, where, and the lines around it."""

    kind: str
    message: str
    path: str | None = None
    line: int | None = None
    excerpt: tuple[tuple[int, str], ...] = ()

    @property
    def where(self) -> str | None:
        """``file:line`` (or just the file), when known."""
        if self.path is None:
            return None
        return f"{self.path}:{self.line}" if self.line else self.path

    @classmethod
    def from_exception(cls, exc: BaseException, *, root: Path | None = None) -> ErrorInfo:
        """Describe ``exc``; ccm errors carry ``path`` and ``line`` in their context."""
        context: dict[str, Any] = getattr(exc, "context", {}) or {}
        message = str(exc)
        path = context.get("path")
        line = context.get("line")
        match = _WHERE.match(message)
        if match and (path is None or match["path"] == str(path)):
            # The message says where with a 1-based line; trust it over the context.
            path, line = match["path"], int(match["line"])
        if not path:
            return cls(type(exc).__name__, message)
        file = _locate(str(path), root) or Path(str(path))
        key = context.get("key")
        if line is None and key and file.suffix in (".yaml", ".yml") and file.is_file():
            # A manifest error names its key; the page shows the key's line too.
            from ccm.review.lint.sources import yaml_key_line

            line = yaml_key_line(file, str(key))
        excerpt: tuple[tuple[int, str], ...] = ()
        if isinstance(line, int) and line > 0 and file.is_file():
            try:
                # Contained: an error naming a symlink must not show what it points to.
                lines = read_contained(file, file.parent).decode(
                    "utf-8", errors="replace").splitlines()
            except (OSError, UnsafeFileError):
                lines = []
            lo, hi = max(1, line - _EXCERPT), min(len(lines), line + _EXCERPT)
            excerpt = tuple((n, lines[n - 1]) for n in range(lo, hi + 1))
        shown = file.relative_to(root).as_posix() if root and file.is_absolute() and \
            file.is_relative_to(root) else file.as_posix()
        if message.startswith(str(path)):
            message = shown + message[len(str(path)):]
        return cls(type(exc).__name__, message, shown,
                   line if isinstance(line, int) else None, excerpt)


def _locate(path: str, root: Path | None) -> Path | None:
    """The file ``path`` names: absolute, or relative to ``root`` (Jinja loader names)."""
    candidate = Path(path)
    if candidate.is_absolute():
        return candidate if candidate.is_file() else None
    if root is not None and (root / candidate).is_file():
        return (root / candidate).resolve()
    return None


@dataclass(frozen=True)
class ViewKey:
    """Which preview: pack folder key, template id, locale, sample name."""

    pack: str
    template: str
    locale: str
    sample: str

    def query(self) -> dict[str, str]:
        """The URL query parameters naming this view."""
        return {"pack": self.pack, "template": self.template, "locale": self.locale,
                "sample": self.sample}


@dataclass(frozen=True)
class PdfView:
    """PDF pages as PNG images (drawn from the unencrypted document)."""

    pages: tuple[bytes, ...]
    sizes: tuple[tuple[int, int], ...]
    title: str | None
    encrypted: bool
    password_hint: str | None
    size: int


@dataclass(frozen=True)
class EmailView:
    """The email's HTML and text parts, headers and attachments."""

    html: str
    text: str
    headers: tuple[tuple[str, str], ...]
    attachments: tuple[tuple[str, int], ...]
    html_size: int


@dataclass(frozen=True)
class SmsView:
    """The SMS as sent, its encoding, length and segment count."""

    text: str
    encoding: str
    segments: int
    units: int
    non_gsm: tuple[str, ...]
    sender: str | None


@dataclass(frozen=True)
class ChannelView:
    """One channel of a view: its output, or the error that stopped it."""

    channel: str
    output: PdfView | EmailView | SmsView | None = None
    error: ErrorInfo | None = None


@dataclass(frozen=True)
class FindingView:
    """A lint finding as shown: severity, where, rule, message."""

    severity: str
    where: str
    rule: str
    message: str


@dataclass(frozen=True)
class View:
    """Everything shown for one :class:`ViewKey` in one generation."""

    key: ViewKey
    generation: int
    pack_name: str | None = None
    template_name: str | None = None
    channels: tuple[ChannelView, ...] = ()
    error: ErrorInfo | None = None
    seconds: float = 0.0

    def channel(self, name: str) -> ChannelView | None:
        """The view of channel ``name``, if the template has it."""
        return next((c for c in self.channels if c.channel == name), None)


@dataclass(frozen=True)
class TemplateEntry:
    """A template in the list: id, display name, channels, sample names."""

    id: str
    name: str
    channels: tuple[str, ...]
    samples: tuple[str, ...]
    message_type: str = ""


@dataclass(frozen=True)
class Listing:
    """What can be chosen in one pack: its locales and the templates (or the load error)."""

    pack: str
    pack_name: str
    locales: tuple[str, ...]
    templates: tuple[TemplateEntry, ...]
    error: ErrorInfo | None = None
    packs: tuple[str, ...] = field(default=())


class Workspace:
    """Pack folders and a templates folder, rendered on demand, one generation at a time."""

    def __init__(self, pack_dirs: Sequence[str | os.PathLike[str]],
                 templates_dir: str | os.PathLike[str], *, lint: bool = True) -> None:
        if not pack_dirs:
            raise ValueError("the preview needs at least one brand pack folder")
        self.templates_dir = Path(templates_dir).resolve()
        self.packs: dict[str, Path] = {}
        for raw in pack_dirs:
            path = Path(raw).resolve()
            key, n = path.name, 2
            while key in self.packs:
                key, n = f"{path.name}-{n}", n + 1
            self.packs[key] = path
        #: Paths shown to the designer are relative to this folder.
        self.root = _common_root([self.templates_dir, *self.packs.values()])
        self.lint_enabled = lint
        self.generation = 0
        self._state = threading.Lock()
        # One render at a time; a page waiting for its view goes before lint.
        self._turn = threading.Condition()
        self._busy = False
        self._views_waiting = 0
        self._lint_lock = threading.Lock()
        self._engines: dict[tuple[int, str], Engine | ErrorInfo] = {}
        self._views: OrderedDict[tuple[int, ViewKey], View] = OrderedDict()
        # The messages behind each view, so lint checks what was shown without rendering again.
        self._results: OrderedDict[tuple[int, ViewKey], dict[str, Any]] = OrderedDict()
        self._findings: OrderedDict[tuple[int, ViewKey], tuple[FindingView, ...]] = OrderedDict()

    @property
    def watch_paths(self) -> list[Path]:
        """The folders whose changes start a new generation."""
        return [self.templates_dir, *self.packs.values()]

    def bump(self) -> int:
        """Start a new generation (call on any change on disk); returns its number."""
        with self._state:
            self.generation += 1
            gen = self.generation
            self._engines = {k: v for k, v in self._engines.items() if k[0] == gen}
        return gen

    # -- engines and listings -------------------------------------------------

    def engine(self, pack: str) -> Engine | ErrorInfo:
        """This generation's engine for ``pack``, or the error that stopped it loading."""
        from ccm.render.engine import Engine, RenderOptions

        with self._state:
            gen = self.generation
            found = self._engines.get((gen, pack))
        if found is not None:
            return found
        try:
            result: Engine | ErrorInfo = Engine(self.packs[pack], self.templates_dir,
                                                record=None, options=RenderOptions(archival=False))
        except KeyError:
            result = ErrorInfo("NotFoundError", f"no pack {pack!r}; there are: "
                               f"{', '.join(self.packs)}")
        except Exception as exc:  # a broken pack must show on the page, never stop the server
            result = ErrorInfo.from_exception(exc, root=self.root)
        with self._state:
            if self.generation == gen:
                self._engines[(gen, pack)] = result
        return result

    def listing(self, pack: str) -> Listing:
        """The pack's locales and templates; from the folders when the engine does not load."""
        engine = self.engine(pack)
        packs = tuple(self.packs)
        if isinstance(engine, ErrorInfo):
            entries = tuple(
                TemplateEntry(d.name, d.name, (), tuple(_sample_names(d)))
                for d in sorted(self.templates_dir.glob("*/")) if (d / "template.yaml").is_file()
            )
            return Listing(pack, pack, (), entries, error=engine, packs=packs)
        entries = tuple(
            TemplateEntry(t.id, t.name, t.channels, tuple(p.stem for p in t.samples()),
                          t.message_type)
            for t in sorted(engine.templates.values(), key=lambda t: t.id)
        )
        return Listing(pack, engine.pack.name, engine.pack.locales, entries, packs=packs)

    def resolve(self, pack: str | None = None, template: str | None = None,
                locale: str | None = None, sample: str | None = None) -> ViewKey:
        """A complete key from possibly missing or stale choices (defaults fill the gaps)."""
        if pack not in self.packs:
            pack = next(iter(self.packs))
        listing = self.listing(pack)
        ids = [t.id for t in listing.templates]
        if template not in ids:
            template = ids[0] if ids else ""
        entry = next((t for t in listing.templates if t.id == template), None)
        samples = list(entry.samples) if entry else []
        if sample not in samples:
            sample = samples[0] if samples else ""
        if locale not in listing.locales:
            locale = self._sample_locale(pack, template, sample) or (
                listing.locales[0] if listing.locales else "")
        return ViewKey(pack, template, locale, sample)

    def _sample_locale(self, pack: str, template: str, sample: str) -> str | None:
        engine = self.engine(pack)
        if isinstance(engine, ErrorInfo) or not sample:
            return None
        try:
            path = self._sample_path(template, sample)
            request = json.loads(read_contained_text(path, path.parent))
            return engine.pack.resolve_locale(request["customer"].get("locale"))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return engine.pack.default_locale

    def _sample_path(self, template: str, sample: str) -> Path:
        return self.templates_dir / template / "samples" / f"{sample}.json"

    # -- views ------------------------------------------------------------------

    def cached(self, key: ViewKey) -> View | None:
        """The view of ``key`` in the current generation, if already rendered."""
        with self._state:
            return self._views.get((self.generation, key))

    def view(self, key: ViewKey) -> View:
        """Render ``key`` in the current generation (cached; one render at a time)."""
        hit = self.cached(key)
        if hit is not None:
            return hit
        with self._slot(first=True):
            hit = self.cached(key)
            if hit is not None:
                return hit
            gen = self.generation
            results: dict[str, Any] = {}
            view = self._render_view(key, gen, results)
            with self._state:
                self._views[(gen, key)] = view
                self._results[(gen, key)] = results
                while len(self._views) > _MAX_VIEWS:
                    self._views.popitem(last=False)
                while len(self._results) > _MAX_VIEWS:
                    self._results.popitem(last=False)
            return view

    def findings(self, key: ViewKey) -> tuple[FindingView, ...]:
        """The lint findings for what ``key`` shows (each channel, its locale and sample).

        The messages the view rendered are checked as they are (nothing is
        rendered twice). A run overtaken by a change on disk is dropped and
        started again on the new generation, so stale findings never show.
        """
        with self._lint_lock:
            while True:
                gen = self.generation
                with self._state:
                    hit = self._findings.get((gen, key))
                if hit is not None:
                    return hit
                result = self._lint(key, gen)
                if result is None:
                    continue  # a newer generation started while this one was checked
                with self._state:
                    self._findings[(gen, key)] = result
                    while len(self._findings) > _MAX_VIEWS:
                        self._findings.popitem(last=False)
                return result

    @contextlib.contextmanager
    def _slot(self, *, first: bool) -> Iterator[None]:
        """Hold the render turn; ``first`` (a page's view) goes before waiting lint runs."""
        with self._turn:
            if first:
                self._views_waiting += 1
            try:
                while self._busy or (not first and self._views_waiting):
                    self._turn.wait()
            finally:
                if first:
                    self._views_waiting -= 1
            self._busy = True
        try:
            yield
        finally:
            with self._turn:
                self._busy = False
                self._turn.notify_all()

    def _load_request(self, key: ViewKey) -> Any:
        if not key.sample:
            folder = self.templates_dir / key.template / "samples"
            raise _SampleError(f"{folder}: no sample requests; add one (e.g. 01_example.json "
                               "with a customer and data)", path=str(folder))
        path = self._sample_path(key.template, key.sample)
        try:
            return json.loads(read_contained_text(path, path.parent))
        except json.JSONDecodeError as exc:
            raise _SampleError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}",
                               path=str(path), line=exc.lineno) from exc
        except OSError as exc:
            raise _SampleError(f"{path}: cannot read: {exc.strerror}", path=str(path)) from exc

    def _render_view(self, key: ViewKey, gen: int, results: dict[str, Any]) -> View:
        started = time.monotonic()
        engine = self.engine(key.pack)
        if isinstance(engine, ErrorInfo):
            return View(key, gen, error=engine, seconds=time.monotonic() - started)
        try:
            tpl = engine.template(key.template)
            request = self._load_request(key)
        except Exception as exc:  # shown on the page
            return View(key, gen, pack_name=engine.pack.name,
                        error=ErrorInfo.from_exception(exc, root=self.root),
                        seconds=time.monotonic() - started)
        from ccm.review.proof import render_channels

        rendered: dict[str, Any]
        try:
            rendered = dict(render_channels(engine, tpl, request, key.locale or None))
        except Exception as exc:  # not a ccm error: a bug, still shown rather than raised
            rendered = dict.fromkeys(tpl.channels, exc)
        results.update(rendered)
        channels = tuple(self._channel_view(engine, key, ch, rendered[ch], request)
                         for ch in tpl.channels)
        return View(key, gen, engine.pack.name, tpl.name, channels,
                    seconds=time.monotonic() - started)

    def _channel_view(self, engine: Engine, key: ViewKey, channel: str, result: Any,
                      request: Any) -> ChannelView:
        try:
            if isinstance(result, Exception):
                raise result
            output: PdfView | EmailView | SmsView
            if channel == "pdf":
                output = _pdf_view(engine, result, request)
            elif channel == "email":
                output = _email_view(engine, result, key.pack)
            else:
                output = _sms_view(engine, result)
        except Exception as exc:  # a template error is shown, never raised to the server
            return ChannelView(channel, error=ErrorInfo.from_exception(exc, root=self.root))
        return ChannelView(channel, output)

    def _lint(self, key: ViewKey, gen: int) -> tuple[FindingView, ...] | None:
        """The findings for ``key`` in generation ``gen``; None once ``gen`` is stale."""
        if not self.lint_enabled:
            return ()
        engine = self.engine(key.pack)
        if isinstance(engine, ErrorInfo):  # the page shows why; "no findings" would mislead
            return (FindingView("error", engine.where or "", "not-linted",
                                "nothing was linted: the pack or templates do not load "
                                "(the error above says why; `ccm lint` lists every problem)"),)
        try:
            from ccm.review.lint import findings_for
        except ImportError as exc:
            return (FindingView("info", "", "lint-unavailable",
                                f"ccm.review.lint cannot be loaded: {exc}"),)
        self.view(key)  # what the page shows, rendered once and checked as it is
        with self._state:
            results = self._results.get((gen, key), {})
        try:
            tpl = engine.template(key.template)
            request = self._load_request(key)
            sample = self._sample_path(key.template, key.sample)
            found: list[Any] = []
            for channel in tpl.channels:
                with self._slot(first=False):
                    if self.generation != gen:
                        return None
                    found.extend(findings_for(engine, tpl.id, channel, key.locale or None,
                                              request, sample=sample,
                                              result=results.get(channel)))
        except Exception as exc:  # the linter failing must not take the preview down
            info = ErrorInfo.from_exception(exc, root=self.root)
            return (FindingView("error", info.where or "", "lint-failed", info.message),)
        out: list[FindingView] = []
        seen: set[FindingView] = set()
        for f in found:
            file = str(getattr(f, "file", "") or "")
            located = _locate(file, self.root) if file else None
            if located is not None and located.is_relative_to(self.root):
                file = located.relative_to(self.root).as_posix()
            line = getattr(f, "line", None)
            item = FindingView(
                str(getattr(f, "severity", "")),
                f"{file}:{line}" if line else file,
                str(getattr(f, "rule", "")),
                str(getattr(f, "message", "")),
            )
            if item not in seen:
                seen.add(item)
                out.append(item)
        order = {"error": 0, "warning": 1}
        return tuple(sorted(out, key=lambda f: (order.get(f.severity, 2), f.where)))

    def asset(self, pack: str, rel: str) -> Path | None:
        """A file inside ``pack`` (no hidden files, nothing outside the pack), or None."""
        root = self.packs.get(pack)
        if root is None or any(part.startswith(".") for part in Path(rel).parts):
            return None
        target = (root / rel).resolve()
        return target if target.is_relative_to(root) and target.is_file() else None


class _SampleError(CCMError):
    """A sample request file cannot be read."""


def _sample_names(template_dir: Path) -> list[str]:
    return [p.stem for p in sorted((template_dir / "samples").glob("*.json"))]


def _common_root(paths: Sequence[Path]) -> Path:
    return Path(os.path.commonpath([str(p) for p in paths]))


def _png_size(png: bytes) -> tuple[int, int]:
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def _pdf_view(engine: Engine, message: Any, request: Any) -> PdfView:
    from ccm.review.preview.pages import draw_pdf

    pages = tuple(draw_pdf(engine, message, request.get("customer", {}), scale=1.5))
    return PdfView(pages, tuple(_png_size(p) for p in pages), message.subject,
                   message.encrypted, message.password_hint, len(message.content))


def _email_view(engine: Engine, message: Any, pack_key: str) -> EmailView:
    msg = message.email
    html_part = msg.get_body(("html",))
    text_part = msg.get_body(("plain",))
    html = str(html_part.get_content()) if html_part is not None else ""
    base = engine.pack.raw.get("assets_url")
    if base:
        # The email links pack files from where the pack publishes them; the
        # preview serves them itself, so the page works offline.
        html = html.replace(str(base).rstrip("/") + "/", f"/pack-file/{pack_key}/")
    headers = tuple(
        (name, str(value)) for name, value in msg.items()
        if name.lower() not in {"content-type", "mime-version", "content-transfer-encoding"}
    )
    attachments = tuple(
        (str(a.get_filename() or "attachment"), len(a.get_payload(decode=True) or b""))
        for a in msg.iter_attachments()
    )
    text = str(text_part.get_content()) if text_part is not None else ""
    return EmailView(html, text, headers, attachments,
                     len(html_part.get_content().encode("utf-8")) if html_part else 0)


def _sms_view(engine: Engine, message: Any) -> SmsView:
    from ccm.channels.sms import measure, non_gsm_chars

    text = message.text or ""
    result = measure(text)
    sender = engine.pack.senders.get("sms", {}).get("sender_id")
    return SmsView(text, str(message.encoding or result.encoding), int(message.segments or 0),
                   result.units, tuple(non_gsm_chars(text)), str(sender) if sender else None)
