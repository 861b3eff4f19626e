"""Small helpers shared by several modules (no ccm imports beyond errors)."""

from __future__ import annotations

import contextlib
import csv
import gc
import hashlib
import json
import os
import re
import tempfile
import threading
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

from ccm._files import read_contained

__all__ = [
    "PHONE_NUMBER", "YOUNG_THRESHOLD", "atomic_write", "checked_clock", "csv_cell",
    "fewer_collections", "json_encoder_once", "on_roomy_stack", "portable_name",
    "safe_filename", "sha256_files", "unique_filename", "write_csv",
]

T = TypeVar("T")


def checked_clock(clock: Callable[[], Any], owner: str) -> Callable[[], Any]:
    """``clock``, each reading checked: an aware datetime, else a
    :class:`~ccm.errors.ConfigError` naming ``owner``'s clock (``Engine(clock=...)``):
    the contact policy, message ids, due times and record times all need the zone."""
    from datetime import datetime

    from ccm.errors import ConfigError

    def now() -> Any:
        value = clock()
        if isinstance(value, datetime) and value.utcoffset() is not None:
            return value
        what = "a naive datetime" if isinstance(value, datetime) else type(value).__name__
        raise ConfigError(
            f"{owner}(clock=...) returned {what}: it must return an aware datetime, "
            "e.g. datetime(2026, 6, 1, 12, tzinfo=UTC) or datetime.now(UTC)")

    return now

#: Something shaped like a phone number (seven digits or more, with the separators people
#: write): what a provider's reply may quote and what the record's clear event data may not
#: hold (:func:`ccm.delivery.transport.scrub`, :func:`ccm.record.entries.personal_data_in`).
PHONE_NUMBER = re.compile(r"(?<!\w)\+?\d(?:[ ().-]?\d){6,}(?!\w)")

#: The longest file name written, in bytes of UTF-8 (common file systems allow 255).
MAX_NAME_BYTES = 200
#: A name made only of characters that are kept as they are (ASCII letters, digits, ._-).
_PLAIN = re.compile(r"[A-Za-z0-9._-]*")
#: Characters kept besides letters, marks and digits of any script.
_KEEP = frozenset("._-")
#: Names Windows reserves for devices, whatever the extension or case (``nul.txt`` too).
_DEVICES = frozenset(
    {"con", "prn", "aux", "nul", "conin$", "conout$"}
    | {f"{dev}{n}" for dev in ("com", "lpt") for n in (*"0123456789", "¹", "²", "³")}
)
#: Cells a spreadsheet would read as a formula or a control (OWASP CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _keep(char: str) -> bool:
    return char in _KEEP or unicodedata.category(char)[0] in "LMN"


def safe_filename(name: str, *, max_bytes: int = MAX_NAME_BYTES) -> str:
    """Reduce ``name`` to a portable file name component.

    Letters, marks and digits of every script are kept (NFC), as are ``.``,
    ``_`` and ``-``; any other run of characters (path separators, NUL,
    controls, spaces, ``:*?"<>|``) becomes one ``_``. The result never
    starts with ``.`` or ``-`` nor ends with ``.`` or a space, is never a
    Windows device name (``CON``, ``LPT1.txt``...: prefixed with ``_``),
    is at most ``max_bytes`` bytes of UTF-8 (cut at a character boundary)
    and is never empty (``_``).

    Distinct names may give the same result (``C/1`` and ``C_1``): use
    :func:`unique_filename` where that matters.
    """
    if _PLAIN.fullmatch(name):  # the common case, already NFC: skip the per-character walk
        cleaned = name.lstrip(".-")
    else:
        out: list[str] = []
        for char in unicodedata.normalize("NFC", name):
            if _keep(char):
                out.append(char)
            elif not out or out[-1] != "_":
                out.append("_")
        cleaned = "".join(out).lstrip(".-")
    cleaned = _cut(cleaned, max(max_bytes, 8)).rstrip(". ")
    if not cleaned:
        return "_"
    if cleaned.split(".", 1)[0].casefold() in _DEVICES:
        cleaned = _cut("_" + cleaned, max(max_bytes, 8)).rstrip(". ")
    return cleaned


def unique_filename(*parts: str, suffix: str = "", max_bytes: int = MAX_NAME_BYTES) -> str:
    """A portable file name for ``parts`` that no other ``parts`` can have.

    The readable part is ``safe_filename`` of each part joined by ``-``; a
    short digest of the exact parts follows it, so ``C/1``, ``C_1`` and
    ``_C_1`` (or ``张伟10`` and ``李娜10``) name different files even where
    the readable parts meet, also on case-insensitive file systems (the
    digest is lower case). ``suffix`` (``.pdf``) is appended unchanged; the
    whole name stays within ``max_bytes`` bytes of UTF-8.
    """
    raw = "\0".join(parts).encode("utf-8", "surrogatepass")
    tag = "-" + hashlib.sha256(raw).hexdigest()[:12] + suffix
    room = max_bytes - len(tag.encode("utf-8"))
    if room < 8:
        raise ValueError(f"suffix too long for a {max_bytes}-byte file name")
    if _kept_whole(parts, room):  # the common case: every part stays as it is
        return "-".join(parts) + tag
    safe = [safe_filename(part, max_bytes=room) for part in parts]
    # Share the room fairly: a long customer id is cut, the template and locale stay whole.
    budget = room - (len(safe) - 1)
    order = sorted(range(len(safe)), key=lambda i: len(safe[i].encode("utf-8")))
    for done, i in enumerate(order):
        share = max(budget // (len(safe) - done), 1)
        safe[i] = _cut(safe[i], share).rstrip(". ") or "_"
        budget -= len(safe[i].encode("utf-8"))
    return safe_filename("-".join(safe), max_bytes=room) + tag


#: A part ``safe_filename`` keeps as it is, if it is short enough and no device name.
_KEPT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")


def _kept_whole(parts: tuple[str, ...], room: int) -> bool:
    """True when :func:`unique_filename`'s readable part is ``parts`` joined by ``-``.

    Each part is ASCII that ``safe_filename`` leaves alone (no leading ``.``/``-``,
    no trailing ``.``, no device name before its first dot) and at most an equal
    share of ``room``, so the fair sharing cuts nothing either.
    """
    share = (room - len(parts) + 1) // max(len(parts), 1)
    for part in parts:
        if (len(part) > share or _KEPT.fullmatch(part) is None or part[-1] == "."
                or part.split(".", 1)[0].casefold() in _DEVICES):
            return False
    return bool(parts)


def portable_name(name: str) -> str:
    """``name`` itself when it is already a portable file name, else :func:`unique_filename`.

    For names chosen by people (run ids, sample files): ``2025-10`` stays
    ``2025-10``, while ``a/b`` and ``a_b`` still name different files.
    """
    safe = safe_filename(name)
    return safe if safe == name else unique_filename(name)


def _cut(text: str, max_bytes: int) -> str:
    """``text`` cut to at most ``max_bytes`` bytes of UTF-8, at a character boundary."""
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text
    return data[:max_bytes].decode("utf-8", "ignore")


def csv_cell(value: object) -> object:
    """``value`` made safe for a CSV cell opened in a spreadsheet (OWASP CSV injection).

    A string starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage
    return gets a leading ``'`` so that it is shown as text, never run as a
    formula. Numbers and everything else pass unchanged.
    """
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def write_csv(target: IO[str], header: Sequence[str],
              rows: Iterable[Sequence[object]]) -> int:
    """Write ``header`` and ``rows`` as CSV that is safe to open in a spreadsheet; count the rows.

    Every cell goes through :func:`csv_cell`; ``None`` is an empty cell. Lines
    end in ``\\n``; a row with a carriage return inside a cell is written
    fully quoted, so that no reader takes the CR for the end of the line.
    """
    plain = csv.writer(target, lineterminator="\n")
    quoted = csv.writer(target, lineterminator="\n", quoting=csv.QUOTE_ALL)
    plain.writerow(header)
    count = 0
    for row in rows:
        cells = ["" if cell is None else csv_cell(cell) for cell in row]
        has_cr = any(isinstance(cell, str) and "\r" in cell for cell in cells)
        (quoted if has_cr else plain).writerow(cells)
        count += 1
    return count


def atomic_write(path: str | os.PathLike[str], data: bytes, *, replace: bool = True) -> Path:
    """Write ``data`` to ``path`` via a temp file + fsync + rename: never half written.

    With ``replace=False`` an existing ``path`` is left as it is and
    :class:`FileExistsError` is raised (the temp file is linked into place,
    which fails atomically when the name is taken).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".ccm-", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if replace:
            os.replace(tmp, target)
        else:
            _link_new(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename is None:
            exc.filename = str(target)  # a full disk names the file it could not write
        raise
    return target


def _link_new(tmp: str, target: Path) -> None:
    """Move ``tmp`` to ``target`` unless ``target`` exists (then :class:`FileExistsError`)."""
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise
    except OSError:  # no hard links on this file system: check, then rename
        if os.path.lexists(target):
            raise FileExistsError(17, "File exists", os.fspath(target)) from None
        os.replace(tmp, target)
        return
    os.unlink(tmp)


def sha256_files(root: Path, files: Iterable[Path]) -> str:
    """One SHA-256 over the relative names and bytes of ``files`` (sorted).

    Each file is read with :func:`ccm._files.read_contained`: a file that
    leaves ``root``, a FIFO or a device is refused, never hashed.
    """
    digest = hashlib.sha256()
    for path in sorted(set(files)):
        rel = path.relative_to(root).as_posix()
        digest.update(rel.encode() + b"\0")
        digest.update(hashlib.sha256(read_contained(path, root)).digest())
    return digest.hexdigest()


# Fewer cyclic garbage collections while a batch task or WeasyPrint runs.
#
# Inside :func:`fewer_collections` the young-generation threshold is
# :data:`YOUNG_THRESHOLD` instead of CPython's 700 allocations, so garbage is
# still collected (memory stays bounded; a worker's address-space budget still
# applies) but about fourteen times less often. Measured: a batch task's many
# short-lived objects per message made the collector take about 20 us of an
# SMS's ~200 us (about 2 us now); WeasyPrint's box trees, live until the
# document is written, were walked again and again, 6-12% of a statement's
# CPU. 10,000 gives the same saving as 25,000-100,000 with about half their
# extra peak memory (+14 MB instead of +22-25 MB, 24 statements). Nested and
# concurrent uses (threads) share one raise; the previous thresholds come back
# when the last one ends.

#: Young-generation threshold during batch tasks and PDF work (CPython's default is 700).
YOUNG_THRESHOLD = 10_000

_lock = threading.Lock()
_depth = 0
_saved: tuple[int, int, int] | None = None


@contextlib.contextmanager
def fewer_collections() -> Iterator[None]:
    """Raise the young-generation GC threshold for the duration of the block."""
    global _depth, _saved
    with _lock:
        if _depth == 0:
            current = gc.get_threshold()
            _saved = current
            if 0 < current[0] < YOUNG_THRESHOLD:  # 0: automatic collection is off
                gc.set_threshold(YOUNG_THRESHOLD, current[1], current[2])
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _saved is not None:
                if gc.get_threshold()[0] == YOUNG_THRESHOLD:  # nobody changed it meanwhile
                    gc.set_threshold(*_saved)
                _saved = None


# Deep calls on a roomy frame stack.
#
# CPython (3.11 and later) keeps Python frames on a per-thread stack made of
# chunks of 16 KiB, mapped (``mmap``) when a call does not fit in the current
# chunk and unmapped as soon as the frame at a chunk's start returns. Deeply
# recursive code whose depth swings across a chunk's end, as WeasyPrint's
# layout and drawing do, maps, faults in and unmaps a new chunk at every
# crossing: measured, about 3,700 page faults and 16-30 ms of system CPU per
# 2-3 page statement in a batch worker (about 900 and 7 ms in a process whose
# stack happened to sit elsewhere; issue 12). :func:`on_roomy_stack` calls
# through a function whose code declares an evaluation stack of just over
# 128 KiB (``co_stacksize``; it uses three slots of it), so CPython maps one
# chunk of 256 KiB for its frame, and the call's own frames, about 124 KiB of
# them, fit in the rest. The unused slots are never written, so their pages
# are never faulted in: about 7 us per call.

#: Evaluation stack slots declared by the runner's frame (8 bytes each): 128 KiB and a little.
_ROOMY_SLOTS = 128 * 1024 // 8 + 64


def _roomy_run(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return fn(*args, **kwargs)


# Declaring more stack than the code uses is safe: CPython only sizes the frame by it.
_roomy_run.__code__ = _roomy_run.__code__.replace(co_stacksize=_ROOMY_SLOTS)
_roomy = threading.local()


def on_roomy_stack(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)``, its frames on a stack chunk with about 124 KiB free.

    For deep recursive work (PDF layout and drawing); nested calls in the same
    thread run directly, on the chunk already there.
    """
    if getattr(_roomy, "active", False):
        return fn(*args, **kwargs)
    _roomy.active = True
    try:
        result: T = _roomy_run(fn, args, kwargs)
    finally:
        _roomy.active = False
    return result


def json_encoder_once(encoder: json.JSONEncoder) -> Callable[[Any], str] | None:
    """``encoder.encode`` without its per-call set-up, for acyclic values only.

    ``JSONEncoder.encode`` makes a C encoder (``c_make_encoder``) on every call; this
    makes it once, without the circular-reference check: give it only values known to be
    acyclic (flat, or depth-checked). ``encoder`` must not indent. None where json has
    no C speedups: use ``encoder.encode``.
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None or encoder.indent is not None:
        return None
    escape = (json.encoder.encode_basestring_ascii if encoder.ensure_ascii
              else json.encoder.encode_basestring)  # type: ignore[attr-defined]
    c_encode = make(None, encoder.default, escape, None, encoder.key_separator,
                    encoder.item_separator, encoder.sort_keys, encoder.skipkeys,
                    encoder.allow_nan)

    def encode(value: Any) -> str:
        return "".join(c_encode(value, 0))

    return encode


#: What ``json.dumps(..., ensure_ascii=False)`` leaves raw that a terminal acts on or UTF-8
#: cannot hold: DEL, C1 controls, bidi controls, lone surrogates (it escapes C0 itself).
_RAW_IN_JSON = re.compile("[\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def json_safe_text(text: str) -> str:
    """A JSON document from ``json.dumps(..., ensure_ascii=False)`` with what it leaves raw and
    a terminal acts on or UTF-8 cannot hold written as ``\\uXXXX`` escapes: the same JSON
    value, safe to print and to write as UTF-8 (CLI output, errors.jsonl)."""
    return _RAW_IN_JSON.sub(lambda found: f"\\u{ord(found.group()):04x}", text)

