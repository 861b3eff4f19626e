"""Signed tracking tokens and email link rewriting (render time).

A tracking token is a compact, URL-safe string that names one message and
what happened to it: a click (with the link's target), an open (the pixel)
or an unsubscribe; the same tokens open a confidential document's retrieval
page (``document``) and an email's hosted web version (``web``). It is
signed with HMAC-SHA256 under a :class:`TrackingKey` that lives outside the
record, so nobody can make one up, extend its life, point it at another URL,
or move it onto another message: all of these live inside the signed bytes.

The engine signs links here when it renders; :mod:`ccm.engagement.tracking`
turns verified tokens into record events and :mod:`ccm.engagement.app`
serves them over HTTP (the ``tracking`` extra).

Token layout (before base64url without padding)::

    version (1) | kind (1: c/o/u/d/w) | expires (4, unix seconds, big endian)
    | len(message_id) (2) | message_id (UTF-8) | target (UTF-8, click only)
    | HMAC-SHA256 over everything before it (32)

Logging: the ``ccm.render.links`` logger says at WARNING when a link is left
untracked because its tag could not be rewritten safely; nothing else.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import html
import html.parser as _html_parser
import logging
import os
import re
import secrets
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from ccm.errors import ConfigError, KeyConfigError, TokenError

__all__ = [
    "DOCUMENT_TTL_DAYS",
    "KEY_ENV",
    "KEY_FILE_ENV",
    "UNSUBSCRIBE_TTL_DAYS",
    "Kind",
    "TokenData",
    "TrackingKey",
    "document_url",
    "instrument_html",
    "sign",
    "unsubscribe_url",
    "verify",
    "web_version_url",
]

logger = logging.getLogger("ccm.render.links")
logger.addHandler(logging.NullHandler())

#: Environment variable holding the key itself (urlsafe base64, >= 32 bytes).
KEY_ENV = "CCM_TRACKING_KEY"
#: Environment variable naming a file that holds the key.
KEY_FILE_ENV = "CCM_TRACKING_KEY_FILE"
#: Unsubscribe links must keep working long after the mail was sent (CAN-SPAM
#: asks for 30 days at least; people unsubscribe from old mail). An opt-out only
#: ever narrows consent, so a long life costs nothing.
UNSUBSCRIBE_TTL_DAYS = 1825
MIN_KEY_BYTES = 32
#: A retrieval link to a confidential document works this long (then the page says
#: it has expired; the customer asks for a new one).
DOCUMENT_TTL_DAYS = 30

Kind = Literal["click", "open", "unsub", "document", "web"]

_VERSION = 1
_KIND_CODES: dict[str, bytes] = {
    "click": b"c", "open": b"o", "unsub": b"u", "document": b"d", "web": b"w",
}
_CODE_KINDS: dict[int, Kind] = {
    ord("c"): "click", ord("o"): "open", ord("u"): "unsub", ord("d"): "document", ord("w"): "web",
}
_HEADER = struct.Struct(">BcIH")
_MAC_BYTES = 32
_DOMAIN = b"ccm-tracking\x00"
_MAX_TOKEN_CHARS = 16_384
_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]+")
# WHATWG URL parsing drops these anywhere in a URL; so do we, before signing.
_URL_JUNK = re.compile(r"[\t\n\r]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


# --- the key -----------------------------------------------------------------


@dataclass(frozen=True)
class TrackingKey:
    """The secret that signs tracking tokens. Its ``repr`` shows a fingerprint only."""

    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.secret, bytes) or len(self.secret) < MIN_KEY_BYTES:
            raise KeyConfigError(
                f"the tracking key must be at least {MIN_KEY_BYTES} random bytes",
                key="tracking",
            )

    def __repr__(self) -> str:
        return f"TrackingKey(fingerprint={self.fingerprint!r})"

    __str__ = __repr__

    @property
    def fingerprint(self) -> str:
        """A short, non-secret id of the key (to tell keys apart in logs)."""
        return hashlib.sha256(b"ccm-key-id\x00" + self.secret).hexdigest()[:12]

    @classmethod
    def generate(cls) -> TrackingKey:
        """A new random 32-byte key."""
        return cls(secrets.token_bytes(MIN_KEY_BYTES))

    @classmethod
    def from_base64(cls, text: str) -> TrackingKey:
        """Decode a urlsafe base64 key (padding optional, surrounding space ignored)."""
        cleaned = text.strip()
        try:
            raw = base64.urlsafe_b64decode(cleaned + "=" * (-len(cleaned) % 4))
        except (binascii.Error, ValueError) as exc:
            raise KeyConfigError("the tracking key is not urlsafe base64", key="tracking") from exc
        return cls(raw)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> TrackingKey:
        """Read a key file written by :meth:`write` (urlsafe base64 text)."""
        try:
            text = Path(path).read_text("ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise KeyConfigError(
                f"cannot read the tracking key file {path}", key="tracking"
            ) from exc
        return cls.from_base64(text)

    @classmethod
    def load(
        cls,
        key_file: str | os.PathLike[str] | None = None,
        *,
        environ: Mapping[str, str] | None = None,
    ) -> TrackingKey:
        """The configured key: ``key_file``, else ``$CCM_TRACKING_KEY``, else the
        file named by ``$CCM_TRACKING_KEY_FILE``.

        Raises :class:`~ccm.errors.KeyConfigError` when none is set.
        """
        env = os.environ if environ is None else environ
        if key_file is not None:
            return cls.from_file(key_file)
        if env.get(KEY_ENV):
            return cls.from_base64(env[KEY_ENV])
        if env.get(KEY_FILE_ENV):
            return cls.from_file(env[KEY_FILE_ENV])
        raise KeyConfigError(
            f"tracking is configured but there is no tracking key: set {KEY_ENV} "
            f"(urlsafe base64 of {MIN_KEY_BYTES}+ random bytes) or {KEY_FILE_ENV}",
            key="tracking",
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TrackingKey:
        """The key from ``$CCM_TRACKING_KEY`` or ``$CCM_TRACKING_KEY_FILE`` (see :meth:`load`)."""
        return cls.load(environ=environ)

    def to_base64(self) -> str:
        """The key as urlsafe base64 text (what the env variable and key file hold)."""
        return base64.urlsafe_b64encode(self.secret).decode("ascii")

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write the key to a new file readable by its owner only."""
        target = Path(path)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(self.to_base64() + "\n")
        return target


# --- tokens ------------------------------------------------------------------


@dataclass(frozen=True)
class TokenData:
    """What a verified token says: which message, what kind, where to, until when."""

    kind: Kind
    message_id: str
    target: str | None
    expires_at: datetime


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _mac(key: TrackingKey, payload: bytes) -> bytes:
    return hmac.new(key.secret, _DOMAIN + payload, hashlib.sha256).digest()


def _clean_target(url: str) -> str | None:
    """The absolute http(s) URL a browser would follow for ``url``, else ``None``."""
    cleaned = _URL_JUNK.sub("", url).strip("\x00\x20\x0c")
    if _CONTROL.search(cleaned):
        return None
    try:
        parts = urlsplit(cleaned)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return cleaned


def sign(
    kind: Kind,
    message_id: str,
    *,
    key: TrackingKey,
    target: str | None = None,
    ttl_days: float = 90,
    now: datetime | None = None,
) -> str:
    """Make a token for ``message_id``; a ``click`` needs the absolute http(s) ``target``."""
    if kind not in _KIND_CODES:
        raise ValueError(f"unknown token kind {kind!r}")
    if kind == "click":
        cleaned = _clean_target(target or "")
        if cleaned is None:
            raise ValueError("a click token needs an absolute http(s) target URL")
        tail = cleaned.encode("utf-8")
    elif target is not None:
        raise ValueError(f"a {kind} token has no target")
    else:
        tail = b""
    mid = message_id.encode("utf-8")
    if not mid or len(mid) > 0xFFFF:
        raise ValueError("message_id must be 1 to 65535 bytes of UTF-8")
    if ttl_days <= 0:
        raise ValueError("ttl_days must be positive")
    expires = int((_now(now) + timedelta(days=ttl_days)).timestamp())
    if expires > 0xFFFFFFFF:
        raise ValueError("token expiry is too far in the future")
    payload = _HEADER.pack(_VERSION, _KIND_CODES[kind], expires, len(mid)) + mid + tail
    return _b64encode(payload + _mac(key, payload))


def _fail(message: str, reason: str) -> TokenError:
    return TokenError(message, reason=reason)


def verify(
    token: str,
    kind: Kind,
    *,
    key: TrackingKey,
    message_id: str | None = None,
    now: datetime | None = None,
) -> TokenData:
    """Check ``token`` is ours, of ``kind``, unexpired (and for ``message_id``, if given).

    Raises :class:`~ccm.errors.TokenError` whose ``reason`` is ``malformed``,
    ``forged``, ``kind``, ``message`` or ``expired``. The signature is checked
    first, so nothing about a forged token is believed.
    """
    if (
        not isinstance(token, str)
        or len(token) > _MAX_TOKEN_CHARS
        or not _TOKEN_RE.fullmatch(token)
    ):
        raise _fail("malformed tracking token", "malformed")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError) as exc:
        raise _fail("malformed tracking token", "malformed") from exc
    # Unused low bits of the last character would decode to the same bytes;
    # only the one canonical spelling of a token is accepted.
    if _b64encode(raw) != token or len(raw) < _HEADER.size + 1 + _MAC_BYTES:
        raise _fail("malformed tracking token", "malformed")
    payload, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
    if not hmac.compare_digest(mac, _mac(key, payload)):
        raise _fail("tracking token signature does not match", "forged")
    version, code, expires, mid_len = _HEADER.unpack_from(payload)
    body = payload[_HEADER.size :]
    found = _CODE_KINDS.get(code[0])
    if version != _VERSION or found is None or not 0 < mid_len <= len(body):
        raise _fail("unsupported tracking token", "malformed")
    try:
        mid = body[:mid_len].decode("utf-8")
        target = body[mid_len:].decode("utf-8") if found == "click" else None
    except UnicodeDecodeError as exc:
        raise _fail("malformed tracking token", "malformed") from exc
    if found != kind:
        raise _fail(f"expected a {kind} token, got a {found} token", "kind")
    if message_id is not None and not hmac.compare_digest(
        mid.encode("utf-8"), message_id.encode("utf-8")
    ):
        raise _fail("tracking token is for another message", "message")
    if target is not None and _clean_target(target) != target:
        raise _fail("tracking token target is not an http(s) URL", "malformed")
    expires_at = datetime.fromtimestamp(expires, UTC)
    if _now(now) >= expires_at:
        raise TokenError("tracking token has expired", reason="expired", message_id=mid)
    return TokenData(kind=found, message_id=mid, target=target, expires_at=expires_at)


# --- URLs and HTML -----------------------------------------------------------


def _base(base_url: str) -> str:
    parts = urlsplit(base_url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ConfigError(
            f"tracking base_url must be an absolute http(s) URL without query: {base_url!r}",
            key="tracking.base_url",
        )
    return base_url.strip().rstrip("/")


def unsubscribe_url(
    base_url: str,
    message_id: str,
    key: TrackingKey,
    *,
    ttl_days: float = UNSUBSCRIBE_TTL_DAYS,
    now: datetime | None = None,
) -> str:
    """``{base_url}/u/{token}``: for the ``List-Unsubscribe`` header and the footer link."""
    token = sign("unsub", message_id, key=key, ttl_days=ttl_days, now=now)
    return f"{_base(base_url)}/u/{token}"


def document_url(
    base_url: str,
    message_id: str,
    key: TrackingKey,
    *,
    ttl_days: float = DOCUMENT_TTL_DAYS,
    now: datetime | None = None,
) -> str:
    """``{base_url}/d/{token}``: the retrieval page of a confidential PDF message."""
    token = sign("document", message_id, key=key, ttl_days=ttl_days, now=now)
    return f"{_base(base_url)}/d/{token}"


def web_version_url(
    base_url: str,
    message_id: str,
    key: TrackingKey,
    *,
    ttl_days: float = 90,
    now: datetime | None = None,
) -> str:
    """``{base_url}/w/{token}``: the hosted web version ("view in browser") of an email."""
    token = sign("web", message_id, key=key, ttl_days=ttl_days, now=now)
    return f"{_base(base_url)}/w/{token}"


class _LinkFinder(HTMLParser):
    """Collect where each ``<a>``/``<area>`` start tag and the last ``</body>`` are."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[tuple[tuple[int, int], str, list[tuple[str, str | None]]]] = []
        self.body_end: tuple[int, int] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("a", "area"):
            text = self.get_starttag_text()
            if text is not None:
                self.links.append((self.getpos(), text, attrs))

    def handle_endtag(self, tag: str) -> None:
        if tag == "body":
            self.body_end = self.getpos()


# Read start tags with html.parser's own patterns, so our reading of a tag
# agrees with the attributes it reports (copies of 3.11's as a fallback).
_TAG_NAME: re.Pattern[str] = getattr(
    _html_parser, "tagfind_tolerant", re.compile(r"([a-zA-Z][^\t\n\r\f />\x00]*)(?:\s|/(?!>))*")
)
_ATTR: re.Pattern[str] = getattr(
    _html_parser,
    "attrfind_tolerant",
    re.compile(
        r"((?<=[\'\"\s/])[^\s/>][^\s/=>]*)(\s*=+\s*"
        r"(\'[^\']*\'|\"[^\"]*\"|(?![\'\"])[^>\s]*))?(?:\s|/(?!>))*"
    ),
)


def _href_span(tag_text: str, attrs: list[tuple[str, str | None]]) -> tuple[int, int] | None:
    """Where the first ``href`` value sits in ``tag_text``; ``None`` if unsure."""
    m = _TAG_NAME.match(tag_text, 1)
    if m is None:
        return None
    k = m.end()
    names: list[str] = []
    span: tuple[int, int] | None = None
    while k < len(tag_text):
        a = _ATTR.match(tag_text, k)
        if a is None or a.end() == k:
            break
        name = a.group(1).lower()
        names.append(name)
        if name == "href" and span is None and a.group(2):
            span = a.span(3)
        k = a.end()
    # Rewrite only when our reading of the tag agrees with the parser's.
    if names != [name for name, _ in attrs]:
        return None
    return span


def _line_starts(text: str) -> list[int]:
    return [0, *(m.end() for m in re.finditer("\n", text))]


def instrument_html(
    html_doc: str,
    *,
    message_id: str,
    base_url: str,
    key: TrackingKey,
    pixel: bool = True,
    ttl_days: float = 90,
    unsubscribe_url: str | None = None,
    now: datetime | None = None,
) -> str:
    """Rewrite absolute http(s) links to signed ``/c/`` URLs and add the ``/o/`` pixel.

    Left alone: ``mailto:``, ``tel:``, anchors and other relative links, links
    marked ``data-ccm="unsubscribe"`` or ``data-ccm="notrack"``, the
    ``unsubscribe_url`` given, and links already under ``base_url``. Only
    the ``href`` values change (and the pixel is inserted before the last
    ``</body>``, or appended); every other byte is kept.
    """
    base = _base(base_url)
    moment = _now(now)
    finder = _LinkFinder()
    finder.feed(html_doc)
    finder.close()
    starts = _line_starts(html_doc)
    own_prefix = base + "/"
    edits: list[tuple[int, int, str]] = []
    for (line, col), tag_text, attrs in finder.links:
        values = dict(reversed(attrs))  # first occurrence wins, as in browsers
        href = values.get("href")
        if href is None:
            continue
        marker = (values.get("data-ccm") or "").strip().lower()
        if marker in ("unsubscribe", "notrack", "no-track"):
            continue
        target = _clean_target(href)
        if target is None or target.startswith(own_prefix):
            continue
        if unsubscribe_url is not None and target == _clean_target(unsubscribe_url):
            continue
        start = starts[line - 1] + col
        span = _href_span(tag_text, attrs)
        if html_doc[start : start + len(tag_text)] != tag_text or span is None:
            logger.warning("left a link untracked in message %s: unusual tag markup", message_id)
            continue
        token = sign("click", message_id, key=key, target=target, ttl_days=ttl_days, now=moment)
        url = html.escape(f"{base}/c/{token}", quote=True)
        edits.append((start + span[0], start + span[1], f'"{url}"'))
    if pixel:
        token = sign("open", message_id, key=key, ttl_days=ttl_days, now=moment)
        src = html.escape(f"{base}/o/{token}", quote=True)
        img = f'<img src="{src}" width="1" height="1" alt="" style="display:none">'
        if finder.body_end is not None:
            line, col = finder.body_end
            at = starts[line - 1] + col
        else:
            at = len(html_doc)
        edits.append((at, at, img))
    out: list[str] = []
    pos = 0
    for begin, end, text in sorted(edits, key=lambda e: e[0]):
        out.append(html_doc[pos:begin])
        out.append(text)
        pos = end
    out.append(html_doc[pos:])
    return "".join(out)
