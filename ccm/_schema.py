"""Load the published JSON Schemas and validate YAML/JSON documents against them."""

from __future__ import annotations

import difflib
import json
import re
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from ccm._files import read_contained_text
from ccm.errors import CCMError, UnsafeFileError

__all__ = ["MAX_YAML_VALUES", "json_path", "key_line", "load_schema", "load_yaml",
           "safe_load_bounded", "validate_manifest"]

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
    """Validate ``doc`` against a bundled schema; raise ``error`` naming file, line and key.

    A key the schema does not know (a typo: ``palete``) is reported before a
    required key found missing at the same level (``palette``, which the typo
    was meant to be), with the nearest known key and the line of the typo.
    """
    validator = jsonschema.Draft202012Validator(load_schema(schema_name))
    problems = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    if not problems:
        return
    first = problems[0]
    at = list(first.absolute_path)
    first = next((p for p in problems if list(p.absolute_path) == at
                  and p.validator == "additionalProperties"), first)
    unknown = _unknown_keys(first)
    parts = [*first.absolute_path, *unknown[:1]]
    key = ".".join(str(p) for p in parts) or "(top level)"
    if unknown:
        known = sorted(str(k) for k in (first.schema.get("properties") or {}))
        close = difflib.get_close_matches(unknown[0], known, n=1)
        more = f"; {len(unknown) - 1} more unknown here" if len(unknown) > 1 else ""
        message = "unknown key " + (f"(did you mean {close[0]!r}?{more})" if close else
                                    f"(check its spelling and indentation, or remove it{more})")
    else:
        message = first.message
        if len(message) > _MAX_MESSAGE:  # it quotes the value, which may be long
            message = message[:_MAX_MESSAGE] + " [...]"
    line = key_line(path, parts)
    where = f"{path}:{line}" if line else str(path)
    context: dict[str, Any] = {"path": str(path), "key": key}
    if line:
        context["line"] = line
    raise error(f"{where}: {key}: {message}", **context)


def _unknown_keys(err: Any) -> list[str]:
    """The keys an ``additionalProperties: false`` error is about (none for other errors)."""
    if err.validator != "additionalProperties" or not isinstance(err.instance, dict) \
            or not isinstance(err.schema, dict):
        return []
    known = set(err.schema.get("properties") or {})
    patterns = list(err.schema.get("patternProperties") or {})
    return sorted(str(k) for k in err.instance if k not in known
                  and not any(re.search(p, str(k)) for p in patterns))


def key_line(path: Path, parts: list[Any]) -> int | None:
    """The 1-based line of the key at ``parts`` in the YAML file ``path``, or None."""
    if not parts:
        return None
    try:
        node = yaml.compose(read_contained_text(path.name, path.parent))
        line = None
        for part in parts:
            if isinstance(node, yaml.MappingNode):
                match = next(((k, v) for k, v in node.value
                              if isinstance(k, yaml.ScalarNode) and k.value == str(part)), None)
                if match is None:
                    return line
                line, node = match[0].start_mark.line + 1, match[1]
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) \
                    and 0 <= part < len(node.value):
                node = node.value[part]
                line = node.start_mark.line + 1
            else:
                return line
        return line
    except (yaml.YAMLError, CCMError, OSError, RecursionError):
        return None
