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

__all__ = ["json_path", "load_schema", "load_yaml", "validate_manifest"]


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


def load_yaml(path: Path, error: type[CCMError]) -> Any:
    """``yaml.safe_load`` a file in its folder; YAML errors become ``error`` naming file + line.

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
        return yaml.safe_load(text)
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
        raise error(f"{path}: {key}: {first.message}", path=str(path), key=key)
