"""The pack fetcher: WeasyPrint reads only the pack's files, ``data:`` and listed hosts."""

from __future__ import annotations

import contextlib
import logging
import mimetypes
import os
import re
import threading
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any, ClassVar
from urllib.error import HTTPError
from urllib.parse import urlsplit
from urllib.request import url2pathname

from weasyprint.urls import FatalURLFetchingError, URLFetcher, URLFetcherResponse

from ccm._files import contained, read_contained
from ccm.errors import AssetError, UnsafeFileError

_ROOTS_NOTE = " (a PDF reads only files of its pack and of its template's own folder)"

#: The opening bytes of the raster formats Pillow decodes for WeasyPrint (PNG, JPEG, GIF,
#: WebP, BMP, TIFF): the images whose pixels are counted before WeasyPrint decodes them.
_RASTER = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"RIFF", b"BM", b"II*\x00", b"MM\x00*")


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


#: The fetcher whose render (session) is open on this thread: WeasyPrint's log records
#: of images it left out name no fetcher.
_open = threading.local()


class _ImagesLeftOut(logging.Filter):
    """WeasyPrint logs an image it cannot read (a corrupt PNG, an SVG it refuses) or draw,
    and lays the page out without it: a statement would go out without its logo, or with
    the alt text in its place. This notes each as a failure of the render open on the
    thread, which then raises :class:`~ccm.errors.AssetError` like a missing file.
    The record still reaches WeasyPrint's handlers."""

    _WHAT: ClassVar[dict[str, str]] = {
        "Failed to load image at": "cannot read image",
        "Failed to render SVG image": "cannot draw SVG image",
        "Failed to load inline SVG": "cannot read inline SVG"}

    def filter(self, record: logging.LogRecord) -> bool:
        fetcher = getattr(_open, "fetcher", None)
        if fetcher is None or not isinstance(record.msg, str):
            return True
        for start, what in self._WHAT.items():
            if record.msg.startswith(start):
                args = record.args if isinstance(record.args, tuple) else ()
                url = str(args[0]) if args and start != "Failed to load inline SVG" else ""
                cause = args[-1] if args and isinstance(args[-1], BaseException) else None
                cause = getattr(cause, "__cause__", None) or cause
                where = f" {fetcher.describe(url)}" if url else ""
                why = f" ({type(cause).__name__})" if cause is not None else ""
                fetcher._note(AssetRefused(
                    f"{what}{where}{why}: check that the file is a valid PNG, JPEG, GIF, "
                    "WebP or SVG (WeasyPrint would leave it out of the PDF)", url))
                break
        return True


logging.getLogger("weasyprint").addFilter(_ImagesLeftOut())


@dataclass
class _Session:
    """What one render or stylesheet parse fetched, and what was refused."""

    failures: list[AssetRefused] = field(default_factory=list)
    deps: dict[Path, tuple[int, int]] = field(default_factory=dict)


class PackFetcher(URLFetcher):  # type: ignore[misc]
    """A WeasyPrint URL fetcher that serves only the pack's own files.

    ``roots`` are the folders whose files may be read (the engine gives the
    pack and the rendered template's own folder: the files approval's digest
    covers); a ``file:`` URL is served when its path, with symlinks resolved,
    lies inside one of them and passes no hidden name (``.x``, ``__pycache__``:
    no digest covers those). ``data:`` URLs are served; ``http`` and
    ``https`` only for ``allowed_hosts`` (none by default), without following
    redirects. Anything else -- and any missing or unreadable file -- raises
    :class:`AssetRefused`, which stops the render.

    A raster image (from a file, ``data:`` or a listed host) of more than
    ``max_image_pixels`` pixels is refused before WeasyPrint decodes it: a
    PNG of a few kilobytes can unpack to gigabytes.

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
        max_image_pixels: int = 40_000_000,
        cache_bytes: int = 64_000_000,
    ) -> None:
        super().__init__(timeout=timeout, allow_redirects=False, fail_on_errors=True)
        if isinstance(allowed_hosts, str):
            raise TypeError("allowed_hosts must be a sequence of host names, not a string")
        self.roots: tuple[Path, ...] = tuple(Path(root).resolve() for root in roots)
        self.allowed_hosts: frozenset[str] = frozenset(h.strip().lower() for h in allowed_hosts)
        self.max_asset_bytes = max_asset_bytes
        self.max_image_pixels = max_image_pixels
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
             self.max_asset_bytes, self._cache_limit, self.max_image_pixels),
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
        """``url`` for messages: the path relative to its root when it is a pack file; a
        ``data:`` URL by its type and length (it may hold anything, and be long)."""
        if url[:5].lower() == "data:":
            return f"a data: URL ({url[5:].split(',', 1)[0][:60]}, {len(url)} characters)"
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
        previous_open = getattr(_open, "fetcher", None)
        session = _Session()
        self._local.session = session
        _open.fetcher = self
        try:
            yield session
        finally:
            self._local.session = previous
            _open.fetcher = previous_open

    def _note(self, refused: AssetRefused) -> None:
        session: _Session | None = getattr(self._local, "session", None)
        if session is not None:
            session.failures.append(refused)

    # -- schemes

    def _fetch(self, url: str, headers: Mapping[str, str] | None) -> URLFetcherResponse:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme == "data":
            response = super().fetch(url, headers)
            data = response.read()
            self._check_pixels(data, url)
            return URLFetcherResponse(response.url, data, response.headers, response.status)
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
                raise AssetRefused(f"asset outside the pack refused: {url}{_ROOTS_NOTE}",
                                   url) from None
            raise AssetRefused(f"asset not found: {self.describe(url)}", url) from None
        root = self._root_of(resolved)
        if root is None:
            raise AssetRefused(f"asset outside the pack refused: {url}{_ROOTS_NOTE}", url)
        try:
            contained(path, root, listed=True)
        except UnsafeFileError as exc:
            raise AssetRefused(f"asset refused: {self.describe(url)}: {exc.reason}", url) from None
        if not resolved.is_file():
            raise AssetRefused(f"asset is not a file: {self.describe(url)}", url)
        data = self._read(resolved, url, root)  # pixels checked as it was read
        content_type = mimetypes.guess_type(path.name)[0]
        headers = {"Content-Type": content_type} if content_type else {}
        return URLFetcherResponse(url, data, headers, 200)

    def _read(self, path: Path, url: str, root: Path) -> bytes:
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
        try:
            data = read_contained(path, root, max_bytes=self.max_asset_bytes)
        except UnsafeFileError as exc:
            raise AssetRefused(f"asset refused: {self.describe(url)}: {exc.reason}", url) from None
        except OSError:
            raise AssetRefused(f"asset not found: {self.describe(url)}", url) from None
        # Checked once, before it is cached: a cached file is one that passed.
        self._check_pixels(data, url)
        with self._lock:
            if key not in self._cache and len(data) <= self._cache_limit:
                self._cache[key] = data
                self._cache_size += len(data)
                while self._cache_size > self._cache_limit:
                    _, dropped = self._cache.popitem(last=False)
                    self._cache_size -= len(dropped)
        return data

    def _check_pixels(self, data: bytes, url: str) -> None:
        """Refuse a raster image of more than ``max_image_pixels`` pixels (its header only
        is read); anything Pillow cannot identify is left to WeasyPrint, which fails it."""
        if not data.startswith(_RASTER):
            return
        from PIL import Image

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(BytesIO(data)) as image:
                    width, height = image.size
            size = f"{width} x {height} pixels"
        except Image.DecompressionBombError as exc:
            # Pillow stops before saying the width and height; its message has the count.
            count = re.search(r"\((\d+) pixels\)", str(exc))
            width, height = self.max_image_pixels + 1, 1
            size = (f"{int(count.group(1)):,} pixels" if count else
                    f"more than {2 * (Image.MAX_IMAGE_PIXELS or 0):,} pixels")
        except Exception:  # not an image Pillow reads: WeasyPrint reports it
            return
        if width * height > self.max_image_pixels:
            raise AssetRefused(
                f"image too large: {self.describe(url)} has {size}, more "
                f"than the limit of {self.max_image_pixels:,}; scale it down (an image is "
                "decoded whole before it is placed on the page)", url)

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
        self._check_pixels(data, url)
        return URLFetcherResponse(response.url, data, response.headers, response.status)


def _rebuild_fetcher(
    roots: tuple[Path, ...], hosts: tuple[str, ...], timeout: float, max_bytes: int, cache: int,
    max_pixels: int = 40_000_000,
) -> PackFetcher:
    return PackFetcher(
        roots, hosts, timeout=timeout, max_asset_bytes=max_bytes, cache_bytes=cache,
        max_image_pixels=max_pixels,
    )
