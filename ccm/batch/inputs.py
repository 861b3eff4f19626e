"""Streaming request readers for batch runs: JSONL and CSV, one row at a time.

Both readers yield :class:`InputRow` objects and never hold more than one row
in memory, so a 100k-line file costs what one line costs. A row that cannot be
read (bad JSON, a CSV row with the wrong number of cells) is yielded with its
``error`` set instead of stopping the stream: the batch reports it and goes on.

CSV columns are dotted paths into the request: ``customer.id``,
``customer.address.city``, ``data.amount_due``. Cells are strings unless

* the column names a type, ``data.amount_due:number`` (``str``, ``int``,
  ``number``, ``bool``, ``json``);
* a JSON Schema for the request is given and declares the type at that path
  (the batch passes the template's data contract, so ``data.amount_due``
  becomes a number when the contract says so);
* the cell looks like a JSON array or object (``[...]``, ``{...}``).

Empty cells are left out, so optional fields may be blank.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

__all__ = ["InputRow", "count_rows", "open_text", "read_csv", "read_jsonl", "read_requests"]

_TYPES = ("str", "int", "number", "bool", "json")


@dataclass(frozen=True)
class InputRow:
    """One input row: its 1-based line number and the parsed request, or why it is unreadable."""

    line: int
    request: Any = None
    error: str | None = None

    @property
    def customer_id(self) -> str | None:
        """The row's customer id when it can be found (for error reports)."""
        req = self.request
        if isinstance(req, dict) and isinstance(req.get("customer"), dict):
            cid = req["customer"].get("id")
            return None if cid is None else str(cid)
        return None


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
    source: str | os.PathLike[str], *, schema: Mapping[str, Any] | None = None
) -> Iterator[InputRow]:
    """Read ``.jsonl``/``.ndjson``/``.csv`` (optionally ``.gz``) streaming; ``.json`` whole.

    ``schema`` (a JSON Schema of the request) types CSV cells; JSONL ignores it.
    """
    kind = _kind(source)
    with open_text(source) as fh:
        if kind == "jsonl":
            yield from read_jsonl(fh)
        elif kind == "csv":
            yield from read_csv(fh, schema=schema)
        else:
            yield from _read_json(fh)


def read_jsonl(lines: Iterable[str]) -> Iterator[InputRow]:
    """One request per line; blank lines are skipped, bad JSON is an error row."""
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield InputRow(lineno, json.loads(line))
        except (json.JSONDecodeError, RecursionError) as exc:
            msg = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
            yield InputRow(lineno, None, f"invalid JSON: {msg}")


def _read_json(fh: IO[str]) -> Iterator[InputRow]:
    try:
        doc = json.load(fh)
    except json.JSONDecodeError as exc:
        yield InputRow(exc.lineno, None, f"invalid JSON: {exc.msg}")
        return
    items = doc if isinstance(doc, list) else [doc]
    for index, item in enumerate(items, 1):
        yield InputRow(index, item)


def read_csv(
    lines: Iterable[str], *, schema: Mapping[str, Any] | None = None
) -> Iterator[InputRow]:
    """Rows of a CSV file with dotted column names as nested requests (see the module doc)."""
    reader = csv.reader(lines)
    try:
        header = next(reader)
    except StopIteration:
        return
    columns = [_column(name, schema) for name in header]
    start = reader.line_num + 1
    for cells in reader:
        line, start = start, reader.line_num + 1
        if not any(cell.strip() for cell in cells):
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
        raise ValueError(f"column {where}: {text!r} is not a boolean")
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        if kind == "json":
            raise ValueError(f"column {where}: invalid JSON") from None
        return cell  # the contract check reports it with its JSON path
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
    except OSError:
        return None
    if last != b"\n":
        lines += 1
    return max(lines - (1 if kind == "csv" else 0), 0)
