"""MJML to HTML: includes contained in the pack and template folders, compiled once per source."""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from mjml import mjml2html

from ccm._files import contained, read_contained_text
from ccm.errors import RenderError, UnsafeFileError

_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")

#: Elements nested deeper than this in an email's MJML, its ``mj-include`` files
#: counted on top, are refused before compiling. mjml-python parses and renders
#: recursively in native code: deep nesting overflows the thread's stack and
#: kills the process (measured: 10,000 ``<b>`` on an 8 MiB main thread; about
#: 110 nested ``mj-wrapper`` on a 512 KiB thread, macOS's default for threads).
#: 100 levels need under 512 KiB even nesting only MJML components; real
#: layouts nest 10-40 deep.
MAX_MJML_DEPTH = 100

# Elements mjml-python reads as empty (lowercase only: it nests <BR>).
_VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
                   "param", "source", "track", "wbr"})
_TAG_NAME = re.compile(r"[^\s/<>\"'=]*")
_IN_TAG = re.compile(r"[<>\"']")


def _refuse(path: str, reason: str) -> RenderError:
    return RenderError(f"mj-include {path!r} refused: {reason}", channel="email", path=path)


def _resolve_include(path: str, roots: Sequence[Path]) -> tuple[Path, Path]:
    """The file ``path`` names inside the first root that has it, and that root.

    Nothing outside the roots: resolution is :func:`ccm._files.contained`;
    nothing hidden either (``listed``): approval's digests do not cover it.
    """
    if not path.strip() or "\x00" in path:
        raise _refuse(path, "the path is empty or contains NUL")
    if _URL_SCHEME.match(path) or path.startswith("//"):
        raise _refuse(path, "URLs are not allowed")
    if "\\" in path:
        raise _refuse(path, "backslashes are not allowed")
    relative = PurePosixPath(path)
    if relative.is_absolute():
        raise _refuse(path, "absolute paths are not allowed")
    if ".." in relative.parts:
        raise _refuse(path, "'..' is not allowed")
    if not roots:
        raise _refuse(path, "no include folders are configured")
    for root in roots:
        base = root.resolve()
        try:
            candidate = contained(relative, base, listed=True)
        except UnsafeFileError as exc:
            # A symlink inside the folder that points out of it, or a loop.
            raise _refuse(path, f"{exc.reason} ({root})") from None
        if candidate.exists():
            return candidate, base
    searched = ", ".join(str(root) for root in roots)
    raise RenderError(
        f"mj-include {path!r} not found in {searched}", channel="email", path=path
    )


def _name_at(source: str, position: int) -> str:
    found = _TAG_NAME.match(source, position)
    return found.group() if found else ""


def markup_depth(source: str) -> int:
    """How deep elements nest in ``source``: never less than mjml-python's parse.

    One pass, linear in the length, no recursion. Where the markup is odd it
    counts more, never less: an end tag closes only the innermost element of
    its name, a start tag whose quote or ``>`` is missing counts as open, and
    so does an unterminated comment; text in quoted attribute values and in
    comments is skipped, as mjml-python skips it.
    """
    open_tags: list[str] = []
    deepest = 0
    last_comment_end = source.rfind("-->")  # so an unterminated comment costs no search
    i = source.find("<")
    while i != -1:
        if source.startswith("<!--", i) and last_comment_end >= i + 4:
            i = source.find("<", source.find("-->", i + 4) + 3)
            continue
        if source.startswith("</", i):
            name = _name_at(source, i + 2)
            if open_tags and open_tags[-1] == name.lower():
                open_tags.pop()
            i = source.find("<", i + 2)
            continue
        name = _name_at(source, i + 1)
        if not name:  # "a < b": mjml-python refuses it; read on from the next character
            i = source.find("<", i + 1)
            continue
        position, closed, empty = i + 1 + len(name), False, False
        while (found := _IN_TAG.search(source, position)) is not None:
            char = found.group()
            if char == ">":
                closed, empty = True, source[found.start() - 1] == "/"
                position = found.end()
                break
            if char == "<":  # a tag inside a tag: read it as a tag of its own
                position = found.start()
                break
            quote_end = source.find(char, found.end())
            if quote_end == -1:  # unterminated: read on from after the quote
                position = found.end()
                break
            position = quote_end + 1
        if not (closed and empty) and name not in _VOID:
            open_tags.append(name.lower())
            deepest = max(deepest, len(open_tags))
        i = source.find("<", position)
    return deepest


def _too_deep(depth: int, what: str) -> RenderError:
    return RenderError(
        f"{what} nests elements {depth} deep, more than the {MAX_MJML_DEPTH} "
        "mjml-python can compile safely; flatten the markup (a loop that opens tags "
        "without closing them does this)",
        channel="email",
    )


_Stamp = tuple[str, int, int]


def _compile(source: str, roots: tuple[Path, ...]) -> tuple[str, tuple[_Stamp, ...]]:
    """Compile and report which files were included (path, mtime, size) for the cache."""
    failures: list[RenderError] = []
    stamps: list[_Stamp] = []
    # Checked before mjml-python sees the source: too deep, it crashes the process.
    # An include nests inside the source (or another include), so depths add up.
    depth = markup_depth(source)
    if depth > MAX_MJML_DEPTH:
        raise _too_deep(depth, "the MJML")

    def load(path: str) -> str:
        nonlocal depth
        # mjml swallows the loader's exception into a generic message, so the
        # real reason is kept here and raised once mjml gives up.
        try:
            target, root = _resolve_include(path, roots)
            stat = target.stat()  # before reading: an edit after this forces a recompile
            content = read_contained_text(target, root, listed=True)
            depth += markup_depth(content)
            if depth > MAX_MJML_DEPTH:
                raise _too_deep(depth, f"the MJML with mj-include {path!r}")
        except RenderError as exc:
            failures.append(exc)
            raise
        except (OSError, UnicodeDecodeError, UnsafeFileError) as exc:
            error = RenderError(
                f"mj-include {path!r} cannot be read: {exc}", channel="email", path=path
            )
            failures.append(error)
            raise error from exc
        stamps.append((str(target), stat.st_mtime_ns, stat.st_size))
        return content

    try:
        # fonts={} drops mjml's default Google Fonts links: nothing is fetched
        # from outside the pack unless a template asks for it with mj-font.
        html = mjml2html(source, fonts={}, include_loader=load)
    except Exception as exc:  # mjml raises ValueError; a Rust panic surfaces as other types
        if failures:
            raise failures[0] from exc
        raise RenderError(f"MJML does not compile: {exc}", channel="email") from exc
    if failures:
        raise failures[0]
    return html, tuple(stamps)


def compile_mjml(source: str, *, include_roots: Sequence[Path] = ()) -> str:
    """Compile MJML to HTML; ``mj-include`` may only read files inside ``include_roots``.

    Include paths are relative paths without ``..``; URLs, absolute paths and
    symlinks leading out of a root are refused with :class:`RenderError`
    naming the path, as is any MJML error. Roots are searched in order.
    """
    return _compile(source, tuple(include_roots))[0]


class _CompileCache:
    """LRU of compiled HTML keyed by source digest and roots, checked against included files."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._entries: OrderedDict[tuple[str, tuple[str, ...]], tuple[str, tuple[_Stamp, ...]]]
        self._entries = OrderedDict()
        self._lock = threading.Lock()

    def get(self, source: str, roots: tuple[Path, ...]) -> str:
        digest = hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest()
        key = (digest, tuple(str(root) for root in roots))
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
        if entry is not None and _unchanged(entry[1]):
            return entry[0]
        # Compiled outside the lock: two threads may compile the same source once each.
        entry = _compile(source, roots)
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self.maxsize:
                self._entries.popitem(last=False)
        return entry[0]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def _unchanged(stamps: tuple[_Stamp, ...]) -> bool:
    for name, mtime, size in stamps:
        try:
            stat = Path(name).stat()
        except OSError:
            return False
        if (stat.st_mtime_ns, stat.st_size) != (mtime, size):
            return False
    return True


_cache = _CompileCache(maxsize=256)


def compile_mjml_cached(source: str, *, include_roots: Sequence[Path] = ()) -> str:
    """:func:`compile_mjml` with an LRU: an identical source is compiled once.

    An entry is reused only while the files it included are unchanged (same
    mtime and size), so a preview that edits a partial sees the edit.
    """
    return _cache.get(source, tuple(include_roots))


def clear_mjml_cache() -> None:
    """Forget every compiled source (tests, or after a pack is reloaded)."""
    _cache.clear()
