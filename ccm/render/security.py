"""PDF encryption (AES-256, revision 6) and the pack's PDF password rule.

A confidential PDF is encrypted with a *user* password derived from the
customer's data by the pack's :class:`PasswordRule` (e.g. the date of birth
as ``DDMMYYYY``) and no owner password anyone holds (random owner entries), so
the customer opens it with user rights: printing allowed, changing and copying
not. qpdf (pikepdf)
encrypts; :func:`decrypt_pdf` gives the print stream its unencrypted copy.

Passwords never leave this module except as the return value of
:func:`password_for`: they are not logged, not put in exception messages
(errors name the customer field and the customer id, never the value), and
no exception raised here chains one that quotes the value.
"""

from __future__ import annotations

import dataclasses
import io
import math
import re
import secrets
import stringprep
import unicodedata
from collections.abc import Callable, Mapping
from datetime import date, datetime
from types import MappingProxyType
from typing import Any

from pypdf.constants import UserAccessPermissions as Perm

from ccm.errors import PackError, PasswordRuleError

__all__ = [
    "DATE_FORMATS",
    "PERMISSIONS",
    "PasswordRule",
    "decrypt_pdf",
    "encrypt_pdf",
    "entropy_bits",
    "password_for",
]

#: Supported ``format`` values for date fields and how each is written.
DATE_FORMATS: Mapping[str, str] = MappingProxyType(
    {
        "DDMMYYYY": "{d:02d}{m:02d}{y:04d}",
        "YYYYMMDD": "{y:04d}{m:02d}{d:02d}",
        "MMDDYYYY": "{m:02d}{d:02d}{y:04d}",
        "DDMMYY": "{d:02d}{m:02d}{yy:02d}",
    }
)

#: User rights: print (also high quality) and accessibility extraction; no
#: changes, annotations, forms, assembly or copying. Reserved bits are 1 as
#: the PDF specification requires.
PERMISSIONS: Perm = Perm.all() & ~(
    Perm.MODIFY | Perm.EXTRACT | Perm.ADD_OR_MODIFY | Perm.FILL_FORM_FIELDS | Perm.ASSEMBLE_DOC
)

_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
# Rough guessing entropy of field kinds, by the field's last name segment.
_DATE_BITS = math.log2(365.25 * 80)  # a birth date within an 80-year span
_POSTCODE_BITS = 20.0  # ~1.7 M UK postcodes; 5-digit codes are ~16.6
_POSTCODE_FIELDS = frozenset(
    {"postcode", "post_code", "postal_code", "postalcode", "zip", "zip_code", "zipcode", "plz"}
)
_DATE_HINTS = ("date", "birth", "dob")


# --- the rule -----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PasswordRule:
    """How a confidential PDF's user password is made from customer fields.

    ``field`` is a customer field (dotted for nested ones, e.g.
    ``address.postcode``); ``format`` writes a date field (given as ISO
    ``YYYY-MM-DD``) in one of :data:`DATE_FORMATS`, ``None`` takes the value
    as it is (surrounding whitespace stripped). ``suffix_field`` is appended
    with all whitespace removed (a postcode). ``hint`` tells the customer the
    rule, per locale; it is the only part that goes into messages.
    """

    field: str
    format: str | None = None
    suffix_field: str | None = None
    hint: Mapping[str, str] = dataclasses.field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        for name in ("field", "suffix_field"):
            value = getattr(self, name)
            if value is None and name == "suffix_field":
                continue
            if not isinstance(value, str) or not value.strip() or ".." in value:
                raise _rule_error(name, f"must be a customer field name, got {value!r}")
        if self.format is not None and self.format not in DATE_FORMATS:
            raise _rule_error(
                "format", f"{self.format!r} is not one of {', '.join(DATE_FORMATS)}"
            )
        if not isinstance(self.hint, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.hint.items()
        ):
            raise _rule_error("hint", "must map locales to text")
        object.__setattr__(self, "hint", MappingProxyType(dict(self.hint)))

    @classmethod
    def from_mapping(cls, obj: Mapping[str, Any]) -> PasswordRule:
        """Build from ``pack.yaml``'s ``security.pdf_password`` mapping."""
        if not isinstance(obj, Mapping):
            raise _rule_error("", "must be a mapping")
        unknown = set(obj) - {"field", "format", "suffix_field", "hint"}
        if unknown:
            raise _rule_error("", f"unknown key(s) {', '.join(sorted(map(str, unknown)))}")
        if "field" not in obj:
            raise _rule_error("field", "is required")
        hint = obj.get("hint") or {}
        if isinstance(hint, str):
            hint = {"*": hint}
        return cls(
            field=obj["field"],
            format=obj.get("format"),
            suffix_field=obj.get("suffix_field"),
            hint=hint,
        )

    def hint_for(self, locale: str, default_locale: str | None = None) -> str | None:
        """The hint for ``locale``: exact, then same language, then the default locale."""
        if locale in self.hint:
            return self.hint[locale]
        language = _language(locale)
        for key, text in self.hint.items():
            if _language(key) == language:
                return text
        if default_locale is not None and default_locale in self.hint:
            return self.hint[default_locale]
        return self.hint.get("*")

    @property
    def fields(self) -> tuple[str, ...]:
        """The customer fields the password is made of."""
        return (self.field,) if self.suffix_field is None else (self.field, self.suffix_field)


def _language(locale: str) -> str:
    return locale.replace("-", "_").split("_", 1)[0].lower()


def _rule_error(key: str, problem: str) -> PackError:
    full = "security.pdf_password" + (f".{key}" if key else "")
    return PackError(f"{full}: {problem}", path=None, key=full)


# --- applying the rule --------------------------------------------------------


_MISSING = object()


def _lookup(customer: Mapping[str, Any], dotted: str) -> Any:
    value: Any = customer
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _as_date(value: Any) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not _ISO_DATE.fullmatch(value.strip()):
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        # The message quotes the value; return None so no caller chains it.
        return None


def _format_date(day: date, fmt: str) -> str:
    return DATE_FORMATS[fmt].format(d=day.day, m=day.month, y=day.year, yy=day.year % 100)


def _as_text(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    return str(value)


def password_for(rule: PasswordRule, customer: Mapping[str, Any]) -> str:
    """The user password ``rule`` gives for ``customer``.

    Raises :class:`~ccm.errors.PasswordRuleError` naming the field and the
    customer id -- never the value -- when a field is missing or empty, a
    date is not ISO ``YYYY-MM-DD``, or the result is not usable as a PDF
    password (SASLprep, RFC 4013).
    """
    customer_id = str(customer.get("id", ""))

    def fail(field_name: str, problem: str) -> PasswordRuleError:
        return PasswordRuleError(
            f"customer {customer_id!r}: PDF password field {field_name!r} {problem}",
            field=field_name,
            customer_id=customer_id,
        )

    parts: list[str] = []
    for name in rule.fields:
        value = _lookup(customer, name)
        if value is _MISSING or value is None or value == "":
            raise fail(name, "is missing or empty")
        if name == rule.field and rule.format is not None:
            day = _as_date(value)
            if day is None:
                raise fail(name, "is not a date (expected ISO YYYY-MM-DD)")
            parts.append(_format_date(day, rule.format))
            continue
        text = _as_text(value)
        if text is None:
            raise fail(name, f"is not text ({type(value).__name__})")
        text = text.strip() if name == rule.field else "".join(text.split())
        if not text:
            raise fail(name, "is blank")
        parts.append(text)
    password = "".join(parts)
    prepared = _saslprep(password)
    if prepared is None or not prepared.strip():
        raise fail(rule.field if len(parts) == 1 else "+".join(rule.fields),
                   "gives a password PDF encryption cannot use (SASLprep)")
    return password


def entropy_bits(rule: PasswordRule, sample: Mapping[str, Any] | None = None) -> float:
    """A rough estimate of how many bits an attacker must guess (for the linter).

    Dates count as a birth date in an 80-year span (~14.8 bits), postcodes
    ~20 bits. Other fields are estimated from ``sample`` (a customer) when
    given -- digits count log2(10) each, other text by its character classes
    -- and count 0 otherwise. It ignores what an attacker may already know:
    an id printed on the letter adds nothing.
    """
    total = 0.0
    for name in rule.fields:
        known = _known_bits(rule, name)
        if known is not None:
            total += known
        elif sample is not None:
            text = _as_text(_lookup(sample, name))
            total += _text_bits("".join(text.split())) if text else 0.0
    return total


def needs_sample(rule: PasswordRule) -> bool:
    """Whether :func:`entropy_bits` needs a sample customer for some field of ``rule`` (one
    neither a date nor a postcode): without one it would count that field as 0 bits."""
    return any(_known_bits(rule, name) is None for name in rule.fields)


def _known_bits(rule: PasswordRule, name: str) -> float | None:
    """The bits of a field whatever its value (a date, a postcode), or None."""
    leaf = name.rsplit(".", 1)[-1].lower()
    if (name == rule.field and rule.format is not None) or any(
        hint in leaf for hint in _DATE_HINTS
    ):
        return _DATE_BITS
    if leaf in _POSTCODE_FIELDS:
        return _POSTCODE_BITS
    return None


def _text_bits(text: str) -> float:
    if text.isdigit():
        return len(text) * math.log2(10)
    alphabet = (
        10 * any(c.isdigit() for c in text)
        + 26 * any(c.islower() for c in text)
        + 26 * any(c.isupper() for c in text)
        + 33 * any(not c.isalnum() for c in text)
    )
    return len(text) * math.log2(max(alphabet, 2))


# --- SASLprep -----------------------------------------------------------------


def _saslprep(password: str) -> str | None:
    """RFC 4013 SASLprep as PDF 2.0 applies it to AES-256 passwords.

    Returns the prepared password, or ``None`` if it is prohibited. Never
    raises: pypdf's own check would log or raise a message naming the
    offending character.
    """
    mapped = "".join(
        " " if stringprep.in_table_c12(c) else c
        for c in password
        if not stringprep.in_table_b1(c)
    )
    prepared = unicodedata.normalize("NFKC", mapped)
    prohibited = (
        stringprep.in_table_c12, stringprep.in_table_c21, stringprep.in_table_c22,
        stringprep.in_table_c3, stringprep.in_table_c4, stringprep.in_table_c5,
        stringprep.in_table_c6, stringprep.in_table_c7, stringprep.in_table_c8,
        stringprep.in_table_c9, stringprep.in_table_a1,
    )
    if any(check(c) for c in prepared for check in prohibited):
        return None
    if any(stringprep.in_table_d1(c) for c in prepared):
        if any(stringprep.in_table_d2(c) for c in prepared):
            return None
        if not (stringprep.in_table_d1(prepared[0]) and stringprep.in_table_d1(prepared[-1])):
            return None
    return prepared


# --- encryption ---------------------------------------------------------------


def _checked(password: str, which: str) -> str:
    if not isinstance(password, str) or not password:
        raise ValueError(f"{which} password must be a non-empty string")
    prepared = _saslprep(password)
    if prepared is None:
        raise ValueError(f"{which} password has characters PDF encryption cannot use (SASLprep)")
    if not prepared.strip():
        raise ValueError(f"{which} password is blank once prepared (SASLprep)")
    return prepared


def _pike_permissions() -> Any:
    """:data:`PERMISSIONS` as qpdf's permission flags."""
    import pikepdf

    def allowed(flag: Perm) -> bool:
        return flag in PERMISSIONS

    return pikepdf.Permissions(
        accessibility=allowed(Perm.EXTRACT_TEXT_AND_GRAPHICS),
        extract=allowed(Perm.EXTRACT),
        modify_annotation=allowed(Perm.ADD_OR_MODIFY),
        modify_assembly=allowed(Perm.ASSEMBLE_DOC),
        modify_form=allowed(Perm.FILL_FORM_FIELDS),
        modify_other=allowed(Perm.MODIFY),
        print_lowres=allowed(Perm.PRINT),
        print_highres=allowed(Perm.PRINT_TO_REPRESENTATION),
    )


def encrypt_pdf(
    pdf: bytes,
    user_password: str,
    *,
    owner_password: str | None = None,
    edit: Callable[[Any], None] | None = None,
) -> bytes:
    """Encrypt ``pdf`` with AES-256 (R6), user rights :data:`PERMISSIONS`.

    Without an owner password no password gives owner rights: the owner
    entries (``/O``, ``/OE``) are random bytes -- or, when qpdf has to make
    the encryption dictionary itself (a PDF whose trailer
    :mod:`ccm.render._r6` does not read), those of a random 256-bit password
    nobody keeps; the two cannot be told apart. A given
    owner password must differ from the user password -- otherwise opening
    with the user password would give owner rights. Metadata and the
    structure tree (tagging) are kept. Raises :class:`ValueError` for an
    empty, blank or unusable password (the message never contains it), an
    already encrypted PDF or bytes that are not a PDF.

    qpdf (through pikepdf, in C++) does the work, about four times faster
    than pypdf on a tagged statement, whose structure tree pypdf re-builds
    object by object; it writes object streams (smaller files). Passwords
    are handed over SASLprep-prepared, as PDF 2.0 requires for AES-256 and
    as readers prepare them. ``edit``, when given, is called with the opened
    ``pikepdf.Pdf`` before it is saved, so a caller can change the document
    in the same pass (see :func:`ccm.channels.pdf.delivery_from_archival`).
    """
    import pikepdf

    user = _checked(user_password, "user")
    if owner_password is None:
        owner = secrets.token_urlsafe(32)
    else:
        owner = _checked(owner_password, "owner")
        if owner == user:
            raise ValueError("owner password must differ from the user password")

    encryption: Any = True
    prepared = _open_with_ready_encryption(
        pdf, user, None if owner_password is None else owner
    )
    if prepared is not None:
        # The encryption dictionary is made already: qpdf keeps it and encrypts.
        document = prepared
    else:
        try:
            document = pikepdf.open(io.BytesIO(pdf))
        except pikepdf.PasswordError:
            document = None  # encrypted with a user password
        except pikepdf.PdfError:
            raise ValueError("not a readable PDF") from None
        if document is None:
            raise ValueError("PDF is already encrypted")
        if document.is_encrypted:
            document.close()
            raise ValueError("PDF is already encrypted")
        encryption = pikepdf.Encryption(
            user=user, owner=owner, R=6, aes=True, metadata=True, allow=_pike_permissions(),
        )
    with document:
        if edit is not None:
            edit(document)
        out = io.BytesIO()
        document.save(
            out,
            encryption=encryption,
            object_stream_mode=pikepdf.ObjectStreamMode.generate,
            fix_metadata_version=False,
        )
    return out.getvalue()


def _permissions_p() -> int:
    """:data:`PERMISSIONS` as the signed 32-bit ``/P`` value."""
    value = int(PERMISSIONS) & 0xFFFFFFFC  # bits 1 and 2 are 0
    return value - (1 << 32) if value >= 1 << 31 else value


def _open_with_ready_encryption(pdf: bytes, user: str, owner: str | None) -> Any:
    """``pdf`` opened by qpdf with an AES-256 encryption computed by :mod:`ccm.render._r6`.

    Saved with ``encryption=True`` it is encrypted for ``user`` and ``owner``
    (``None``: random owner entries, no owner password), as
    ``pikepdf.Encryption(R=6, aes=True, metadata=True)`` would do it, but
    without qpdf's slow key set-up (≈ 10 ms). ``None`` when the PDF is not one
    this path reads cleanly (qpdf then does everything, and reports errors).
    """
    import pikepdf

    from ccm.render._r6 import identity_encrypted

    ready = identity_encrypted(pdf, user, owner, _permissions_p())
    if ready is None:
        return None
    data, key = ready
    try:
        document = pikepdf.open(io.BytesIO(data), password=key.hex(), hex_password=True)
    except pikepdf.PdfError:
        return None
    encryption = document.encryption
    if document.get_warnings() or not document.is_encrypted or encryption.R != 6:
        document.close()
        return None
    return document


def decrypt_pdf(pdf: bytes, password: str) -> bytes:
    """``pdf`` (from :func:`encrypt_pdf`) opened with ``password`` and written unencrypted.

    For the print stream, which print houses need in the clear. Raises
    :class:`ValueError` -- quoting nothing -- when the password does not open it.
    """
    import pikepdf

    prepared = _checked(password, "user")
    failed = False
    try:
        document = pikepdf.open(io.BytesIO(pdf), password=prepared)
    except pikepdf.PasswordError:
        failed = True
    if failed:  # raised outside the except block: nothing chained
        raise ValueError("the password does not open this PDF")
    with document:
        out = io.BytesIO()
        document.save(out, object_stream_mode=pikepdf.ObjectStreamMode.generate,
                      fix_metadata_version=False)
    return out.getvalue()
