"""Streaming request readers for batch runs: JSONL and CSV, one row at a time.

Both readers yield :class:`InputRow` objects and never hold more than one row
in memory, so a 100k-line file costs what one line costs. A row that cannot be
read (bad JSON, a CSV row with the wrong number of cells or a cell over the
CSV reader's size limit) is yielded with its ``error`` set instead of stopping
the stream: the batch reports it and goes on.

CSV columns are dotted paths into the request: ``customer.id``,
``customer.address.city``, ``data.amount_due``. Cells are strings unless

* the column names a type, ``data.amount_due:number`` (``str``, ``int``,
  ``number``, ``bool``, ``json``);
* a JSON Schema for the request is given and declares the type at that path
  (the batch passes the template's data contract, so ``data.amount_due``
  becomes a number when the contract says so);
* the cell looks like a JSON array or object (``[...]``, ``{...}``).

Empty cells are left out, so optional fields may be blank.

Every format is read the same strict way (:func:`parse_json`, also for
``ccm render``): UTF-8 only (a BOM at the start is allowed; a UTF-16 or
UTF-32 file is refused as a whole, an undecodable line is an error row),
no ``NaN``/``Infinity``, integers of at most :data:`MAX_INT_DIGITS`
digits, nesting of at most :data:`MAX_DEPTH` levels, and each request must
be a JSON object: a line holding a string, a number or a list is an error
row. Error texts name the line and the rule, never the values read.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import os
import re
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ccm import _fastjson as fastjson

__all__ = [
    "MAX_DEPTH", "MAX_INT_DIGITS", "InputRow", "count_rows", "open_text", "parse_json",
    "read_csv", "read_jsonl", "read_requests", "request_customer_id",
]

_TYPES = ("str", "int", "number", "bool", "json")

#: Deepest nesting of objects and arrays a request may have (as validate_request).
MAX_DEPTH = 32
#: Most digits an integer in a request may have.
MAX_INT_DIGITS = 40
#: Largest ``.json`` document read whole (JSONL and CSV stream).
MAX_JSON_BYTES = 256 * 1024 * 1024

_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16"),
)


class _Refused(ValueError):
    """A value the strict reader does not accept (the message names the rule only)."""


class _BadJSON(ValueError):
    """Text that is not JSON; ``line`` is where in the text (1 for a JSONL line)."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.line = line


def _no_constant(name: str) -> Any:
    raise _Refused(f"{name} is not allowed (numbers must be finite)")


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _Refused(f"an integer has more than {MAX_INT_DIGITS} digits")
    return int(text)


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise _Refused("a number is too large (numbers must be finite)")
    return value


_DECODER = json.JSONDecoder(parse_constant=_no_constant, parse_int=_bounded_int,
                            parse_float=_finite_float)


def _depth(value: Any) -> int:
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            deepest = max(deepest, depth)
            if deepest > MAX_DEPTH:
                break
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            deepest = max(deepest, depth)
            if deepest > MAX_DEPTH:
                break
            stack.extend((v, depth + 1) for v in item)
    return deepest


def _kind_of(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool) or value is None:
        return "true, false or null"
    return "a number"


def parse_json(text: str | bytes, *, top_level: str = "object") -> Any:
    """One request (``top_level="object"``) or any JSON value (``"any"``), strictly.

    Raises :class:`ValueError` whose message names the rule that failed
    and the column, never the text read: invalid UTF-8, invalid JSON,
    ``NaN``/``Infinity``, an integer over :data:`MAX_INT_DIGITS` digits,
    nesting over :data:`MAX_DEPTH` levels, or (for requests) anything but
    an object at the top level.
    """
    # orjson where it certainly reads as this strict reader does (valid UTF-8, finite
    # numbers, integers of at most 18 digits): anything else is read, or refused with
    # its reason, below.
    value = fastjson.loads(text) if isinstance(text, bytes) else fastjson.NOT_SURE
    if value is fastjson.NOT_SURE:
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ValueError(
                    f"not valid UTF-8 (byte {exc.start + 1} of the line)") from None
        try:
            value = _DECODER.decode(text)
        except _Refused as exc:
            raise ValueError(str(exc)) from None
        except json.JSONDecodeError as exc:
            raise _BadJSON(f"invalid JSON: {exc.msg} (column {exc.colno})",
                           exc.lineno) from None
        except RecursionError:
            raise ValueError(f"nested deeper than {MAX_DEPTH} levels") from None
    # Every list or object opens with a bracket: with few brackets in the text (strings
    # included), the value cannot be deeper than the limit and needs no walk.
    brackets = (text.count(b"{") + text.count(b"[") if isinstance(text, bytes)
                else text.count("{") + text.count("["))
    if brackets > MAX_DEPTH and _depth(value) > MAX_DEPTH:
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
    if top_level == "object" and not isinstance(value, dict):
        raise ValueError(f"a request must be a JSON object, this line is {_kind_of(value)}")
    return value


def _utf8_lines(raw: Iterable[bytes | str]) -> Iterator[bytes | str]:
    """Lines with a UTF-8 BOM dropped; a UTF-16/32 file raises ValueError at once."""
    first = True
    for line in raw:
        if first:
            first = False
            if isinstance(line, bytes):
                for bom, name in _BOMS:
                    if line.startswith(bom):
                        raise ValueError(f"the file is {name}; save it as UTF-8")
                line = line.removeprefix(codecs.BOM_UTF8)
            else:
                line = line.removeprefix("\ufeff")
        yield line


@dataclass(frozen=True)
class InputRow:
    """One input row: its 1-based line number and the parsed request, or why it is unreadable."""

    line: int
    request: Any = None
    error: str | None = None
    #: The line as read, not parsed yet (:func:`read_requests` with ``raw=True``): a
    #: batch run sends it to a worker as it is, and the worker parses it (:meth:`parsed`).
    raw: bytes | None = None

    def parsed(self) -> InputRow:
        """This row with its raw line parsed (strictly, as :func:`read_jsonl` does)."""
        if self.raw is None:
            return self
        return parse_line(self.line, self.raw)

    @property
    def customer_id(self) -> str | None:
        """The row's customer id when it can be found (for error reports)."""
        return request_customer_id(self.request)


def request_customer_id(req: Any) -> str | None:
    """A request's customer id when it can be found (for error reports), else None."""
    if isinstance(req, dict) and isinstance(req.get("customer"), dict):
        cid = req["customer"].get("id")
        return None if cid is None else str(cid)
    return None


def open_binary(source: str | os.PathLike[str]) -> IO[bytes]:
    """Open a local path or an fsspec URL for reading bytes; ``.gz`` is decompressed."""
    name = os.fspath(source)
    if "://" in name and not name.startswith("file://"):
        import fsspec  # the cluster extra

        compression = "gzip" if name.endswith(".gz") else None
        handle: IO[bytes] = fsspec.open(name, "rb", compression=compression).open()
        return handle
    path = Path(name.removeprefix("file://"))
    if path.suffix == ".gz":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return path.open("rb")


def open_text(source: str | os.PathLike[str]) -> IO[str]:
    """Open a local path or an fsspec URL for reading text; ``.gz`` is decompressed."""
    name = os.fspath(source)
    if "://" in name and not name.startswith("file://"):
        import fsspec  # the cluster extra

        compression = "gzip" if name.endswith(".gz") else None
        handle: IO[str] = fsspec.open(name, "rt", encoding="utf-8", newline="",
                                      compression=compression).open()
        return handle
    path = Path(name.removeprefix("file://"))
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return path.open("r", encoding="utf-8", newline="")


def _kind(source: str | os.PathLike[str]) -> str:
    name = os.fspath(source).lower().removesuffix(".gz")
    for suffix, kind in ((".jsonl", "jsonl"), (".ndjson", "jsonl"), (".csv", "csv"),
                         (".json", "json")):
        if name.endswith(suffix):
            return kind
    raise ValueError(f"{os.fspath(source)}: unknown input format (use .jsonl, .csv or .json)")


def read_requests(
    source: str | os.PathLike[str], *, schema: Mapping[str, Any] | None = None,
    raw: bool = False,
) -> Iterator[InputRow]:
    """Read ``.jsonl``/``.ndjson``/``.csv`` (optionally ``.gz``) streaming; ``.json`` whole.

    ``schema`` (a JSON Schema of the request) types CSV cells; JSONL ignores it.
    ``raw``: JSONL lines come unparsed (:attr:`InputRow.raw`; a batch run's workers
    parse them), other formats parsed as usual.
    """
    kind = _kind(source)
    with open_binary(source) as fh:
        if kind == "jsonl" and raw:
            yield from _raw_jsonl(fh)
        elif kind == "jsonl":
            yield from read_jsonl(fh)
        elif kind == "csv":
            yield from read_csv(_decoded(fh), schema=schema)
        else:
            yield from _read_json(fh)


def read_jsonl(lines: Iterable[str | bytes]) -> Iterator[InputRow]:
    """One request per line (bytes or text); blank lines are skipped, a bad line is an error row.

    A file in UTF-16 or UTF-32 is one error row (line 1) and nothing else.
    """
    try:
        for lineno, line in enumerate(_utf8_lines(lines), 1):
            if line.strip():
                yield parse_line(lineno, line)
    except ValueError as exc:  # the encoding of the whole file
        yield InputRow(1, None, str(exc))


def _raw_jsonl(lines: Iterable[bytes]) -> Iterator[InputRow]:
    """:func:`read_jsonl` without the parsing: the non-blank lines as bytes."""
    try:
        for lineno, line in enumerate(_utf8_lines(lines), 1):
            if line.strip():
                yield InputRow(lineno, raw=line if isinstance(line, bytes) else line.encode())
    except ValueError as exc:  # the encoding of the whole file
        yield InputRow(1, None, str(exc))


def parse_line(lineno: int, line: bytes | str) -> InputRow:
    """One JSONL line as a row: the request, or why it cannot be read."""
    try:
        return InputRow(lineno, parse_json(line))
    except ValueError as exc:
        return InputRow(lineno, None, str(exc))


def _decoded(raw: Iterable[bytes]) -> Iterator[str]:
    """UTF-8 text lines for the CSV reader; an undecodable line keeps its place as a marker."""
    for line in _utf8_lines(raw):
        if isinstance(line, str):
            yield line
            continue
        try:
            yield line.decode("utf-8")
        except UnicodeDecodeError:
            yield line.decode("utf-8", errors="surrogateescape")


def _read_json(fh: IO[bytes]) -> Iterator[InputRow]:
    """A ``.json`` file: one request, or a list of them, each row with the line it starts on."""
    data = fh.read(MAX_JSON_BYTES + 1)
    if len(data) > MAX_JSON_BYTES:
        yield InputRow(1, None, f"a .json file may have at most {MAX_JSON_BYTES} bytes; "
                       "use .jsonl for more")
        return
    try:
        (first,) = list(_utf8_lines([data]))
        text = first.decode("utf-8") if isinstance(first, bytes) else first
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        yield InputRow(line, None, "not valid UTF-8")
        return
    except ValueError as exc:
        yield InputRow(1, None, str(exc))
        return
    start = len(text) - len(text.lstrip())
    if text[start:start + 1] != "[":
        try:
            yield InputRow(1 + text.count("\n", 0, start), parse_json(text))
        except _BadJSON as exc:  # a multi-line object: the line of the mistake
            yield InputRow(exc.line, None, str(exc))
        except ValueError as exc:
            yield InputRow(1 + text.count("\n", 0, start), None, str(exc))
        return
    yield from _json_items(text, start + 1)


def _json_items(text: str, pos: int) -> Iterator[InputRow]:
    """The items of a JSON array starting at ``pos``, each parsed strictly on its own."""
    line = 1 + text.count("\n", 0, pos)
    expect_item, first = True, True
    while True:
        end = _WS.match(text, pos).end()  # type: ignore[union-attr]
        line += text.count("\n", pos, end)
        pos = end
        if pos >= len(text):
            yield InputRow(line, None, "invalid JSON: the list is not closed with ]")
            return
        char = text[pos]
        if char == "]" and (first or not expect_item):
            if text[pos + 1:].strip():
                yield InputRow(line, None, "invalid JSON: extra data after the list")
            return
        if not expect_item:
            if char != ",":
                yield InputRow(line, None, "invalid JSON: expected , or ] between requests")
                return
            pos += 1
            expect_item = True
            continue
        try:
            value, end = _DECODER.raw_decode(text, pos)
        except json.JSONDecodeError as exc:  # its line and column in the file
            yield InputRow(exc.lineno, None, f"invalid JSON: {exc.msg} (column {exc.colno})")
            return
        except RecursionError:
            yield InputRow(line, None, f"nested deeper than {MAX_DEPTH} levels")
            return
        except _Refused as exc:
            yield InputRow(line, None, str(exc))
            return
        item_line = line
        line += text.count("\n", pos, end)
        pos = end
        expect_item = first = False
        if _depth(value) > MAX_DEPTH:
            yield InputRow(item_line, None, f"nested deeper than {MAX_DEPTH} levels")
        elif not isinstance(value, dict):
            yield InputRow(item_line, None,
                           f"a request must be a JSON object, this item is {_kind_of(value)}")
        else:
            yield InputRow(item_line, value)


_WS = re.compile(r"[ \t\n\r]*")
_NOT_UTF8 = re.compile("[\udc80-\udcff]")


def read_csv(
    lines: Iterable[str], *, schema: Mapping[str, Any] | None = None
) -> Iterator[InputRow]:
    """Rows of a CSV file with dotted column names as nested requests (see the module doc).

    A row the CSV reader refuses (a cell over its size limit, a carriage return
    inside an unquoted cell) is an error row; the rest of that row is skipped,
    a quoted cell's further lines included, and reading goes on with the next.
    """
    source = _Lines(lines)
    reader = csv.reader(source)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        raise ValueError(f"CSV header: {_csv_error(exc)}") from None
    columns = [_column(name, schema) for name in header]
    start = source.count + 1
    while True:
        source.record = []
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            source.skip_record()
            line, start = start, source.count + 1
            yield InputRow(line, None, _csv_error(exc))
            continue
        line, start = start, source.count + 1
        if not any(cell.strip() for cell in cells):
            continue
        if any(_NOT_UTF8.search(cell) for cell in cells):
            yield InputRow(line, None, "not valid UTF-8")
            continue
        if len(cells) != len(columns):
            yield InputRow(line, None, f"expected {len(columns)} cells, found {len(cells)}")
            continue
        request: dict[str, Any] = {}
        try:
            for (path, kind), cell in zip(columns, cells, strict=True):
                if cell == "":
                    continue
                _put(request, path, _convert(cell, kind, path))
        except ValueError as exc:
            yield InputRow(line, request or None, str(exc))
            continue
        yield InputRow(line, request)


def _csv_error(exc: csv.Error) -> str:
    """What the CSV reader refused, in words (its messages name no value read)."""
    text = str(exc)
    if text.startswith("field larger than field limit"):
        return (f"a cell has more than {csv.field_size_limit()} characters, the most a CSV "
                "cell may have; shorten it (or send this request as JSONL)")
    if text.startswith("new-line character seen in unquoted field"):
        return "a cell holds a line break but is not quoted; put the cell in double quotes"
    return f"not valid CSV: {text}"


class _Lines:
    """The CSV reader's lines, counted, with the lines of the record being read kept.

    After the reader refuses a record, it starts the next one on the next line,
    even when the refused record is inside a quoted cell that goes on there:
    :meth:`skip_record` reads on to the end of the refused record first, so the
    rest of a quoted cell is never taken for rows of its own.
    """

    def __init__(self, lines: Iterable[str]) -> None:
        self._lines = iter(lines)
        #: Lines read so far (the reader's ``line_num``, plus the lines skipped).
        self.count = 0
        #: The lines of the record being read.
        self.record: list[str] = []

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self.count += 1
        self.record.append(line)
        return line

    def skip_record(self) -> None:
        """Read to the end of the record whose lines are in :attr:`record`."""
        quoted = False
        for line in self.record:
            quoted = _in_quotes(line, quoted)
        self.record = []
        while quoted:
            following = next(self._lines, None)
            if following is None:
                return
            self.count += 1
            quoted = _in_quotes(following, quoted)


_CELL_END = re.compile(r"[,\r\n]")


def _in_quotes(line: str, quoted: bool) -> bool:
    """Whether the CSV reader (the default dialect) is inside a quoted cell after ``line``,
    having been inside one before it when ``quoted``."""
    pos, end = 0, len(line)
    at_start = not quoted
    while pos < end:
        if quoted:
            close = line.find('"', pos)
            if close < 0:
                return True
            if line.startswith('"', close + 1):  # a doubled quote: one quote in the cell
                pos = close + 2
                continue
            quoted, at_start, pos = False, False, close + 1
        elif at_start and line[pos] == '"':
            quoted, pos = True, pos + 1
        else:
            # Unquoted text (a quote in it is a character) up to the cell's or line's end.
            found = _CELL_END.search(line, pos)
            if found is None:
                return False
            at_start, pos = True, found.end()
    return quoted


def _column(name: str, schema: Mapping[str, Any] | None) -> tuple[tuple[str, ...], str | None]:
    name = name.strip()
    kind: str | None = None
    if ":" in name:
        name, kind = name.rsplit(":", 1)
        if kind not in _TYPES:
            known = ", ".join(_TYPES)
            raise ValueError(f"CSV column {name!r}: unknown type {kind!r} (use {known})")
    path = tuple(part for part in name.split(".") if part)
    if not path:
        raise ValueError("CSV header has an empty column name")
    if kind is None and schema is not None:
        kind = _schema_kind(schema, path)
    return path, kind


def _schema_kind(schema: Mapping[str, Any], path: tuple[str, ...]) -> str | None:
    """The cell type the schema declares at ``path`` (``None`` when it does not say)."""
    node: Mapping[str, Any] | None = schema
    for part in path:
        node = _resolve(schema, node)
        if node is None:
            return None
        props = node.get("properties")
        if isinstance(props, Mapping) and part in props:
            node = props[part]
        elif isinstance(node.get("additionalProperties"), Mapping):
            node = node["additionalProperties"]
        else:
            return None
    node = _resolve(schema, node)
    if node is None:
        return None
    declared = node.get("type")
    types = [declared] if isinstance(declared, str) else list(declared or [])
    if not types or "string" in types:
        return None
    first = types[0] if types[0] != "null" or len(types) == 1 else types[1]
    return {"integer": "int", "number": "number", "boolean": "bool",
            "array": "json", "object": "json"}.get(first)


def _resolve(root: Mapping[str, Any], node: Any) -> Mapping[str, Any] | None:
    for _ in range(16):  # local $ref chains only, bounded
        if not isinstance(node, Mapping):
            return None
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/"):
            target: Any = root
            for part in ref[2:].split("/"):
                target = target.get(part) if isinstance(target, Mapping) else None
            node = target
            continue
        for combo in ("allOf", "anyOf", "oneOf"):
            options = node.get(combo)
            if isinstance(options, list) and "type" not in node and "properties" not in node:
                typed = [o for o in options if isinstance(o, Mapping) and o.get("type") != "null"]
                if typed:
                    node = typed[0]
                    break
        else:
            return node
    return None


#: What a ``:bool`` cell may hold (any case, spaces around ignored), for its error.
_BOOL_WORDS = "true/false, yes/no, y/n or 1/0"


def _convert(cell: str, kind: str | None, path: tuple[str, ...]) -> Any:
    where = ".".join(path)
    text = cell.strip()
    if kind is None:
        if text[:1] in "[{":
            try:
                return json.loads(text)
            except json.JSONDecodeError:
                return cell
        return cell
    if kind == "str":
        return cell
    if kind == "bool":
        lowered = text.lower()
        if lowered in ("true", "1", "yes", "y"):
            return True
        if lowered in ("false", "0", "no", "n"):
            return False
        raise ValueError(f"column {where}: not a boolean (use {_BOOL_WORDS})")
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        if kind == "json":
            raise ValueError(f"column {where}: invalid JSON") from None
        return cell  # the contract check reports it with its JSON path
    except ValueError:  # an integer over Python's digit limit: its message is no help
        raise ValueError(f"column {where}: a number has too many digits to read") from None
    if kind == "int" and isinstance(value, float) and value.is_integer():
        return int(value)
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    if kind in ("int", "number") and not numeric:
        return cell
    return value


def _put(target: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = target
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ValueError(f"column {'.'.join(path)}: {part!r} is already a value")
        node = child
    node[path[-1]] = value


def count_rows(source: str | os.PathLike[str]) -> int | None:
    """Count data lines quickly (for progress ETA); ``None`` when it cannot be known cheaply."""
    name = os.fspath(source)
    if "://" in name and not name.startswith("file://"):
        return None
    path = Path(name.removeprefix("file://"))
    try:
        kind = _kind(path)
    except ValueError:
        return None
    if kind == "json":
        return None
    opener: Any = gzip.open if path.suffix == ".gz" else open
    lines = 0
    last = b"\n"
    try:
        with opener(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                lines += chunk.count(b"\n")
                last = chunk[-1:]
    except (OSError, EOFError, zlib.error):  # a damaged .gz: the read names it
        return None
    if last != b"\n":
        lines += 1
    return max(lines - (1 if kind == "csv" else 0), 0)
