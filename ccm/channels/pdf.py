"""HTML in, PDF bytes out: WeasyPrint behind a fetcher that serves only the pack.

WeasyPrint's own fetcher reads any file and any URL, and when a resource
cannot be fetched it logs and carries on -- a statement would go out without
its logo. :class:`PackFetcher` serves ``file:`` URLs inside its roots only
(symlinks resolved), ``data:`` URLs, and ``http(s)`` for listed hosts; every
refusal or failure raises :class:`AssetRefused`, which WeasyPrint does not
swallow, and :func:`render_document` / :func:`write_pdf` turn it into
:class:`~ccm.errors.AssetError`. Failures WeasyPrint would still swallow
(inside SVG drawing) are noted by the fetcher and raised afterwards.

Rendering is split in two so one layout can be written more than once:

* :func:`render_document` -- parse and lay out; time and size budgets apply.
* :func:`write_pdf` -- draw one PDF with ccm's metadata; safe to repeat.
* :func:`delivery_from_archival` -- the delivery PDF made from the PDF/A-3b
  archival copy by qpdf while it encrypts, instead of a second ``write_pdf``.

Batch cost is in layout and writing; parsing CSS and fonts is shared:
:func:`load_stylesheet` keeps an LRU of parsed pack stylesheets (also
used for the stylesheet a layout ``<link>``s), :func:`font_config` one font
configuration per process, and each :class:`PackFetcher` caches the bytes it
reads.

This module logs nothing itself; WeasyPrint logs to the ``weasyprint`` logger.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import functools
import gc
import io
import mimetypes
import os
import re
import signal
import threading
import time
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from types import FrameType, MappingProxyType
from typing import Any
from urllib.error import HTTPError
from urllib.parse import urlsplit
from urllib.request import url2pathname

import pydyf
import weasyprint
from weasyprint.css import ColorProfile
from weasyprint.css.counters import CounterStyle
from weasyprint.pdf import VARIANTS
from weasyprint.text.fonts import FontConfiguration
from weasyprint.urls import FatalURLFetchingError, URLFetcher, URLFetcherResponse

from ccm.errors import AssetError, BudgetError, CCMError, RenderError

__all__ = [
    "DEFAULT_MAX_HTML_BYTES",
    "AssetRefused",
    "PackFetcher",
    "delivery_from_archival",
    "font_config",
    "load_stylesheet",
    "render_document",
    "write_pdf",
]

#: HTML larger than this (UTF-8 bytes) is refused before layout.
DEFAULT_MAX_HTML_BYTES = 5_000_000
#: After the deadline the alarm repeats this often, in case WeasyPrint swallowed one.
_ALARM_REPEAT = 0.05
#: Parsed stylesheets kept by :func:`load_stylesheet`.
_CSS_CACHE_SIZE = 64
#: Custom PDF info keys: a PDF name without delimiters or ``#``.
_INFO_KEY = re.compile(r"[A-Za-z][A-Za-z0-9:._-]{0,126}")
_STANDARD_INFO_KEYS = frozenset(
    {"Title", "Author", "Subject", "Keywords", "Creator", "Producer", "CreationDate",
     "ModDate", "Trapped"}
)
_NO_METADATA: Mapping[str, str] = MappingProxyType({})


# --- fetching -----------------------------------------------------------------


class AssetRefused(FatalURLFetchingError):  # type: ignore[misc]
    """The fetcher refused or failed a URL; fatal inside WeasyPrint by design.

    It derives from WeasyPrint's ``FatalURLFetchingError`` (a ``BaseException``)
    so WeasyPrint's ``except Exception`` handlers let it through.
    """

    def __init__(self, message: str, url: str) -> None:
        super().__init__(message)
        self.message = message
        self.url = url

    def to_error(self) -> AssetError:
        return AssetError(self.message, url=self.url)


@dataclass
class _Session:
    """What one render or stylesheet parse fetched, and what was refused."""

    failures: list[AssetRefused] = field(default_factory=list)
    deps: dict[Path, tuple[int, int]] = field(default_factory=dict)


class PackFetcher(URLFetcher):  # type: ignore[misc]
    """A WeasyPrint URL fetcher that serves only the pack's own files.

    ``roots`` are the folders whose files may be read (the pack and the
    templates folder); a ``file:`` URL is served when its path, with symlinks
    resolved, lies inside one of them. ``data:`` URLs are served; ``http`` and
    ``https`` only for ``allowed_hosts`` (none by default), without following
    redirects. Anything else -- and any missing or unreadable file -- raises
    :class:`AssetRefused`, which stops the render.

    File contents are cached per instance, keyed by path, mtime and size, so a
    batch does not re-read fonts and logos for every document.
    """

    def __init__(
        self,
        roots: Sequence[str | os.PathLike[str]],
        allowed_hosts: Sequence[str] = (),
        *,
        timeout: float = 10,
        max_asset_bytes: int = 50_000_000,
        cache_bytes: int = 64_000_000,
    ) -> None:
        super().__init__(timeout=timeout, allow_redirects=False, fail_on_errors=True)
        if isinstance(allowed_hosts, str):
            raise TypeError("allowed_hosts must be a sequence of host names, not a string")
        self.roots: tuple[Path, ...] = tuple(Path(root).resolve() for root in roots)
        self.allowed_hosts: frozenset[str] = frozenset(h.strip().lower() for h in allowed_hosts)
        self.max_asset_bytes = max_asset_bytes
        self._cache_limit = cache_bytes
        self._cache: OrderedDict[tuple[Path, int, int], bytes] = OrderedDict()
        self._cache_size = 0
        self._lock = threading.Lock()
        self._local = threading.local()

    def __reduce__(self) -> tuple[Any, ...]:
        # Batch workers get a fresh fetcher (locks, caches and the opener stay behind).
        return (
            _rebuild_fetcher,
            (self.roots, tuple(sorted(self.allowed_hosts)), self._timeout,
             self.max_asset_bytes, self._cache_limit),
        )

    def __repr__(self) -> str:
        roots = ", ".join(str(root) for root in self.roots)
        hosts = ", ".join(sorted(self.allowed_hosts)) or "none"
        return f"<PackFetcher roots=[{roots}] allowed_hosts=[{hosts}]>"

    @property
    def policy(self) -> tuple[tuple[Path, ...], frozenset[str]]:
        """What this fetcher allows; part of every cache key built on it."""
        return self.roots, self.allowed_hosts

    # WeasyPrint calls fetch(url) for every image, stylesheet, font and attachment.
    def fetch(self, url: str, headers: Mapping[str, str] | None = None) -> URLFetcherResponse:
        """Serve ``url`` or raise :class:`AssetRefused` (noted for the current render)."""
        try:
            return self._fetch(url, headers)
        except AssetRefused as exc:
            self._note(exc)
            raise
        except (OSError, ValueError, RuntimeError) as exc:  # RuntimeError: symlink loop
            refused = AssetRefused(
                f"cannot fetch {self.describe(url)}: {type(exc).__name__}: {exc}", url
            )
            self._note(refused)
            raise refused from exc

    def describe(self, url: str) -> str:
        """``url`` for messages: the path relative to its root when it is a pack file."""
        path = self._path_of(url)
        if path is not None:
            try:
                resolved = path.resolve()
            except (OSError, RuntimeError):
                return url
            for root in self.roots:
                if resolved.is_relative_to(root):
                    return f"{resolved.relative_to(root).as_posix()} ({url})"
        return url

    # -- per-render bookkeeping (thread-local: one fetcher serves many threads)

    @contextlib.contextmanager
    def _session(self) -> Iterator[_Session]:
        previous = getattr(self._local, "session", None)
        session = _Session()
        self._local.session = session
        try:
            yield session
        finally:
            self._local.session = previous

    def _note(self, refused: AssetRefused) -> None:
        session: _Session | None = getattr(self._local, "session", None)
        if session is not None:
            session.failures.append(refused)

    # -- schemes

    def _fetch(self, url: str, headers: Mapping[str, str] | None) -> URLFetcherResponse:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme == "data":
            return super().fetch(url, headers)
        if scheme == "file":
            return self._fetch_file(url)
        if scheme in ("http", "https"):
            host = (parts.hostname or "").lower()
            if host not in self.allowed_hosts:
                raise AssetRefused(
                    f"network fetch refused: host {host!r} is not in security.allowed_hosts "
                    f"({url})",
                    url,
                )
            return self._fetch_http(url, headers)
        raise AssetRefused(f"URL scheme {scheme or '(none)'!r} is not allowed: {url}", url)

    @staticmethod
    def _path_of(url: str) -> Path | None:
        try:
            parts = urlsplit(url)
        except ValueError:
            return None
        if parts.scheme.lower() != "file" or parts.netloc not in ("", "localhost"):
            return None
        path = Path(url2pathname(parts.path))
        return path if path.is_absolute() else None

    def _root_of(self, path: Path) -> Path | None:
        return next((root for root in self.roots if path.is_relative_to(root)), None)

    def _fetch_file(self, url: str) -> URLFetcherResponse:
        path = self._path_of(url)
        if path is None:
            raise AssetRefused(f"file URL refused (host or relative path): {url}", url)
        try:
            resolved = path.resolve(strict=True)
        except (OSError, RuntimeError):
            # Say "missing" only for paths inside the pack; outside, existence is no one's business.
            if self._root_of(Path(os.path.realpath(path))) is None:
                raise AssetRefused(f"asset outside the pack refused: {url}", url) from None
            raise AssetRefused(f"asset not found: {self.describe(url)}", url) from None
        root = self._root_of(resolved)
        if root is None:
            raise AssetRefused(f"asset outside the pack refused: {url}", url)
        if not resolved.is_file():
            raise AssetRefused(f"asset is not a file: {self.describe(url)}", url)
        data = self._read(resolved, url)
        content_type = mimetypes.guess_type(path.name)[0]
        headers = {"Content-Type": content_type} if content_type else {}
        return URLFetcherResponse(url, data, headers, 200)

    def _read(self, path: Path, url: str) -> bytes:
        stat = path.stat()
        key = (path, stat.st_mtime_ns, stat.st_size)
        session: _Session | None = getattr(self._local, "session", None)
        if session is not None:
            session.deps[path] = key[1:]
        with self._lock:
            data = self._cache.get(key)
            if data is not None:
                self._cache.move_to_end(key)
                return data
        if stat.st_size > self.max_asset_bytes:
            raise AssetRefused(
                f"asset larger than {self.max_asset_bytes} bytes: {self.describe(url)}", url
            )
        data = path.read_bytes()
        with self._lock:
            if key not in self._cache and len(data) <= self._cache_limit:
                self._cache[key] = data
                self._cache_size += len(data)
                while self._cache_size > self._cache_limit:
                    _, dropped = self._cache.popitem(last=False)
                    self._cache_size -= len(dropped)
        return data

    def _fetch_http(self, url: str, headers: Mapping[str, str] | None) -> URLFetcherResponse:
        try:
            response = super().fetch(url, headers)
        except HTTPError as exc:
            exc.close()  # it holds the open connection
            status = f"HTTP {exc.code} {exc.reason}"
        else:
            status = ""
        if status:  # redirects land here too: they are not followed
            raise AssetRefused(f"cannot fetch {url}: {status}", url)
        try:
            data = response.read(self.max_asset_bytes + 1)
        finally:
            response.close()
        if len(data) > self.max_asset_bytes:
            raise AssetRefused(f"asset larger than {self.max_asset_bytes} bytes: {url}", url)
        return URLFetcherResponse(response.url, data, response.headers, response.status)


def _rebuild_fetcher(
    roots: tuple[Path, ...], hosts: tuple[str, ...], timeout: float, max_bytes: int, cache: int
) -> PackFetcher:
    return PackFetcher(
        roots, hosts, timeout=timeout, max_asset_bytes=max_bytes, cache_bytes=cache
    )


# --- shared parse state -------------------------------------------------------


class _SharedFontConfiguration(FontConfiguration):  # type: ignore[misc]
    """A FontConfiguration that asks the fetcher about every ``@font-face`` it sees.

    WeasyPrint registers a face once and afterwards skips the fetch for an
    identical rule, whoever asks; shared across packs, that would hand one
    pack's fonts to another pack's template by absolute URL. Fetching through
    the current fetcher first keeps its policy (the bytes are cached).
    """

    def add_font_face(self, rule_descriptors: Any, url_fetcher: Any) -> Any:
        if isinstance(url_fetcher, PackFetcher):
            for font_type, url in rule_descriptors.get("src", ()):
                if font_type == "external" and url:
                    url_fetcher.fetch(url).close()
        return super().add_font_face(rule_descriptors, url_fetcher)


_font_lock = threading.Lock()
_font_config: Any = None


def harfbuzz_subset() -> bool:
    """Whether WeasyPrint can subset fonts with HarfBuzz (``libharfbuzz-subset0`` >= 4.1).

    Without it WeasyPrint falls back to fontTools and every PDF takes about three
    times as long; ``ccm doctor`` reports it and the first PDF render warns.
    """
    try:
        from weasyprint.text.ffi import harfbuzz
        from weasyprint.text.ffi import harfbuzz_subset as subset
    except ImportError:  # pragma: no cover - weasyprint is a core dependency
        return False
    return subset is not None and bool(harfbuzz.hb_version_atleast(4, 1, 0))


_warned_subset = False


def _warn_without_harfbuzz_subset() -> None:
    """Warn once per process when PDFs are made without the HarfBuzz subsetter."""
    global _warned_subset
    if _warned_subset:
        return
    _warned_subset = True
    if not harfbuzz_subset():
        warnings.warn(
            "WeasyPrint cannot find the HarfBuzz subsetter (libharfbuzz-subset0), so it "
            "subsets fonts with fontTools and every PDF takes about three times as long; "
            "install it (Debian/Ubuntu: apt-get install libharfbuzz-subset0) and see "
            "`ccm doctor`", RuntimeWarning, stacklevel=3)


def font_config() -> Any:
    """The process's shared ``weasyprint.text.fonts.FontConfiguration``.

    ``@font-face`` rules are registered into it when a stylesheet is parsed, so
    parsed stylesheets can be reused only with the same configuration. A
    forked child gets a new one (the parent owns the font folder).
    """
    global _font_config
    with _font_lock:
        if _font_config is None:
            _font_config = _SharedFontConfiguration()
        return _font_config


@dataclass
class _CachedCss:
    css: Any
    deps: dict[Path, tuple[int, int]]


_css_lock = threading.Lock()
_css_cache: OrderedDict[tuple[Any, ...], _CachedCss] = OrderedDict()
# @counter-style and @color-profile rules of a parsed stylesheet live outside the CSS
# object; render_document hands them back to WeasyPrint.
_css_extras: weakref.WeakKeyDictionary[Any, tuple[dict[str, Any], dict[str, Any]]] = (
    weakref.WeakKeyDictionary()
)


def _forget_after_fork() -> None:
    # The parent owns the font folder (FontConfiguration.__del__ deletes it) and the
    # cached stylesheets registered their fonts in the parent's configuration; a lock
    # held by another parent thread at fork time would never be released here.
    global _font_config, _font_lock, _css_lock
    _font_lock = threading.Lock()
    _css_lock = threading.Lock()
    if _font_config is not None:
        _font_config._folder = None
    _font_config = None
    _css_cache.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


def _unchanged(deps: Mapping[Path, tuple[int, int]]) -> bool:
    for path, (mtime, size) in deps.items():
        try:
            stat = path.stat()
        except OSError:
            return False
        if (stat.st_mtime_ns, stat.st_size) != (mtime, size):
            return False
    return True


def load_stylesheet(path: str | os.PathLike[str], fetcher: PackFetcher) -> Any:
    """Parse a pack stylesheet through ``fetcher``, reusing the parsed result.

    The cache (LRU, per process) is keyed by the resolved path and the
    fetcher's policy, and an entry is reused only while the file and
    everything it pulled in (``@import``, ``@font-face`` files) keep their
    mtime and size. Raises :class:`~ccm.errors.AssetError` like a render.
    """
    resolved = Path(path).resolve()
    key = (resolved, *fetcher.policy)
    with _css_lock:
        hit = _css_cache.get(key)
        if hit is not None:
            _css_cache.move_to_end(key)
    if hit is not None and _unchanged(hit.deps):
        return hit.css
    counter_style = CounterStyle()
    color_profiles: dict[str, Any] = {}
    with fetcher._session() as session:
        try:
            css = weasyprint.CSS(
                url=resolved.as_uri(),
                url_fetcher=fetcher,
                font_config=font_config(),
                counter_style=counter_style,
                color_profiles=color_profiles,
            )
        except AssetRefused as exc:
            raise exc.to_error() from exc
        except FatalURLFetchingError as exc:
            raise _fatal_to_error(exc, session) from exc
        except CCMError:
            raise
        except Exception as exc:
            raise RenderError(
                f"cannot parse stylesheet {fetcher.describe(resolved.as_uri())}: {exc}",
                channel="pdf", path=str(resolved),
            ) from exc
    if session.failures:
        raise session.failures[0].to_error()
    _css_extras[css] = (dict(counter_style), color_profiles)
    with _css_lock:
        _css_cache[key] = _CachedCss(css, dict(session.deps))
        _css_cache.move_to_end(key)
        while len(_css_cache) > _CSS_CACHE_SIZE:
            _css_cache.popitem(last=False)
    return css


def _fatal_to_error(exc: BaseException, session: _Session) -> AssetError:
    # WeasyPrint wraps unexpected fetcher exceptions (fail_on_errors) in a plain
    # FatalURLFetchingError; the fetcher noted the underlying refusal.
    if session.failures:
        return session.failures[0].to_error()
    return AssetError(f"asset fetch failed: {exc}", url=None)


# --- linked pack stylesheets, parsed once -------------------------------------

# A statement links the pack's stylesheet (``<link rel="stylesheet"
# href="layouts/pdf.css">``); WeasyPrint would parse it -- tokenise, validate,
# compile every selector -- for every document, ~10 ms for an 8 KB sheet.
# Handing WeasyPrint a parsed copy through ``stylesheets=`` is no substitute:
# those are *user* stylesheets, which lose to every author rule whatever its
# specificity. So while ccm renders on a thread, WeasyPrint's ``CSS`` in
# ``weasyprint.css`` (used there for ``<link>``, ``<style>`` and ``@import``)
# is answered for a ``<link>`` to a ``.css`` file inside the fetcher's roots
# with :func:`load_stylesheet`'s cached parse: same origin (author), same
# order, same fonts; everything else goes to WeasyPrint unchanged.

_reuse = threading.local()
_weasy_css = weasyprint.CSS


def _linked_css(*args: Any, **kwargs: Any) -> Any:
    fetcher: PackFetcher | None = getattr(_reuse, "fetcher", None)
    url = kwargs.get("url")
    if (
        fetcher is not None
        and not args
        and kwargs.get("_check_mime_type")  # only find_stylesheets' <link> call sets it
        and isinstance(url, str)
        and kwargs.get("matcher") is None
        and kwargs.get("layer") is None
        and kwargs.get("media_type", "print") == "print"
        and kwargs.get("font_config") is font_config()
    ):
        path = fetcher._path_of(url)
        resolved = _pack_file(fetcher, path) if path is not None else None
        if resolved is not None and resolved.suffix.lower() == ".css":
            css = load_stylesheet(resolved, fetcher)
            if not css.layers:  # @layer order is shared across a document's sheets
                counters, profiles = _css_extras.get(css, ({}, {}))
                if kwargs.get("counter_style") is not None:
                    kwargs["counter_style"].update(counters)
                if kwargs.get("color_profiles") is not None:
                    kwargs["color_profiles"].update(profiles)
                return css
    return _weasy_css(*args, **kwargs)


def _pack_file(fetcher: PackFetcher, path: Path) -> Path | None:
    """``path`` resolved when it is a file the fetcher serves, else ``None``."""
    try:
        resolved = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if fetcher._root_of(resolved) is None or not resolved.is_file():
        return None
    return resolved


def _install_linked_css() -> None:
    import weasyprint.css as weasy_css

    if getattr(weasy_css, "CSS", None) is _weasy_css:
        weasy_css.CSS = _linked_css


@contextlib.contextmanager
def _reusing_stylesheets(fetcher: PackFetcher) -> Iterator[None]:
    previous = getattr(_reuse, "fetcher", None)
    _reuse.fetcher = fetcher
    try:
        yield
    finally:
        _reuse.fetcher = previous


# --- layout -------------------------------------------------------------------


class _Budget:
    """Interrupts layout with :class:`BudgetError` at a ``time.monotonic()`` deadline."""

    def __init__(self, deadline: float | None) -> None:
        self.deadline = deadline
        self.seconds = 0.0 if deadline is None else deadline - time.monotonic()
        self.expired = False
        self._armed = False
        self._previous_handler: Any = None
        self._previous_timer = (0.0, 0.0)
        self._started = 0.0

    def error(self) -> BudgetError:
        return BudgetError(
            f"PDF layout exceeded {max(self.seconds, 0.0):.1f} s", channel="pdf",
            budget_seconds=round(max(self.seconds, 0.0), 3),
        )

    def check(self) -> None:
        """Raise when the deadline has passed (also where no alarm can be used)."""
        if self.expired or (self.deadline is not None and time.monotonic() >= self.deadline):
            self.expired = True
            raise self.error()

    def _on_alarm(self, signum: int, frame: FrameType | None) -> None:
        if self._armed:
            self.expired = True
            if _inside_gc_callback(frame):
                # An exception raised in a gc callback is only printed as
                # "ignored"; the repeating alarm raises again outside it.
                return
            raise self.error()

    def __enter__(self) -> _Budget:
        self.check()
        if (
            self.deadline is None
            or not hasattr(signal, "setitimer")
            or threading.current_thread() is not threading.main_thread()
        ):
            return self
        try:
            self._previous_handler = signal.signal(signal.SIGALRM, self._on_alarm)
        except ValueError:  # not the main interpreter
            return self
        self._started = time.monotonic()
        self._armed = True
        # Repeat after the deadline: an alarm raised inside one of WeasyPrint's
        # broad ``except`` clauses is swallowed, the next one gets through.
        self._previous_timer = signal.setitimer(
            signal.ITIMER_REAL, max(self.deadline - self._started, 1e-6), _ALARM_REPEAT
        )
        return self

    def __exit__(self, *exc_info: object) -> None:
        if not self._armed:
            return
        self._armed = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        previous = self._previous_handler
        signal.signal(signal.SIGALRM, previous if previous is not None else signal.SIG_DFL)
        delay, interval = self._previous_timer
        if delay > 0:  # someone else's alarm: re-arm it with what is left
            left = delay - (time.monotonic() - self._started)
            signal.setitimer(signal.ITIMER_REAL, max(left, 1e-6), interval)


def _inside_gc_callback(frame: FrameType | None) -> bool:
    """True when ``frame`` runs inside one of ``gc.callbacks`` (exceptions vanish there)."""
    codes = {getattr(cb, "__code__", None) for cb in gc.callbacks}
    codes.discard(None)
    while codes and frame is not None:
        if frame.f_code in codes:
            return True
        frame = frame.f_back
    return False


def _html_too_big(html: str, limit: int) -> bool:
    if len(html) > limit:
        return True
    if len(html) * 4 <= limit:
        return False
    return len(html.encode("utf-8", "surrogatepass")) > limit


def render_document(
    html: str,
    *,
    base_url: str,
    fetcher: PackFetcher,
    stylesheets: Sequence[Any] = (),
    deadline: float | None = None,
    max_html_bytes: int = DEFAULT_MAX_HTML_BYTES,
) -> Any:
    """Parse and lay out ``html``; returns a ``weasyprint.Document``.

    Every URL goes through ``fetcher``; any refused or missing asset raises
    :class:`~ccm.errors.AssetError`. ``deadline`` is a ``time.monotonic()``
    value: on the main thread a ``SIGALRM`` timer interrupts layout when it
    passes (the previous handler and timer are restored), elsewhere it is
    checked before and after. Both, and HTML over ``max_html_bytes``, raise
    :class:`~ccm.errors.BudgetError`. ``stylesheets`` should come from
    :func:`load_stylesheet`, parsed with the same :func:`font_config`; they
    apply as *user* CSS. A stylesheet the HTML links (a ``.css`` file inside
    the fetcher's roots) is taken from the same cache instead of being
    parsed again, and applies as author CSS, where the link puts it.
    """
    if _html_too_big(html, max_html_bytes):
        raise BudgetError(
            f"PDF HTML is larger than {max_html_bytes} bytes", channel="pdf",
            max_html_bytes=max_html_bytes,
        )
    counter_style = CounterStyle()
    color_profiles: dict[str, Any] = {}
    for css in stylesheets:
        counters, profiles = _css_extras.get(css, ({}, {}))
        counter_style.update(counters)
        color_profiles.update(profiles)
    _warn_without_harfbuzz_subset()
    budget = _Budget(deadline)
    _install_linked_css()
    with fetcher._session() as session, _reusing_stylesheets(fetcher):
        try:
            with budget:
                document = weasyprint.HTML(
                    string=html, base_url=base_url, url_fetcher=fetcher
                ).render(
                    font_config=font_config(),
                    counter_style=counter_style,
                    color_profiles=color_profiles,
                    stylesheets=list(stylesheets),
                )
        except BudgetError:
            raise
        except AssetRefused as exc:
            if budget.expired:
                raise budget.error() from exc
            raise exc.to_error() from exc
        except FatalURLFetchingError as exc:
            if budget.expired:
                raise budget.error() from exc
            raise _fatal_to_error(exc, session) from exc
        except CCMError:
            raise
        except Exception as exc:
            if budget.expired:
                raise budget.error() from exc
            raise RenderError(
                f"PDF layout failed: {type(exc).__name__}: {exc}", channel="pdf"
            ) from exc
    budget.check()
    if session.failures:
        raise session.failures[0].to_error()
    return document


# --- writing ------------------------------------------------------------------


def _attachment(name: str, data: bytes, media_type: str) -> Any:
    if not name or "/" in name or "\\" in name:
        raise ValueError(f"attachment name must be a plain file name, got {name!r}")
    # A data: URL is the public way to hand WeasyPrint bytes *with* a media type.
    url = f"data:{media_type};base64,{base64.b64encode(data).decode('ascii')}"
    return weasyprint.Attachment(
        url=url,
        url_fetcher=URLFetcher(allowed_protocols=("data",), fail_on_errors=True),
        name=name,
        description=name,
        relationship="Data",
    )


@functools.cache
def _srgb_icc() -> bytes:
    return (files("weasyprint.pdf") / "sRGB2014.icc").read_bytes()


def _output_intent(target: Any, variant: str | None) -> str | None:
    """Give PDF/A its sRGB output intent ourselves; ``None`` when the variant has none.

    WeasyPrint would open its sRGB profile and never close the file (a
    ResourceWarning per archival PDF); a fresh profile per write also keeps
    concurrent writes from sharing its ``pdf_reference``.
    """
    if variant is None or VARIANTS[variant][1].get("output_intent") != "srgb":
        return None
    key = "ccm-srgb"
    target.color_profiles[key] = ColorProfile(
        io.BytesIO(_srgb_icc()), "sRGB2014.icc", "relative-colorimetric", (["r"], ["g"], ["b"])
    )
    target.output_intent = key
    return key


def _check_info_keys(metadata: Mapping[str, str]) -> None:
    for key in metadata:
        if not _INFO_KEY.fullmatch(key) or key in _STANDARD_INFO_KEYS:
            raise ValueError(f"custom PDF metadata key not allowed: {key!r}")


def _info_finisher(metadata: Mapping[str, str]) -> Any:
    _check_info_keys(metadata)

    def finish(document: Any, pdf: Any) -> None:
        # WeasyPrint's custom_metadata strips ':' and '-' from keys; set them as given.
        for key, value in metadata.items():
            pdf.info[key] = pydyf.String(str(value))

    return finish


def write_pdf(
    document: Any,
    *,
    title: str,
    author: str,
    lang: str,
    subject: str | None = None,
    variant: str | None = None,
    attachments: Sequence[tuple[str, bytes, str]] = (),
    metadata: Mapping[str, str] = _NO_METADATA,
) -> bytes:
    """Draw ``document`` (from :func:`render_document`) as tagged PDF bytes.

    ``title``, ``author`` (the brand name), ``lang`` and ``subject`` replace
    what the HTML declared; ``metadata`` adds document-info keys as given
    (e.g. ``ccm:archival-sha256``). ``variant`` is a WeasyPrint PDF variant
    such as ``"pdf/a-3b"``; ``attachments`` are ``(file name, bytes, media
    type)`` embedded as associated files (``/AFRelationship /Data``).
    Attachments declared in the HTML are not embedded.

    The document is not modified, so it can be written again (archival copy,
    then delivery copy).
    """
    if not lang:
        raise ValueError("lang is required: a tagged PDF declares its language")
    if variant is not None and variant not in VARIANTS:
        raise ValueError(f"unknown PDF variant {variant!r}; known: {', '.join(sorted(VARIANTS))}")
    finisher = _info_finisher(metadata)
    files = [_attachment(name, data, media_type) for name, data, media_type in attachments]

    # Write a copy: WeasyPrint adds the sRGB profile of PDF/A to color_profiles,
    # and HTML <link rel=attachment> sources can only be read once.
    info = copy.copy(document.metadata)
    info.title = title
    info.authors = [author]
    info.lang = lang
    info.description = subject
    info.attachments = []
    info.custom = {}
    info.xmp_metadata = list(info.xmp_metadata)
    target = document.copy()
    target.metadata = info
    target.color_profiles = dict(document.color_profiles)
    options: dict[str, Any] = {}
    if (intent := _output_intent(target, variant)) is not None:
        options["output_intent"] = intent

    fetcher = document.url_fetcher
    session_of = fetcher._session if isinstance(fetcher, PackFetcher) else contextlib.nullcontext
    with session_of() as session:
        try:
            pdf: bytes = target.write_pdf(
                finisher=finisher, pdf_tags=True, pdf_variant=variant, attachments=files,
                **options,
            )
        except AssetRefused as exc:
            raise exc.to_error() from exc
        except FatalURLFetchingError as exc:
            raise _fatal_to_error(exc, session or _Session()) from exc
        except CCMError:
            raise
        except Exception as exc:
            raise RenderError(
                f"PDF writing failed: {type(exc).__name__}: {exc}", channel="pdf"
            ) from exc
    if session is not None and session.failures:
        raise session.failures[0].to_error()
    return pdf


def delivery_from_archival(metadata: Mapping[str, str] = _NO_METADATA) -> Any:
    """An ``edit`` for :func:`ccm.render.security.encrypt_pdf`: archival copy in, delivery PDF out.

    The PDF/A-3b archival copy from :func:`write_pdf` and the tagged delivery
    PDF share everything a reader sees -- pages, fonts, structure tree,
    title, author, language -- and differ only in what PDF/A adds: the
    embedded request (``/AF``, ``/Names /EmbeddedFiles``), the XMP packet that
    claims PDF/A conformance and the sRGB output intent. Removing those from
    the archival copy while encrypting it gives the delivery PDF without
    drawing and serialising the document a second time (WeasyPrint's
    ``write_pdf`` is the dear part); ``metadata`` adds document-info keys
    as :func:`write_pdf` does. The returned callable takes a ``pikepdf.Pdf``.
    """
    _check_info_keys(metadata)
    custom = dict(metadata)

    def edit(pdf: Any) -> None:
        import pikepdf

        root = pdf.Root
        for key in ("/AF", "/Metadata", "/OutputIntents"):
            if key in root:
                del root[key]
        names = root.get("/Names")
        if names is not None and "/EmbeddedFiles" in names:
            del names["/EmbeddedFiles"]
            if not names.keys():
                del root["/Names"]
        for key, value in custom.items():
            pdf.docinfo[pikepdf.Name("/" + key)] = pikepdf.String(str(value))

    return edit
