"""Text messages of a batch run in one file per commit instead of one file per message.

``--output-format jsonl`` writes the SMS and email messages of each record
commit as ``out/messages-<run id>-<seq>.jsonl``: one line per message with
its metadata and content (:func:`message_line`); ``--output-format zip`` as
``out/messages-<run id>-<seq>.zip``: one member per message under its usual
file name plus ``manifest.jsonl``. PDFs stay one file each.

The order is the same as for single files -- *stage, commit, publish*: the
chunk is written under the staging folder and synced, the record commit
follows, and only then is the chunk renamed to its final name (or, when the
record turned some messages away -- caps, duplicates -- rewritten without
them). So a published chunk never holds a message the record does not have.

Resume: on start, :class:`ChunkFiles` reads which message ids the run's
published chunks hold, and which lines a killed run left staged. A recorded
message in neither is written again into the next chunk from the staged
line, from the record's archive, or by rendering it again; so every
generated message ends up in exactly one published chunk.
"""

from __future__ import annotations

import io
import json
import os
import re
import zipfile
from collections.abc import Iterable, Iterator
from typing import Any

from ccm._util import json_encoder_once, safe_filename
from ccm.batch._output import _Output

__all__ = ["FORMATS", "JSONL_ABOVE", "TEXT_CHANNELS", "ChunkFiles", "format_begun", "json_line",
           "message_line"]

#: Output formats: one file per message, or one JSONL file / zip archive per commit for
#: text channels.
FORMATS = ("files", "jsonl", "zip")
#: ``ccm batch`` writes JSONL by default when the input has more rows than this.
JSONL_ABOVE = 10_000
#: Channels whose messages go into chunks (PDFs stay files).
TEXT_CHANNELS = frozenset({"sms", "email"})


def message_line(*, line: int, message_id: str, customer_id: str, channel: str,
                  template: str, locale: str, filename: str, content_sha256: str | None,
                  content: bytes) -> dict[str, Any]:
    """One JSONL line: the message's metadata and its content as text.

    ``content`` is the UTF-8 of the SMS text or of the ``.eml`` (ASCII in
    practice); bytes that are not UTF-8 survive as ``\\udcXX`` escapes
    (``surrogateescape``), so ``line["content"].encode("utf-8",
    "surrogateescape")`` gives back exactly the bytes whose digest the record holds.
    """
    return {"line": line, "message_id": message_id, "customer_id": customer_id,
            "channel": channel, "template": template, "locale": locale,
            "filename": filename, "content_sha256": content_sha256,
            "content": content.decode("utf-8", "surrogateescape")}


#: The bytes a JSON string holds as they are (``ensure_ascii``): printable ASCII but ``"``
#: and ``\\``; CR, LF and tab are escaped by :func:`json_line` itself.
_JSON_ASIS = bytes(range(0x20, 0x7F)) + b"\r\n\t"
#: Contents shorter than this (an SMS) are written by ``json.dumps`` alone: below about
#: 2 KB its encoder is the faster.
_REPLACE_FROM = 4096


#: What ``json.dumps(item)`` (all defaults) calls, made once instead of per line, without
#: the circular check (lines are flat: metadata and a text).
_DUMPS_ONCE = json_encoder_once(json.JSONEncoder())


_FLAT = frozenset({str, int, float, bool, type(None)})


def _dumps(item: dict[str, Any]) -> str:
    """``json.dumps(item, ensure_ascii=True)`` of a flat line."""
    if _DUMPS_ONCE is None or not _FLAT.issuperset(map(type, item.values())):
        return json.dumps(item, ensure_ascii=True)
    return _DUMPS_ONCE(item)


def json_line(item: dict[str, Any]) -> bytes:
    """``json.dumps(item, ensure_ascii=True)`` in ASCII, plus a line feed.

    A message line's content (its last field) is the bulk of the line: an
    ``.eml`` is ASCII with a CRLF every 76 bytes and a ``"`` in every HTML
    attribute. Its escapes are made with ``bytes.replace`` (each a C scan of
    the whole text) where the content holds nothing else to escape, rather
    than by ``json``'s encoder one character at a time; the bytes are the same.
    Short contents go to ``json.dumps``.
    """
    content = item.get("content")
    if (type(content) is not str or len(content) < _REPLACE_FROM
            or next(reversed(item)) != "content" or not content.isascii()):
        return _dumps(item).encode("ascii") + b"\n"
    raw = content.encode("ascii")
    if raw.translate(None, _JSON_ASIS):  # a control character other than CR, LF, tab
        return _dumps(item).encode("ascii") + b"\n"
    if b"\\" in raw:
        raw = raw.replace(b"\\", b"\\\\")
    # One byte for two each (a search for CRLF as a pair is several times slower).
    for plain, escaped in ((b'"', b'\\"'), (b"\r", b"\\r"), (b"\n", b"\\n"), (b"\t", b"\\t")):
        if plain in raw:
            raw = raw.replace(plain, escaped)
    head = _dumps({**item, "content": ""}).encode("ascii")
    return head[:-3] + b'"' + raw + b'"}\n'


def format_begun(output: _Output, run_id: str) -> str | None:
    """The output format run ``run_id`` began with in ``output``, or None (a new run).

    The run's note in the folder (:meth:`_Output.note_run_format`), else the kind of
    its chunk files there (a run begun before runs kept notes; a run in ``files`` then
    leaves no trace of its format, and is taken as new).
    """
    noted = output.run_format()
    if noted is not None:
        return noted
    pattern = re.compile(re.escape(f"messages-{safe_filename(run_id)}-") + r"\d+\.(jsonl|zip)")
    for name in output.names():
        match = pattern.fullmatch(name)
        if match is not None:
            return match.group(1)
    return None


def content_of(line: dict[str, Any]) -> bytes:
    """The message bytes of a JSONL line (see :func:`message_line`)."""
    return str(line["content"]).encode("utf-8", "surrogateescape")


class ChunkFiles:
    """The run's chunks: what is published, what a killed run left staged, the next name.

    ``kind`` ``"jsonl"``: one line per message, content included. ``"zip"``: one
    member per message under its usual file name, plus ``manifest.jsonl`` (the
    same lines without ``content``, with ``member``: the member's name).
    """

    def __init__(self, output: _Output, run_id: str, kind: str = "jsonl", *,
                 scan: bool = True) -> None:
        if kind not in ("jsonl", "zip"):
            raise ValueError(f"unknown chunk kind {kind!r}")
        self.output = output
        self.kind = kind
        self.suffix = f".{kind}"
        self.prefix = f"messages-{safe_filename(run_id)}-"
        self._pattern = re.compile(re.escape(self.prefix) + r"(\d+)" + re.escape(self.suffix))
        #: Message ids in published chunks of earlier runs with this run id.
        self.published: set[str] = set()
        #: Lines of chunks staged but never published (a run killed mid-commit).
        self.staged: dict[str, dict[str, Any]] = {}
        self.seq = 0
        if scan:
            self._scan()

    def _scan(self) -> None:
        """Read what earlier runs with this run id published and left staged."""
        for name in self._names(self.output.root):
            match = self._pattern.fullmatch(name)
            if match is None:
                continue
            self.seq = max(self.seq, int(match.group(1)))
            for item in self._read(self.output.path(name), content=False):
                self.published.add(str(item["message_id"]))
        for name in self._names(self.output.staging):
            if name.startswith("chunk-") and name.endswith(self.suffix):
                number = name.removeprefix("chunk-").removesuffix(self.suffix)
                self.seq = max(self.seq, int(number) if number.isdigit() else 0)
                for item in self._read(self.output.staged(name), content=True):
                    if str(item["message_id"]) not in self.published:
                        self.staged[str(item["message_id"])] = item

    def _names(self, folder: str) -> list[str]:
        if self.output.local:
            try:
                return sorted(os.listdir(folder))
            except FileNotFoundError:
                return []
        if not self.output.fs.exists(folder):
            return []
        return sorted(p.rstrip("/").rsplit("/", 1)[-1]
                      for p in self.output.fs.ls(folder, detail=False))

    def _read(self, path: str, *, content: bool) -> Iterator[dict[str, Any]]:
        opener: Any = open if self.output.local else self.output.fs.open
        with opener(path, "rb") as fh:
            if self.kind == "jsonl":
                yield from _jsonl_items(fh)
                return
            try:
                with zipfile.ZipFile(fh) as archive:
                    with archive.open("manifest.jsonl") as manifest:
                        items = list(_jsonl_items(manifest))
                    for item in items:
                        if content:
                            item["content"] = archive.read(str(item["member"])).decode(
                                "utf-8", "surrogateescape")
                        yield item
            except (zipfile.BadZipFile, KeyError, OSError):
                return  # a torn staged archive (published ones are whole)

    def _encode(self, lines: Iterable[dict[str, Any]]) -> bytes:
        if self.kind == "jsonl":
            return b"".join(json_line(item) for item in lines)
        buffer = io.BytesIO()
        manifest = []
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
            for item in lines:
                meta = {k: v for k, v in item.items() if k != "content"}
                meta["member"] = str(item["filename"])
                archive.writestr(meta["member"], content_of(item))
                manifest.append(meta)
            archive.writestr("manifest.jsonl", b"".join(
                json.dumps(m, ensure_ascii=True).encode("ascii") + b"\n" for m in manifest))
        return buffer.getvalue()

    def stage(self, lines: Iterable[dict[str, Any]], *,
              seq: int | None = None) -> tuple[str, Any]:
        """Write a chunk under the staging folder; ``(staged name, handle to sync)``.

        ``seq`` numbers it (the parent hands each task its own); default: the next one.
        """
        if seq is None:
            self.seq += 1
            seq = self.seq
        name = f"chunk-{seq:06d}{self.suffix}"
        return name, self.output.stage(name, self._encode(lines))

    def final_name(self, staged_name: str) -> str:
        return f"{self.prefix}{staged_name.removeprefix('chunk-')}"

    def publish(self, staged_name: str, kept: list[dict[str, Any]], staged_count: int) -> None:
        """Publish a committed chunk: renamed when every staged line was kept, else rewritten."""
        final = self.final_name(staged_name)
        if len(kept) == staged_count:
            self.output.publish(staged_name, final)
            return
        self.output.discard(staged_name)
        if kept:
            self.output.write(final, self._encode(kept))


def _jsonl_items(fh: Any) -> Iterator[dict[str, Any]]:
    for raw in fh:
        if not raw.endswith(b"\n"):
            return  # a torn last line (never published: staged chunks only)
        try:
            item = json.loads(raw)
        except ValueError:
            return
        if isinstance(item, dict) and "message_id" in item:
            yield item
