"""Load the published JSON Schemas and validate YAML/JSON documents against them."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from ccm._files import read_contained_text
from ccm.errors import CCMError, UnsafeFileError

__all__ = ["MAX_YAML_VALUES", "json_path", "load_schema", "load_yaml", "safe_load_bounded",
           "validate_manifest"]

#: Values (mappings, lists, scalars, keys) a YAML file may hold with its aliases
#: expanded. PyYAML shares an aliased value instead of copying it, so nine lists
#: of nine aliases to the list before, eight deep, load from 6 KB in an instant --
#: and are 43 million strings to anything that walks them (schema validation,
#: its error message, ``str()``). The example packs hold about 1,000.
MAX_YAML_VALUES = 100_000

#: Longest schema error message: jsonschema's messages start with the offending value.
_MAX_MESSAGE = 300


class YAMLTooBigError(yaml.YAMLError):
    """A YAML document whose aliases expand past :data:`MAX_YAML_VALUES`, or refer to themselves."""


@cache
def load_schema(name: str) -> dict[str, Any]:
    """Return the bundled schema ``ccm/schemas/<name>.schema.json``."""
    text = resources.files("ccm").joinpath("schemas", f"{name}.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def json_path(parts: Any) -> str:
    """Render a jsonschema error path (deque of keys/indexes) as ``$.a.b[0]``."""
    out = "$"
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _check_expanded_size(doc: Any) -> None:
    """Raise :class:`YAMLTooBigError` if ``doc``, aliases expanded, is too big or cyclic.

    Walks each shared value once (sizes are remembered by identity), without
    recursion, so the check costs what the loaded document does, not its expansion.
    """
    sizes: dict[int, int] = {}
    visiting: set[int] = set()
    stack: list[tuple[Any, bool]] = [(doc, False)]
    while stack:
        value, children_done = stack.pop()
        if not isinstance(value, (dict, list)):
            continue
        key = id(value)
        items = [*value.keys(), *value.values()] if isinstance(value, dict) else value
        if children_done:
            visiting.discard(key)
            size = 1 + sum(sizes.get(id(item), 1) for item in items)
            if size > MAX_YAML_VALUES:
                raise YAMLTooBigError(
                    f"its aliases (*name) expand to more than {MAX_YAML_VALUES:,} values; "
                    "write the values out or use fewer aliases")
            sizes[key] = size
            continue
        if key in sizes:
            continue
        if key in visiting:
            raise YAMLTooBigError("an alias (*name) refers to a value that contains it")
        visiting.add(key)
        stack.append((value, True))
        stack.extend((item, False) for item in items if isinstance(item, (dict, list)))


def safe_load_bounded(text: str) -> Any:
    """``yaml.safe_load``, refusing aliases that expand too far or into themselves.

    Errors are :class:`yaml.YAMLError` (:class:`YAMLTooBigError` for the size,
    or nesting too deep for the parser).
    """
    try:
        doc = yaml.safe_load(text)
    except RecursionError:  # PyYAML composes nested values recursively
        raise YAMLTooBigError("values are nested too deeply") from None
    _check_expanded_size(doc)
    return doc


def load_yaml(path: Path, error: type[CCMError]) -> Any:
    """:func:`safe_load_bounded` a file in its folder; errors become ``error`` naming file + line.

    The file is read with :func:`ccm._files.read_contained_text` (root: its
    own folder), so a manifest that is a symlink out of its folder, a FIFO
    or a device is refused as :class:`~ccm.errors.UnsafeFileError`.
    ``path`` may be relative to the current folder (``--config
    cfg/delivery.yaml``): only its name is looked up inside its folder, as a
    relative path given to the reader would be joined to that folder again.
    """
    try:
        text = read_contained_text(path.name, path.parent)
    except UnsafeFileError as exc:
        # Name the file as the user gave it, not by its bare name.
        context = {**exc.context, "path": str(path)}
        raise UnsafeFileError(f"{path}: refused: {exc.reason}", **context) from None
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror}", path=str(path)) from exc
    try:
        return safe_load_bounded(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        # PyYAML marks count lines from 0; errors (message and context) count from 1.
        line = mark.line + 1 if mark is not None else None
        where = f"{path}:{line}" if line is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise error(f"{where}: invalid YAML: {problem}", path=str(path), line=line) from exc


def validate_manifest(doc: Any, schema_name: str, path: Path, error: type[CCMError]) -> None:
    """Validate ``doc`` against a bundled schema; raise ``error`` naming file and key."""
    validator = jsonschema.Draft202012Validator(load_schema(schema_name))
    problems = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    if problems:
        first = problems[0]
        key = ".".join(str(p) for p in first.absolute_path) or "(top level)"
        message = first.message
        if len(message) > _MAX_MESSAGE:  # it quotes the value, which may be long
            message = message[:_MAX_MESSAGE] + " [...]"
        raise error(f"{path}: {key}: {message}", path=str(path), key=key)
