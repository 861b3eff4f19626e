"""Contained file reading: the one way ccm reads a pack's or a template's files.

Packs and templates come from designers and agencies, so their folders are
not trusted to hold only what they seem to. Every file a pack or template
reads -- Jinja sources, MJML includes, WeasyPrint assets, catalogs, the
files a digest covers -- goes through :func:`read_contained`, which

* resolves the path (symlinks included) and requires the result to lie
  inside the given root: a symlink to ``/etc/passwd``, to
  ``/proc/self/environ`` or to another folder is refused;
* opens it with ``O_NOFOLLOW | O_NONBLOCK`` and checks the *opened* file is
  a regular file (``S_ISREG`` on ``fstat``), so a FIFO never blocks the
  reader and a device (``/dev/zero``, ``/dev/urandom``) or socket is refused
  before a byte is read;
* refuses symlink loops and files over a size limit, reading at most the
  limit even when the file grows meanwhile;
* with ``listed=True`` (every reader of sources and assets at render time),
  refuses a path through a name :func:`contained_files` skips -- hidden
  (``.snip.j2``, ``.cache/``) or ``__pycache__`` -- as given or with symlinks
  resolved: a pack's digest, which approval signs, does not cover such files,
  so nothing that shapes a message may come from one.

Every refusal is an :class:`~ccm.errors.UnsafeFileError` naming the file
(its path as given, never its content). A missing file is a plain
:class:`FileNotFoundError`, which each reader reports in its own words
("template not found", "asset not found").
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path, PurePath, PurePosixPath

from ccm.errors import UnsafeFileError

__all__ = [
    "MAX_FILE_BYTES",
    "SKIPPED_DIRS",
    "contained",
    "contained_files",
    "read_contained",
    "read_contained_text",
    "unlisted_name",
]

#: Largest pack or template file read (fonts and images included), in bytes.
MAX_FILE_BYTES = 32 * 1024 * 1024

#: Folders :func:`contained_files` never descends, hidden ones aside.
SKIPPED_DIRS = ("__pycache__",)

_OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _refuse(path: str | os.PathLike[str], reason: str, root: Path) -> UnsafeFileError:
    return UnsafeFileError(f"{os.fspath(path)}: refused: {reason}", path=os.fspath(path),
                           reason=reason, root=str(root))


def _root(root: str | os.PathLike[str]) -> Path:
    return Path(os.path.realpath(root))


def unlisted_name(path: str | PurePath) -> str | None:
    """The first name in ``path`` that a listing skips: hidden (``.x``) or in :data:`SKIPPED_DIRS`.

    Such a file is no part of a pack or template: no digest covers it, so no
    render may read it (see ``listed`` in :func:`contained`).
    """
    path = PurePosixPath(path) if isinstance(path, str) else path
    return next((part for part in path.parts
                 if (part.startswith(".") and part not in (".", "..")) or part in SKIPPED_DIRS),
                None)


def contained(path: str | os.PathLike[str], root: str | os.PathLike[str], *,
              listed: bool = False) -> Path:
    """``path`` (relative to ``root`` unless absolute) resolved, or a refusal.

    Raises :class:`UnsafeFileError` when the resolved path leaves ``root`` or
    runs into a symlink loop, and with ``listed`` when, below ``root``, the
    path as given or resolved passes a hidden name (``.x``) or ``__pycache__``
    (the files a pack's digest skips). The file need not exist.
    """
    base = _root(root)
    candidate = Path(path)
    if not candidate.is_absolute():
        candidate = base / candidate
    try:
        resolved = candidate.resolve()
    except RuntimeError:  # Python < 3.13: "Symlink loop from ..."
        raise _refuse(path, "symlink loop", base) from None
    except OSError as exc:  # Python >= 3.13 raises ELOOP as OSError
        raise _refuse(path, f"cannot resolve ({exc.strerror})", base) from None
    if not resolved.is_relative_to(base):
        raise _refuse(path, f"resolves outside {base}", base)
    if listed:
        for form in (Path(os.path.normpath(candidate)), resolved):
            name = unlisted_name(form.relative_to(base)) if form.is_relative_to(base) else None
            if name is not None:
                what = "is hidden" if name.startswith(".") else "is a cache folder"
                raise _refuse(path, f"{name!r} {what}: hidden files and folders (and "
                              "__pycache__) are no part of a pack or template, nor of the "
                              "digest approval signs; rename it", base)
    return resolved


def read_contained(
    path: str | os.PathLike[str],
    root: str | os.PathLike[str],
    *,
    max_bytes: int = MAX_FILE_BYTES,
    listed: bool = False,
) -> bytes:
    """The bytes of the regular file ``path`` inside ``root``, at most ``max_bytes`` of them.

    Raises :class:`UnsafeFileError` for a path leaving ``root``, a symlink
    loop, anything but a regular file (FIFO, device, socket, folder), a file
    over ``max_bytes`` and, with ``listed``, a hidden one (see :func:`contained`);
    :class:`FileNotFoundError` when it is missing.
    """
    base = _root(root)
    resolved = contained(path, base, listed=listed)
    try:
        fd = os.open(resolved, _OPEN_FLAGS)
    except FileNotFoundError:
        raise
    except OSError as exc:
        # ELOOP: the last component became a symlink after it was resolved.
        raise _refuse(path, f"cannot open ({exc.strerror})", base) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _refuse(path, f"is {_kind(info.st_mode)}", base)
        if info.st_size > max_bytes:
            raise _refuse(path, f"{info.st_size} bytes, over the {max_bytes} byte limit", base)
        chunks: list[bytes] = []
        size = 0
        while True:
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > max_bytes:
                raise _refuse(path, f"over the {max_bytes} byte limit", base)
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_contained_text(
    path: str | os.PathLike[str],
    root: str | os.PathLike[str],
    *,
    max_bytes: int = MAX_FILE_BYTES,
    listed: bool = False,
) -> str:
    """:func:`read_contained` decoded as UTF-8 (a BOM dropped); undecodable text is refused."""
    data = read_contained(path, root, max_bytes=max_bytes, listed=listed)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _refuse(path, f"not UTF-8 text (byte {exc.start})", _root(root)) from None


def contained_files(
    root: str | os.PathLike[str],
    *,
    skip_hidden: bool = True,
    skip_dirs: Iterable[str] = SKIPPED_DIRS,
) -> list[Path]:
    """Every file under ``root`` (sorted walk), each checked before anyone reads it.

    Symlinks (to files or folders) must resolve inside ``root``; anything
    that is not a regular file or folder (FIFO, device, socket) is refused
    here, so a digest or a loader never opens it. Symlinked folders are not
    descended (their files are reached at their real place).
    """
    base = _root(root)
    skipped = set(skip_dirs)
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(base):
        here = Path(dirpath)
        keep = []
        for name in sorted(dirnames):
            if (skip_hidden and name.startswith(".")) or name in skipped:
                continue
            if (here / name).is_symlink():
                contained(here / name, base)
                continue
            keep.append(name)
        dirnames[:] = keep
        for name in sorted(filenames):
            if skip_hidden and name.startswith("."):
                continue
            path = here / name
            target = contained(path, base)
            try:
                mode = os.stat(target).st_mode
            except FileNotFoundError:
                raise _refuse(path, "dangling symlink", base) from None
            if stat.S_ISDIR(mode):
                continue  # a symlink to a folder inside the root
            if not stat.S_ISREG(mode):
                raise _refuse(path, f"is {_kind(mode)}", base)
            out.append(path)
    return out
