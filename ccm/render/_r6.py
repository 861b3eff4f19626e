"""The AES-256 (revision 6) encryption dictionary computed here, so qpdf only encrypts.

qpdf's own AES-256 set-up (``pikepdf.Encryption(R=6)``) costs ≈ 10 ms per
file whatever its size: it runs the password hash of ISO 32000-2 algorithm
2.B four times (``U``, ``UE``, ``O``, ``OE``) with its built-in SHA-2 and AES,
and a statement's whole qpdf pass is ≈ 13 ms. The same hash with
:mod:`hashlib` and ``cryptography`` (OpenSSL) costs ≈ 1 ms per run.

qpdf has no call that takes a ready encryption dictionary and key, but it
keeps ("preserves") the encryption of the file it opened, and it opens a file
with the file key itself instead of a password (``hex_password``).
:func:`identity_encrypted` therefore appends an incremental update to the
PDF whose trailer carries an encryption dictionary computed here -- the
passwords' ``U``/``UE``/``O``/``OE``/``Perms``, AES-256 -- with ``/Identity``
crypt filters, so the unencrypted bytes read as they are. Opened with the
file key and saved with ``encryption=True``, qpdf writes every string and
stream encrypted with AES-256 (it always uses AES when it copies encryption
of version 4 or later) under that dictionary: the same file qpdf makes with
``pikepdf.Encryption(R=6, aes=True, metadata=True)``, without the dear set-up.

Anything this module does not expect (no trailer found, an ``/Encrypt`` or
``/XRefStm`` already there, a reference stream it cannot read) gives ``None``,
and :func:`ccm.render.security.encrypt_pdf` lets qpdf do all of it instead.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = ["encryption_dictionary", "hash_2b", "identity_encrypted"]

_HASHES = (hashlib.sha256, hashlib.sha384, hashlib.sha512)
_ZERO_IV = bytes(16)
#: A password is used up to this many UTF-8 bytes (ISO 32000-2, 7.6.4.3.3).
_MAX_PASSWORD = 127


def hash_2b(password: bytes, salt: bytes, udata: bytes) -> bytes:
    """ISO 32000-2 algorithm 2.B: the revision 6 hash of ``password`` (32 bytes)."""
    k = hashlib.sha256(password + salt + udata).digest()
    count = 0
    while True:
        count += 1
        e = Cipher(algorithms.AES(k[:16]), modes.CBC(k[16:32])).encryptor().update(
            (password + k + udata) * 64
        )
        # The first 16 bytes of E as a number, mod 3, is their byte sum mod 3 (256 = 1 mod 3).
        k = _HASHES[sum(e[:16]) % 3](e).digest()
        if count >= 64 and e[-1] <= count - 32:
            return k[:32]


def _cbc_no_iv(key: bytes, data: bytes) -> bytes:
    return Cipher(algorithms.AES(key), modes.CBC(_ZERO_IV)).encryptor().update(data)


def encryption_dictionary(
    user: str, owner: str | None, permissions: int
) -> tuple[bytes, bytes]:
    """A fresh file key and the ``/Encrypt`` entries for it (algorithms 8, 9 and 10).

    ``user`` and ``owner`` are SASLprep-prepared passwords; ``permissions``
    is the signed 32-bit ``/P`` value. Returns ``(file key, dictionary body)``,
    the body being the ``/U /UE /O /OE /Perms /P`` entries as PDF source.

    ``owner=None`` means no owner password at all: ``/O`` and ``/OE`` are
    random bytes, so no password opens the file with owner rights. To anyone
    without the password they are indistinguishable from the entries of a
    random owner password nobody keeps (hash outputs, an AES-256 encryption
    under an unknown key, random salts), and they save two of the four
    password hashes.
    """
    upw = user.encode("utf-8")[:_MAX_PASSWORD]
    key = os.urandom(32)
    salts = os.urandom(32)
    u_valid, u_key, o_valid, o_key = salts[:8], salts[8:16], salts[16:24], salts[24:]
    u = hash_2b(upw, u_valid, b"") + u_valid + u_key
    ue = _cbc_no_iv(hash_2b(upw, u_key, b""), key)
    if owner is None:
        o, oe = os.urandom(32) + o_valid + o_key, os.urandom(32)
    else:
        opw = owner.encode("utf-8")[:_MAX_PASSWORD]
        o = hash_2b(opw, o_valid, u) + o_valid + o_key
        oe = _cbc_no_iv(hash_2b(opw, o_key, u), key)
    perms_block = struct.pack("<i", permissions) + b"\xff\xff\xff\xffTadb" + os.urandom(4)
    perms = Cipher(algorithms.AES(key), modes.ECB()).encryptor().update(perms_block)
    body = b"/P %d/O<%s>/U<%s>/OE<%s>/UE<%s>/Perms<%s>" % (
        permissions, o.hex().encode(), u.hex().encode(), oe.hex().encode(),
        ue.hex().encode(), perms.hex().encode(),
    )
    return key, body


# --- the trailer --------------------------------------------------------------

_WHITE = frozenset(b"\x00\t\n\x0c\r ")
_DELIMITERS = frozenset(b"()<>[]{}/%")
_STARTXREF = re.compile(rb"startxref\s+(\d+)\s+%%EOF\s*\Z")
_STREAM_OBJECT = re.compile(rb"\d+\s+\d+\s+obj\s*")
_REFERENCE = re.compile(rb"\d+\s+\d+\s+R\Z")
#: Entries of a cross-reference stream's dictionary that describe that section, not the file.
_SECTION_KEYS = frozenset({
    b"/Type", b"/Index", b"/W", b"/Filter", b"/DecodeParms", b"/Length", b"/F",
    b"/FFilter", b"/FDecodeParms", b"/DL", b"/Prev", b"/XRefStm", b"/Encrypt",
})


class _Unexpected(Exception):
    """The trailer is not in a shape this module reads; qpdf will do everything."""


def _skip_white(data: bytes, i: int) -> int:
    while i < len(data):
        if data[i] in _WHITE:
            i += 1
        elif data[i] == 0x25:  # % comment, to the end of the line
            while i < len(data) and data[i] not in b"\r\n":
                i += 1
        else:
            return i
    raise _Unexpected


def _token_end(data: bytes, i: int) -> int:
    while i < len(data) and data[i] not in _WHITE and data[i] not in _DELIMITERS:
        i += 1
    return i


def _object_end(data: bytes, i: int) -> int:
    """Where the PDF object starting at ``data[i]`` ends (a reference is three objects)."""
    c = data[i]
    if data.startswith(b"<<", i):
        i = _skip_white(data, i + 2)
        while not data.startswith(b">>", i):
            i = _skip_white(data, _object_end(data, i))
        return i + 2
    if c == 0x5B:  # [
        i = _skip_white(data, i + 1)
        while data[i] != 0x5D:
            i = _skip_white(data, _object_end(data, i))
        return i + 1
    if c == 0x28:  # ( literal string: balanced parentheses, backslash escapes
        depth, i = 1, i + 1
        while depth:
            if i >= len(data):
                raise _Unexpected
            c = data[i]
            if c == 0x5C:
                i += 1
            elif c == 0x28:
                depth += 1
            elif c == 0x29:
                depth -= 1
            i += 1
        return i
    if c == 0x3C:  # < hex string
        end = data.find(b">", i)
        if end < 0:
            raise _Unexpected
        return end + 1
    if c == 0x2F:  # /name
        return _token_end(data, i + 1)
    end = _token_end(data, i)
    if end == i:
        raise _Unexpected
    return end


def _dictionary_entries(data: bytes, i: int) -> dict[bytes, bytes]:
    """The top-level entries of the dictionary at ``data[i]``, values as PDF source."""
    if not data.startswith(b"<<", i):
        raise _Unexpected
    entries: dict[bytes, bytes] = {}
    i = _skip_white(data, i + 2)
    while not data.startswith(b">>", i):
        if data[i] != 0x2F:
            raise _Unexpected
        key_end = _token_end(data, i + 1)
        key = data[i:key_end]
        start = _skip_white(data, key_end)
        end = _object_end(data, start)
        # An indirect reference: "number generation R".
        after = _skip_white(data, end)
        second = _token_end(data, after)
        if data[start:end].isdigit() and data[after:second].isdigit():
            mark = _skip_white(data, second)
            if data.startswith(b"R", mark) and _token_end(data, mark) == mark + 1:
                end = mark + 1
        entries[key] = data[start:end]
        i = _skip_white(data, end)
    return entries


def _last_trailer(pdf: bytes) -> tuple[int, dict[bytes, bytes]]:
    """``(startxref offset, trailer entries)`` of the last cross-reference section."""
    match = _STARTXREF.search(pdf, max(0, len(pdf) - 1024))
    if match is None:
        raise _Unexpected
    offset = int(match.group(1))
    if pdf.startswith(b"xref", offset):
        at = pdf.find(b"trailer", offset, match.start())
        if at < 0:
            raise _Unexpected
        start = _skip_white(pdf, at + len(b"trailer"))
    else:
        head = _STREAM_OBJECT.match(pdf, offset)
        if head is None:
            raise _Unexpected
        start = head.end()
    entries = _dictionary_entries(pdf, start)
    if not pdf.startswith(b"xref", offset) and entries.get(b"/Type") != b"/XRef":
        raise _Unexpected
    return offset, entries


def identity_encrypted(
    pdf: bytes, user: str, owner: str | None, permissions: int
) -> tuple[bytes, bytes] | None:
    """``pdf`` with an AES-256 encryption dictionary whose crypt filters are ``/Identity``.

    Returns ``(bytes, file key)``: opened with the key as a hex password and
    saved with ``encryption=True``, qpdf writes the document encrypted for
    ``user`` / ``owner`` (see :func:`encryption_dictionary` for ``None``) with
    ``permissions``. ``None`` when the last trailer
    is not one this module reads, or the PDF is already encrypted.
    """
    try:
        offset, entries = _last_trailer(pdf)
    except (_Unexpected, IndexError, ValueError, RecursionError):  # nested too deep: qpdf decides
        return None
    if b"/Encrypt" in entries or b"/XRefStm" in entries or b"/Root" not in entries:
        return None
    if not _REFERENCE.match(entries[b"/Root"]) or not entries.get(b"/Size", b"").isdigit():
        return None
    key, body = encryption_dictionary(user, owner, permissions)
    # The new trailer replaces the last one: everything but the section's own entries.
    trailer = b"".join(k + b" " + v for k, v in entries.items() if k not in _SECTION_KEYS)
    if b"/ID" not in entries:
        first = os.urandom(16).hex().encode()
        trailer += b"/ID[<" + first + b"><" + first + b">]"
    base = pdf if pdf.endswith((b"\n", b"\r")) else pdf + b"\n"
    update = (
        b"xref\n0 1\n0000000000 65535 f \ntrailer\n<<" + trailer
        + b"/Encrypt<</Filter/Standard/V 5/R 6/Length 256"
        b"/CF<</StdCF<</AuthEvent/DocOpen/CFM/AESV3/Length 32>>>>"
        b"/StmF/Identity/StrF/Identity/EFF/Identity/EncryptMetadata true"
        + body + b">>/Prev %d>>\nstartxref\n%d\n%%%%EOF\n" % (offset, len(base))
    )
    return base + update, key
