"""A request's plain-JSON walk and ``ccm/schemas/request.schema.json`` in one pass.

The SMS plan (:mod:`ccm.render.smsplan`) checked each request twice before its
contract: a walk (exact JSON types, finite numbers, at most ``MAX_DEPTH``
deep), then the request schema compiled by fastjsonschema (about 9 µs
together). :func:`request_check` does both at once for the requests a batch
carries: it reads the customer's fields by name, as the schema lists them,
and walks ``data`` alone (the schema only wants an object there).

It only answers *certainly valid* (``True``) or *not sure* (``False``): a
field it does not know (the schema allows any), a number where text is
usual, an id that is neither ``str`` nor ``int``, anything the schema or the
walk refuses. For ``False`` the plan runs the walk and the compiled schema
as before, so a refused request still reaches the full path and its error
naming the field: detected, not guessed.

The check is written for one version of the schema: :data:`PINNED` is the
SHA-256 of its canonical JSON. :func:`request_check` returns None when the
bundled schema differs (the plan then keeps the two checks), and
``tests/batch/test_fast_rows.py`` fails, asking for this module to be
read against the new schema. Patterns are the schema's own strings.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable
from typing import Any

from ccm._schema import load_schema
from ccm.render._contracts import _remembered

__all__ = ["PINNED", "plain_levels", "request_check", "schema_sha256"]

#: :func:`schema_sha256` of the request schema this module implements.
PINNED = "4bfb536417f2526b0f8e04811495fcb82a687e23d6c0ebf5a29162f57e29ee3a"
_SCALARS = frozenset({str, int, bool, type(None)})


def schema_sha256(schema: dict[str, Any]) -> str:
    """SHA-256 of ``schema`` as canonical JSON (sorted keys, compact, ASCII)."""
    text = json.dumps(schema, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def request_check(max_depth: int, format_checker: Any) -> Callable[[Any], bool] | None:
    """The fused check (True: the walk and the request schema both accept), or None when
    the bundled request schema is not the one this module was written for.

    ``max_depth``: the walk's limit (:data:`ccm.render.template.MAX_DEPTH`);
    ``format_checker``: the slow path's ``jsonschema`` format checker (``date``).
    """
    schema = load_schema("request")
    if schema_sha256(schema) != PINNED:
        return None
    fields = schema["properties"]["customer"]["properties"]
    # Text fields with only a type and a maximum length (none has a minimum but the code's).
    plain_text: dict[str, int] = {
        name: fields[name]["maxLength"]
        for name in ("name", "salutation", "locale", "timezone", "segment")}
    id_most = fields["id"]["maxLength"]
    code_most = fields["document_code"]["maxLength"]
    email_most, phone_most = fields["email"]["maxLength"], fields["phone"]["maxLength"]
    # fastjsonschema searches with the pattern as written (no unescaped "$" to rewrite).
    email_ok = re.compile(fields["email"]["pattern"]).search
    phone_ok = re.compile(fields["phone"]["pattern"]).search
    is_date = _remembered(format_checker, "date")
    address = fields["address"]["properties"]
    lines_most = address["lines"]["maxItems"]
    line_most = address["lines"]["items"]["maxLength"]
    address_text: dict[str, int] = {
        name: address[name]["maxLength"] for name in ("postcode", "city", "country")}

    def check(obj: Any) -> bool:
        if type(obj) is not dict:
            return False
        size = len(obj)
        customer = obj.get("customer")
        data = obj.get("data")
        # Only "customer", and "data" when there is one (an exact str each: the walk's rule).
        if size == 2:
            if data is None:
                return False
        elif size != 1:
            return False
        for key in obj:
            if type(key) is not str:
                return False
        if type(customer) is not dict or "id" not in customer:
            return False
        for key, value in customer.items():
            if type(key) is not str:
                return False
            most = plain_text.get(key)
            if most is not None:
                if type(value) is not str or len(value) > most:
                    return False
            elif key == "id":
                kind = type(value)
                if kind is str:
                    if not 0 < len(value) <= id_most:
                        return False
                elif kind is not int:
                    return False
            elif key == "phone":
                if type(value) is not str or len(value) > phone_most or not phone_ok(value):
                    return False
            elif key == "email":
                if type(value) is not str or len(value) > email_most or not email_ok(value):
                    return False
            elif key == "consents":
                if type(value) is not dict:
                    return False
                for name, given in value.items():
                    if type(name) is not str or type(given) is not bool:
                        return False
            elif key == "address":
                if type(value) is not dict:
                    return False
                for name, part in value.items():
                    if type(name) is not str:
                        return False
                    if name == "lines":
                        if type(part) is not list or len(part) > lines_most:
                            return False
                        for line in part:
                            if type(line) is not str or len(line) > line_most:
                                return False
                    else:
                        most = address_text.get(name)
                        if most is None or type(part) is not str or len(part) > most:
                            return False
            elif key == "date_of_birth":
                if type(value) is not str or not is_date(value):
                    return False
            elif key == "document_code":
                if type(value) is not str or not 0 < len(value) <= code_most:
                    return False
            else:  # a field the schema allows as anything: the walk and the schema decide
                return False
        if data is None:
            return True
        if type(data) is not dict:
            return False
        # The plain walk of data, which sits at the request's second level.
        return plain_levels([data], 1, max_depth)

    return check


def plain_levels(level: list[Any], depth: int, max_depth: int) -> bool:
    """True when the values of ``level`` (at ``depth``) and everything under them are of
    exact JSON types (``str`` keys), finite, and no deeper than ``max_depth``: one
    level-by-level walk, no recursion."""
    isfinite, scalars = math.isfinite, _SCALARS
    while level:
        depth += 1
        if depth > max_depth:
            return False
        below: list[Any] = []
        for item in level:
            kind = type(item)
            if kind is dict:
                for key in item:
                    if type(key) is not str:
                        return False
                below.extend(item.values())
            elif kind is list:
                below.extend(item)
            elif kind is float:
                if not isfinite(item):
                    return False
            elif kind not in scalars:
                return False
        level = below
    return True
