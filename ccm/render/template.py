"""Templates: ``templates/<id>/`` with a manifest, a data contract and channel sources."""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache, cached_property, lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jsonschema

from ccm._files import contained_files, read_contained_text
from ccm._schema import json_path, load_schema, load_yaml, validate_manifest
from ccm._util import json_encoder_once, sha256_files
from ccm.errors import CCMError, DataError, TemplateError, UnknownTemplate, UnsafeFileError
from ccm.message import CHANNELS, Request
from ccm.render._contracts import Check, as_check, compile_validator
from ccm.render._patterns import check_contract_patterns
from ccm.render._request_shape import request_check

__all__ = [
    "BAD_TEXT", "SOURCES", "Template", "check_timezone", "describe_rule",
    "escape_text", "json_text_fits", "load_template", "load_templates", "template_files",
    "text_fault",
    "validate_request",
]

#: Source file per channel.
SOURCES = {"pdf": "pdf.html.j2", "email": "email.mjml.j2", "sms": "sms.txt.j2"}

#: Requests nested deeper than this are refused before validation (pathological input).
MAX_DEPTH = 32
#: Requests larger than this (as JSON) are refused before validation.
MAX_REQUEST_BYTES = 2_000_000

_FORMATS = jsonschema.Draft202012Validator.FORMAT_CHECKER
#: Drafts whose keywords the fast check reads the same way (draft 4 differs).
_FAST_DRAFTS = (
    jsonschema.Draft202012Validator, jsonschema.Draft201909Validator,
    jsonschema.Draft7Validator, jsonschema.Draft6Validator,
)


def _fast_validator(schema: dict[str, Any], cls: type[Any]) -> Any:
    """fastjsonschema's raw function of ``schema`` (:mod:`ccm.render._contracts`), or None."""
    if cls not in _FAST_DRAFTS:
        return None
    return compile_validator(schema, _FORMATS)



@dataclass(frozen=True)
class Template:
    """A loaded, brand-neutral template. ``raw`` is the validated ``template.yaml``."""

    root: Path
    id: str
    version: str
    message_type: str
    journey: str
    channels: tuple[str, ...]
    contract: dict[str, Any] = field(repr=False)
    raw: dict[str, Any] = field(repr=False)
    sources_sha256: str = field(repr=False, default="")

    @property
    def name(self) -> str:
        return str(self.raw.get("name", self.id))

    @property
    def confidential(self) -> bool:
        return bool(self.raw.get("pdf", {}).get("confidential", False))

    @property
    def letter(self) -> bool:
        return bool(self.raw.get("pdf", {}).get("letter", False))

    @property
    def attach_pdf(self) -> bool:
        return bool(self.raw.get("email", {}).get("attach_pdf", False))

    @property
    def attachment_name(self) -> str:
        pattern = str(self.raw.get("email", {}).get("attachment_name", "{template}.pdf"))
        return pattern.replace("{template}", self.id)

    @property
    def budget(self) -> dict[str, Any]:
        return dict(self.raw.get("budget", {}))

    def source_name(self, channel: str) -> str:
        """The Jinja loader name of this template's source for ``channel``."""
        return f"templates/{self.id}/{SOURCES[channel]}"

    @cached_property
    def _validator_class(self) -> type[Any]:
        cls: type[Any] = jsonschema.validators.validator_for(
            self.contract, default=jsonschema.Draft202012Validator)
        return cls

    @cached_property
    def _validator(self) -> jsonschema.protocols.Validator:
        return self._validator_class(self.contract, format_checker=_FORMATS)  # type: ignore[no-any-return]

    @cached_property
    def fast_validator(self) -> Any:
        """The contract compiled by fastjsonschema (raises when it refuses; plain JSON only), or
        None when the contract is outside the subset it reads as jsonschema does."""
        return _fast_validator(self.contract, self._validator_class)

    @cached_property
    def _fast_check(self) -> Check | None:
        validate = self.fast_validator
        return None if validate is None else as_check(validate)

    def validate_data(self, data: Any, *, customer_id: str | None = None) -> None:
        """Check ``data`` against the contract; :class:`DataError` names path and rule.

        The contract is compiled once per template; a fast check accepts the
        common valid case and jsonschema explains anything else.
        """
        fast = self._fast_check
        if fast is not None and fast(data):
            return
        errors = sorted(self._validator.iter_errors(data), key=lambda e: list(e.absolute_path))
        if errors:
            err = errors[0]
            path = json_path(["data", *err.absolute_path])
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            raise DataError(
                f"{self.id}: {path}: {describe_rule(err)} [rule: {err.validator}]{more}",
                path=path,
                rule=str(err.validator),
                template=self.id,
                customer_id=customer_id,
            )

    def samples(self) -> list[Path]:
        """The sample request files, sorted."""
        return sorted((self.root / "samples").glob("*.json"))

    def read_sample(self, path: Path) -> Any:
        """One of :meth:`samples`, parsed: read contained in the template's folder (no link
        out of it); OSError or ValueError (not JSON) when it cannot be."""
        return json.loads(read_contained_text(path, self.root))


#: What a request's text may not hold: C0 control characters other than tab, line feed and
#: carriage return (no channel can show them, and XML, so MJML, cannot hold them), and lone
#: surrogates (not Unicode text: they cannot be written as UTF-8).
BAD_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]")


def _shape(obj: Any, limit: int) -> tuple[int, int, bool]:
    """``(depth, bound, bad_text)``: :func:`_depth`, an upper bound of ``len(json.dumps(obj))``,
    and whether a string or key may hold what :data:`BAD_TEXT` matches (True also for a
    value that is not plain JSON, such as a subclass of ``str``: :func:`text_fault` decides).

    The bound counts 12 characters per character of text (``json.dumps``
    writes at most a surrogate pair of ``\\uXXXX`` escapes for one), plus
    punctuation; anything but plain JSON values makes it unbounded.
    """
    stack: list[tuple[Any, int]] = [(obj, 1)]
    deepest = bound = 0
    bad = False
    texts: list[str] = []  # searched in one go at the end: one regex call, not one per text
    keep = texts.append
    while stack:
        item, depth = stack.pop()
        if depth > deepest:
            deepest = depth
            if deepest > limit:
                return deepest, bound, bad
        kind = type(item)
        if kind is str:
            bound += 12 * len(item) + 2
            keep(item)
        elif kind is dict:
            bound += 2
            for key, value in item.items():
                if type(key) is not str:
                    bound += MAX_REQUEST_BYTES + 1  # json.dumps decides (and may refuse)
                else:
                    bound += 12 * len(key) + 6
                    keep(key)
                stack.append((value, depth + 1))
        elif kind is list:
            bound += 2
            for value in item:
                bound += 2
                stack.append((value, depth + 1))
        elif kind is int:
            bound += item.bit_length() // 3 + 3  # decimal digits <= 0.302 * bits + 1
        elif kind is bool or item is None:
            bound += 5
        elif kind is float:
            bound += 32
            if not math.isfinite(item):
                return -1, bound, bad
        else:
            bound += MAX_REQUEST_BYTES + 1
            bad = True  # not plain JSON: text_fault reads what it may hold
    return deepest, bound, bad or BAD_TEXT.search("".join(texts)) is not None


def text_fault(obj: Any) -> tuple[str, str] | None:
    """``(JSON path, what is wrong)`` of the first string or key in ``obj`` that holds what
    :data:`BAD_TEXT` matches, or None. Names the character by code point, never the text.

    Strings of a subclass of ``str`` are read too; anything not a dict, list or string is
    passed over (the shape check says what it thinks of it).
    """
    stack: list[tuple[Any, list[Any]]] = [(obj, [])]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            found = BAD_TEXT.search(item)
            if found:
                return json_path(where), _describe_char(found.group())
        elif isinstance(item, dict):
            children = []
            for key, value in item.items():
                found = BAD_TEXT.search(key) if isinstance(key, str) else None
                if found:
                    return json_path(where), f"a field name {_describe_char(found.group())}"
                children.append((value, [*where, key]))
            stack.extend(reversed(children))
        elif isinstance(item, list | tuple):
            stack.extend(reversed([(value, [*where, i]) for i, value in enumerate(item)]))
    return None


def _describe_char(char: str) -> str:
    code = f"U+{ord(char):04X}"
    if "\ud800" <= char <= "\udfff":
        return f"holds a lone surrogate ({code}), which is not valid Unicode text"
    return (f"holds a control character ({code}); text may hold no control characters "
            "but tab, line feed and carriage return")


def escape_text(text: str) -> str:
    """``text`` with what :data:`BAD_TEXT` matches written as ``\\xNN`` / ``\\uNNNN`` escapes
    (a customer id an error carries: it must print, and write as UTF-8)."""
    return BAD_TEXT.sub(lambda found: repr(found.group())[1:-1], text)


def _raise_text_fault(obj: Any, customer_id: str | None) -> None:
    fault = text_fault(obj)
    if fault is not None:
        path, what = fault
        raise DataError(f"{path}: {what} [rule: text]", path=path, rule="text",
                        customer_id=customer_id)


@cache
def _request_validator() -> jsonschema.Draft202012Validator:
    """The request shape validator, built once (building one costs more than using it)."""
    return jsonschema.Draft202012Validator(load_schema("request"), format_checker=_FORMATS)


@cache
def request_fast_validator() -> Any:
    """The request shape compiled by fastjsonschema (raises when it refuses; plain JSON only)."""
    return _fast_validator(load_schema("request"), jsonschema.Draft202012Validator)


@cache
def _request_check() -> Check | None:
    validate = request_fast_validator()
    return None if validate is None else as_check(validate)


@cache
def request_shape_check() -> Callable[[Any], bool] | None:
    """The walk and the request schema in one pass (:mod:`ccm.render._request_shape`):
    True when both certainly accept; None when the bundled schema is not the one it was
    written for."""
    return request_check(MAX_DEPTH, _FORMATS)


#: ``json.dumps(obj, separators=(",", ":"))`` (ASCII) made once, for requests the one-pass
#: check accepted (exact JSON types, depth-bounded, so acyclic).
_COMPACT = json.JSONEncoder(separators=(",", ":"))
_COMPACT_ONCE = json_encoder_once(_COMPACT)
#: The escapes an ASCII JSON encoder writes for what :data:`BAD_TEXT` matches:
#: ``\u0000``-``\u001f`` but tab, line feed and carriage return (written ``\t \n \r``),
#: ``\b``, ``\f``, and surrogates. An escaped backslash before such letters matches too:
#: a false alarm, settled by the walk.
_JSON_BAD_TEXT = re.compile(r"\\(?:u00[01]|ud[89a-f]|[bf])")


def json_text_fits(text: str, obj: Any) -> bool:
    """True when ``text``, ``obj`` written as ASCII JSON (any key order, compact), shows
    ``obj`` within :data:`MAX_REQUEST_BYTES` (json's default separators add at most one
    character per separator) and free of text :data:`BAD_TEXT` refuses: the JSON escapes
    every such character, so text without such an escape needs no walk; with one (an emoji
    is a surrogate pair), :func:`text_fault` decides."""
    if 2 * len(text) > MAX_REQUEST_BYTES:
        return False
    # (Searched from the first backslash: there is none in a request of plain ASCII.)
    escape = text.find("\\")
    return (escape < 0 or _JSON_BAD_TEXT.search(text, escape) is None
            or text_fault(obj) is None)


def _certainly_plain(obj: Any) -> bool:
    """True when ``obj`` is certainly a request :func:`validate_request` accepts up to its
    time zone: the one-pass check (types, finite, depth, schema), then its compact JSON
    (:func:`json_text_fits`). False: not sure, the full checks say."""
    check = request_shape_check()
    if check is None or not check(obj):
        return False
    return json_text_fits(_COMPACT.encode(obj) if _COMPACT_ONCE is None else _COMPACT_ONCE(obj),
                          obj)


def describe_rule(err: Any) -> str:
    """What a jsonschema error's rule requires, in words, without the value that broke it.

    jsonschema's own messages quote the instance (``'1990-13-45' is not a
    'date'``); data errors land in logs and batch error files, so they say
    which rule failed and never repeat personal data.
    """
    rule, want = err.validator, err.validator_value
    if rule == "required":
        missing = [name for name in want if isinstance(err.instance, dict)
                   and name not in err.instance]
        return f"{missing[0] if missing else 'a field'!r} is required"
    if rule == "type":
        kinds = want if isinstance(want, str) else " or ".join(map(str, want))
        return f"must be of type {kinds}"
    if rule == "format":
        return f"must be a valid {want}"
    if rule == "pattern" and isinstance(err.schema, dict) and err.schema.get("errorMessage"):
        # The schema's own words for a pattern (customer.phone: "must be an E.164
        # number: ..."), clearer than the regular expression; as in ajv-errors.
        return str(err.schema["errorMessage"])
    words = {
        "minimum": "must be at least {}", "maximum": "must be at most {}",
        "exclusiveMinimum": "must be greater than {}", "exclusiveMaximum": "must be less than {}",
        "minLength": "must have at least {} characters",
        "maxLength": "must have at most {} characters",
        "minItems": "must have at least {} items", "maxItems": "must have at most {} items",
        "minProperties": "must have at least {} fields",
        "maxProperties": "must have at most {} fields",
        "multipleOf": "must be a multiple of {}", "pattern": "must match the pattern {}",
        "enum": "must be one of {}", "const": "must be {}",
    }
    if rule in words:
        return words[rule].format(json.dumps(want, ensure_ascii=False, default=str)[:200])
    if rule == "additionalProperties":
        extra = sorted(set(err.instance) - set(err.schema.get("properties", {}))) \
            if isinstance(err.instance, dict) else []
        return f"unexpected field(s): {', '.join(map(str, extra[:5]))}"
    if rule == "uniqueItems":
        return "items must be unique"
    return f"breaks the {rule} rule"


def validate_request(obj: Any) -> Request:
    """Check a request's shape and size (not its data contract) and build a :class:`Request`."""
    if not isinstance(obj, dict):
        raise DataError(f"$: a request must be a JSON object, got {type(obj).__name__}",
                        path="$", rule="type")
    customer_id = None
    if isinstance(obj, dict) and isinstance(obj.get("customer"), dict):
        customer_id = obj["customer"].get("id")
    if _certainly_plain(obj):  # the checks below would all pass: only the time zone is left
        return _checked_request(obj, customer_id)
    depth, bound, bad_text = _shape(obj, MAX_DEPTH)
    if bad_text and isinstance(customer_id, str):
        customer_id = escape_text(customer_id)
    if depth < 0:
        raise DataError("request holds NaN or Infinity: numbers must be finite",
                        path="$", rule="finite", customer_id=customer_id)
    if depth > MAX_DEPTH:
        raise DataError(
            f"request is nested deeper than {MAX_DEPTH} levels", path="$", rule="maxDepth",
            customer_id=customer_id,
        )
    if bad_text:
        _raise_text_fault(obj, customer_id)
    # Serialise only when the cheap upper bound does not already prove the size is fine.
    size = len(json.dumps(obj, default=str)) if bound > MAX_REQUEST_BYTES else 0
    if size > MAX_REQUEST_BYTES:
        raise DataError(
            f"request is {size} bytes, over the {MAX_REQUEST_BYTES} byte budget",
            path="$", rule="maxBytes", customer_id=customer_id,
        )
    fast = _request_check()
    errors = [] if fast is not None and fast(obj) else sorted(
        _request_validator().iter_errors(obj), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        path = json_path(err.absolute_path)
        raise DataError(
            f"{path}: {describe_rule(err)} [rule: {err.validator}]",
            path=path, rule=str(err.validator), customer_id=customer_id,
        )
    return _checked_request(obj, customer_id)


def _checked_request(obj: dict[str, Any], customer_id: Any) -> Request:
    """The :class:`Request` of ``obj``, whose shape, size and text were checked, after its
    time zone."""
    check_timezone(obj["customer"].get("timezone"), customer_id)
    request = Request.from_dict(obj)
    request.customer["id"] = str(request.customer["id"])
    # Its text was checked above (_shape): the engine need not walk it again when a caller
    # (a batch worker) hands it this Request (:func:`ccm.render.engine._request`).
    object.__setattr__(request, "_text_checked", True)
    return request


@lru_cache(maxsize=512)  # bounded: the names come from the input
def _known_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: "Europe" is a folder
        return False
    return True


def check_timezone(name: object, customer_id: object = None) -> None:
    """``customer.timezone`` is absent, empty or an IANA zone; else a :class:`DataError`.

    Checked with the request's shape, so an unknown zone is refused on every
    channel (dates would otherwise be shown in UTC without a word, and quiet
    hours could not be placed); the message does not repeat the value.
    """
    if isinstance(name, str) and name and not _known_zone(name):
        raise DataError(
            "$.customer.timezone: must be an IANA time zone name like Europe/Berlin "
            "[rule: format]", path="$.customer.timezone", rule="format",
            customer_id=customer_id)


def template_files(root: Path) -> list[Path]:
    """Every file of a template folder (the set its SHA-256 covers), hidden ones included.

    Read through :func:`ccm._files.contained_files`: a symlink leaving the
    folder, a FIFO or a device is refused with :class:`UnsafeFileError`.
    """
    return contained_files(root, skip_hidden=False)


def _json_key_line(text: str, parts: list[Any]) -> int | None:
    """The 1-based line of the key at ``parts`` in the JSON ``text``, found by looking for
    each key in turn after the one before (an index moves on to nothing); None at the top."""
    at, found = 0, None
    for part in parts:
        if isinstance(part, int):
            continue
        index = text.find(json.dumps(str(part)), at)
        if index < 0:
            break
        at, found = index + 1, text.count("\n", 0, index) + 1
    return found


def load_template(root: str | os.PathLike[str]) -> Template:
    """Load and validate one template folder."""
    root = Path(root).resolve()
    manifest = root / "template.yaml"
    if not manifest.is_file():
        raise TemplateError(f"{manifest}: no template.yaml", path=str(manifest))
    raw = load_yaml(manifest, TemplateError)
    if not isinstance(raw, dict):
        raise TemplateError(f"{manifest}: must be a mapping", path=str(manifest))
    validate_manifest(raw, "template", manifest, TemplateError)
    if raw["id"] != root.name:
        raise TemplateError(
            f"{manifest}: id: {raw['id']!r} does not match the folder name {root.name!r}",
            path=str(manifest), key="id",
        )
    channels = tuple(raw["channels"])
    for channel in CHANNELS:
        src = root / SOURCES[channel]
        if channel in channels and not src.is_file():
            raise TemplateError(
                f"{manifest}: channels: declares {channel} but {src.name} is missing",
                path=str(manifest), key="channels",
            )
        if channel not in channels and src.is_file():
            raise TemplateError(
                f"{src}: source for channel {channel!r}, which template.yaml does not declare",
                path=str(src), key="channels",
            )
    contract_path = root / str(raw.get("contract", "contract.schema.json"))
    try:
        contract = json.loads(read_contained_text(contract_path, root))
    except OSError as exc:
        raise TemplateError(f"{contract_path}: cannot read the data contract: {exc.strerror}",
                            path=str(contract_path)) from exc
    except json.JSONDecodeError as exc:
        raise TemplateError(f"{contract_path}:{exc.lineno}: invalid JSON: {exc.msg}",
                            path=str(contract_path), line=exc.lineno) from exc
    try:
        jsonschema.validators.validator_for(
            contract, default=jsonschema.Draft202012Validator).check_schema(contract)
    except jsonschema.SchemaError as exc:
        where = list(exc.absolute_path)
        line = _json_key_line(read_contained_text(contract_path, root), where)
        at = f"{contract_path}:{line}" if line else str(contract_path)
        message = exc.message if len(exc.message) <= 300 else exc.message[:300] + " [...]"
        raise TemplateError(f"{at}: not a valid JSON Schema: {json_path(where)}: {message}",
                            path=str(contract_path), line=line, key=json_path(where)) from exc
    # A regex that backtracks exponentially would let one request value hang validation.
    check_contract_patterns(contract, contract_path, str(raw["id"]))
    return Template(
        root=root,
        id=raw["id"],
        version=str(raw["version"]),
        message_type=raw["message_type"],
        journey=raw["journey"],
        channels=channels,
        contract=contract,
        raw=raw,
        sources_sha256=sha256_files(root, template_files(root)),
    )


def load_templates(folder: str | os.PathLike[str]) -> dict[str, Template]:
    """Load every ``<folder>/<id>/template.yaml``; keyed by id.

    All or nothing: one template that does not load (a symlink out of its
    folder, a manifest or contract that is wrong) fails the whole folder, so
    an engine never starts on a folder in an unknown state. The error is the
    broken template's own (its class, file and line), its message extended to
    name the template, the other broken ones, and what to do; ``template``
    in its context is the broken template's folder name.
    """
    base = Path(folder)
    if not base.is_dir():
        raise UnknownTemplate(f"templates folder {base} does not exist", available=[])
    out = {}
    broken: list[tuple[str, CCMError]] = []
    for manifest in sorted(base.glob("*/template.yaml")):
        try:
            tpl = load_template(manifest.parent)
        except (TemplateError, UnsafeFileError) as exc:
            broken.append((manifest.parent.name, exc))
            continue
        out[tpl.id] = tpl
    if broken:
        raise _folder_refused(base, broken)
    return out


def _folder_refused(base: Path, broken: list[tuple[str, CCMError]]) -> CCMError:
    """The first broken template's error, saying it stops every template of ``base``."""
    name, first = broken[0]
    also = [other for other, _ in broken[1:]]
    more = f" (and {', '.join(repr(n) for n in also)})" if also else ""
    message = (
        f"{first.message}; template {name!r}{more} does not load, and every template "
        f"of {base} is loaded before any renders, so none renders until it is fixed: "
        f"fix it (`ccm lint` lists every problem), or move "
        f"{base / name} out of the folder")
    error = type(first)(message, **{**first.context, "template": name})
    error.__cause__ = first
    return error
