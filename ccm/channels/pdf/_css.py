"""Shared parse state: one font configuration per process, pack stylesheets parsed once."""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import weasyprint
from weasyprint.css.counters import CounterStyle
from weasyprint.text.fonts import FontConfiguration
from weasyprint.urls import FatalURLFetchingError

from ccm.channels.pdf._fetch import AssetRefused, PackFetcher, _Session
from ccm.errors import AssetError, CCMError, RenderError

#: Parsed stylesheets kept by :func:`load_stylesheet`.
_CSS_CACHE_SIZE = 64



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


def warn_without_harfbuzz_subset() -> None:
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
    _style_cache.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


def _cached(cache: OrderedDict[tuple[Any, ...], _CachedCss],
            key: tuple[Any, ...]) -> _CachedCss | None:
    """The entry under ``key``, most recently used now, while its files are unchanged."""
    with _css_lock:
        hit = cache.get(key)
        if hit is not None:
            cache.move_to_end(key)
    return hit if hit is not None and _unchanged(hit.deps) else None


def _remember(cache: OrderedDict[tuple[Any, ...], _CachedCss], key: tuple[Any, ...],
              entry: _CachedCss, size: int) -> None:
    """Keep ``entry`` under ``key``, dropping the least recently used beyond ``size``."""
    with _css_lock:
        cache[key] = entry
        cache.move_to_end(key)
        while len(cache) > size:
            cache.popitem(last=False)


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
    hit = _cached(_css_cache, key)
    if hit is not None:
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
    _remember(_css_cache, key, _CachedCss(css, dict(session.deps)), _CSS_CACHE_SIZE)
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


# The same for a ``<style>`` element: a layout's <style> is the same text for every
# document of a pack and locale (palette, @font-face rules, "Page x of y"), and
# parsing it -- with the @font-face fetches -- costs ≈ 1.5 ms per statement. Its
# parse is reused for the same text, base URL and fetcher policy while the files
# it pulled in are unchanged; text with @layer rules, or whose fetches were
# refused, is parsed per document as before. The sheet's page rules stay in the
# sheet (WeasyPrint would add them to a list it shares with the document's other
# non-reused sheets; every sheet's rules are applied all the same).

_STYLE_CACHE_SIZE = 64
_style_cache: OrderedDict[tuple[Any, ...], _CachedCss] = OrderedDict()
_STYLE_ARGUMENTS = frozenset({
    "string", "base_url", "url_fetcher", "media_type", "font_config", "counter_style",
    "page_rules", "color_profiles", "layers",
})


def _style_element_css(string: str, base_url: str, fetcher: PackFetcher) -> Any:
    """The parsed ``<style>`` text, reused; ``None`` when it must be parsed per document."""
    key = (string, base_url, *fetcher.policy)
    hit = _cached(_style_cache, key)
    if hit is not None:
        return hit.css
    counter_style = CounterStyle()
    color_profiles: dict[str, Any] = {}
    with fetcher._session() as session:
        css = _weasy_css(
            string=string, base_url=base_url, url_fetcher=fetcher, media_type="print",
            font_config=font_config(), counter_style=counter_style,
            color_profiles=color_profiles,
        )
    if session.failures:
        return None
    if css.layers:
        css = None  # remembered: WeasyPrint parses this text with the document's layers
    else:
        _css_extras[css] = (dict(counter_style), color_profiles)
    _remember(_style_cache, key, _CachedCss(css, dict(session.deps)), _STYLE_CACHE_SIZE)
    return css


def _reused(css: Any, kwargs: Mapping[str, Any]) -> Any:
    """``css`` after handing WeasyPrint its @counter-style and @color-profile rules."""
    counters, profiles = _css_extras.get(css, ({}, {}))
    if kwargs.get("counter_style") is not None:
        kwargs["counter_style"].update(counters)
    if kwargs.get("color_profiles") is not None:
        kwargs["color_profiles"].update(profiles)
    return css


def _linked_css(*args: Any, **kwargs: Any) -> Any:
    fetcher: PackFetcher | None = getattr(_reuse, "fetcher", None)
    url = kwargs.get("url")
    string = kwargs.get("string")
    if (
        fetcher is not None
        and not args
        and isinstance(string, str)
        and isinstance(kwargs.get("base_url"), str)
        and kwargs.keys() <= _STYLE_ARGUMENTS  # find_stylesheets' <style> call
        and kwargs.get("media_type", "print") == "print"
        and kwargs.get("font_config") is font_config()
        and kwargs.get("url_fetcher") is fetcher
        and isinstance(fetcher, PackFetcher)
    ):
        css = _style_element_css(string, kwargs["base_url"], fetcher)
        if css is not None:
            return _reused(css, kwargs)
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
                return _reused(css, kwargs)
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
