"""HTML in, PDF bytes out: WeasyPrint behind a fetcher that serves only the pack.

WeasyPrint's own fetcher reads any file and any URL, and when a resource
cannot be fetched it logs and carries on -- a statement would go out without
its logo. :class:`PackFetcher` serves ``file:`` URLs inside its roots only
(symlinks resolved), ``data:`` URLs, and ``http(s)`` for listed hosts; every
refusal or failure raises :class:`AssetRefused`, which WeasyPrint does not
swallow, and :func:`render_document` / :func:`write_pdf` turn it into
:class:`~ccm.errors.AssetError`. Failures WeasyPrint would still swallow
(inside SVG drawing) are noted by the fetcher and raised afterwards.

Rendering is split in two so one layout can be written more than once:

* :func:`render_document` -- parse and lay out; time and size budgets apply.
* :func:`write_pdf` -- draw one PDF with ccm's metadata; safe to repeat.
* :func:`delivery_from_archival` -- the delivery PDF made from the PDF/A-3b
  archival copy by qpdf while it encrypts, instead of a second ``write_pdf``.

Batch cost is in layout and writing; parsing CSS and fonts is shared:
:func:`load_stylesheet` keeps an LRU of parsed pack stylesheets (also
used for the stylesheet a layout ``<link>``s), :func:`font_config` one font
configuration per process, and each :class:`PackFetcher` caches the bytes it
reads.

This module logs nothing itself; WeasyPrint logs to the ``weasyprint`` logger.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import functools
import gc
import io
import re
import signal
import threading
import time
from collections.abc import Mapping, Sequence
from importlib.resources import files
from types import FrameType, MappingProxyType
from typing import Any

import pydyf
import weasyprint
from weasyprint.css import ColorProfile
from weasyprint.css.counters import CounterStyle
from weasyprint.pdf import VARIANTS
from weasyprint.urls import FatalURLFetchingError, URLFetcher

from ccm._util import fewer_collections as fewer_collections
from ccm._util import on_roomy_stack
from ccm.channels.pdf._css import _css_extras as _css_extras
from ccm.channels.pdf._css import _fatal_to_error as _fatal_to_error
from ccm.channels.pdf._css import _install_linked_css as _install_linked_css
from ccm.channels.pdf._css import _reusing_stylesheets as _reusing_stylesheets
from ccm.channels.pdf._css import font_config as font_config
from ccm.channels.pdf._css import harfbuzz_subset as harfbuzz_subset
from ccm.channels.pdf._css import load_stylesheet as load_stylesheet
from ccm.channels.pdf._css import (
    warn_without_harfbuzz_subset as warn_without_harfbuzz_subset,
)
from ccm.channels.pdf._fetch import AssetRefused as AssetRefused
from ccm.channels.pdf._fetch import PackFetcher as PackFetcher
from ccm.channels.pdf._fetch import _Session as _Session
from ccm.channels.pdf._fit import ATTRIBUTE as FIT_ATTRIBUTE
from ccm.channels.pdf._fit import check_fit as check_fit
from ccm.channels.pdf._once import COMPRESSION_LEVEL, serialise_once
from ccm.errors import BudgetError, CCMError, RenderError

__all__ = [
    "DEFAULT_MAX_HTML_BYTES",
    "FIT_ATTRIBUTE",
    "AssetRefused",
    "PackFetcher",
    "check_fit",
    "delivery_from_archival",
    "fewer_collections",
    "font_config",
    "harfbuzz_subset",
    "load_stylesheet",
    "render_document",
    "write_pdf",
]

#: HTML larger than this (UTF-8 bytes) is refused before layout.
DEFAULT_MAX_HTML_BYTES = 5_000_000
#: After the deadline the alarm repeats this often, in case WeasyPrint swallowed one.
_ALARM_REPEAT = 0.05
#: Custom PDF info keys: a PDF name without delimiters or ``#``.
_INFO_KEY = re.compile(r"[A-Za-z][A-Za-z0-9:._-]{0,126}")
_STANDARD_INFO_KEYS = frozenset(
    {"Title", "Author", "Subject", "Keywords", "Creator", "Producer", "CreationDate",
     "ModDate", "Trapped"}
)
_NO_METADATA: Mapping[str, str] = MappingProxyType({})



class _Budget:
    """Interrupts layout with :class:`BudgetError` at a ``time.monotonic()`` deadline."""

    def __init__(self, deadline: float | None) -> None:
        self.deadline = deadline
        self.seconds = 0.0 if deadline is None else deadline - time.monotonic()
        self.expired = False
        self._armed = False
        self._previous_handler: Any = None
        self._previous_timer = (0.0, 0.0)
        self._started = 0.0

    def error(self) -> BudgetError:
        return BudgetError(
            f"PDF layout exceeded {max(self.seconds, 0.0):.1f} s", channel="pdf",
            budget_seconds=round(max(self.seconds, 0.0), 3),
        )

    def check(self) -> None:
        """Raise when the deadline has passed (also where no alarm can be used)."""
        if self.expired or (self.deadline is not None and time.monotonic() >= self.deadline):
            self.expired = True
            raise self.error()

    def _on_alarm(self, signum: int, frame: FrameType | None) -> None:
        if self._armed:
            self.expired = True
            if not _inside_layout(frame):
                # Layout has returned (or not begun): raising here, say in this budget's
                # own __exit__ before it disarms, would leave the repeating alarm armed,
                # to go off later outside any render. The block's end disarms it.
                return
            if _inside_gc_callback(frame):
                # An exception raised in a gc callback is only printed as
                # "ignored"; the repeating alarm raises again outside it.
                return
            raise self.error()

    def __enter__(self) -> _Budget:
        self.check()
        if (
            self.deadline is None
            or not hasattr(signal, "setitimer")
            or threading.current_thread() is not threading.main_thread()
        ):
            return self
        try:
            self._previous_handler = signal.signal(signal.SIGALRM, self._on_alarm)
        except ValueError:  # not the main interpreter
            return self
        self._started = time.monotonic()
        self._armed = True
        # Repeat after the deadline: an alarm raised inside one of WeasyPrint's
        # broad ``except`` clauses is swallowed, the next one gets through.
        self._previous_timer = signal.setitimer(
            signal.ITIMER_REAL, max(self.deadline - self._started, 1e-6), _ALARM_REPEAT
        )
        return self

    def __exit__(self, *exc_info: object) -> None:
        if not self._armed:
            return
        self._armed = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        previous = self._previous_handler
        signal.signal(signal.SIGALRM, previous if previous is not None else signal.SIG_DFL)
        delay, interval = self._previous_timer
        if delay > 0:  # someone else's alarm: re-arm it with what is left
            left = delay - (time.monotonic() - self._started)
            signal.setitimer(signal.ITIMER_REAL, max(left, 1e-6), interval)


def _lay_out(html: str, base_url: str | None, fetcher: PackFetcher, **options: Any) -> Any:
    """WeasyPrint's parse and layout: the only frames a :class:`_Budget`'s alarm interrupts."""
    return weasyprint.HTML(string=html, base_url=base_url, url_fetcher=fetcher).render(
        **options)


def _inside_layout(frame: FrameType | None) -> bool:
    """True when ``frame`` runs inside :func:`_lay_out`."""
    code = _lay_out.__code__
    while frame is not None:
        if frame.f_code is code:
            return True
        frame = frame.f_back
    return False


def _inside_gc_callback(frame: FrameType | None) -> bool:
    """True when ``frame`` runs inside one of ``gc.callbacks`` (exceptions vanish there)."""
    codes = {getattr(cb, "__code__", None) for cb in gc.callbacks}
    codes.discard(None)
    while codes and frame is not None:
        if frame.f_code in codes:
            return True
        frame = frame.f_back
    return False


def _html_too_big(html: str, limit: int) -> bool:
    if len(html) > limit:
        return True
    if len(html) * 4 <= limit:
        return False
    return len(html.encode("utf-8", "surrogatepass")) > limit


def render_document(
    html: str,
    *,
    base_url: str,
    fetcher: PackFetcher,
    stylesheets: Sequence[Any] = (),
    deadline: float | None = None,
    max_html_bytes: int = DEFAULT_MAX_HTML_BYTES,
) -> Any:
    """Parse and lay out ``html``; returns a ``weasyprint.Document``.

    Every URL goes through ``fetcher``; any refused or missing asset raises
    :class:`~ccm.errors.AssetError`. ``deadline`` is a ``time.monotonic()``
    value: on the main thread a ``SIGALRM`` timer interrupts layout when it
    passes (the previous handler and timer are restored), elsewhere it is
    checked before and after. Both, and HTML over ``max_html_bytes``, raise
    :class:`~ccm.errors.BudgetError`. ``stylesheets`` should come from
    :func:`load_stylesheet`, parsed with the same :func:`font_config`; they
    apply as *user* CSS. A stylesheet the HTML links (a ``.css`` file inside
    the fetcher's roots) is taken from the same cache instead of being
    parsed again, and applies as author CSS, where the link puts it.
    """
    if _html_too_big(html, max_html_bytes):
        raise BudgetError(
            f"PDF HTML is larger than {max_html_bytes} bytes", channel="pdf",
            max_html_bytes=max_html_bytes,
        )
    counter_style = CounterStyle()
    color_profiles: dict[str, Any] = {}
    for css in stylesheets:
        counters, profiles = _css_extras.get(css, ({}, {}))
        counter_style.update(counters)
        color_profiles.update(profiles)
    warn_without_harfbuzz_subset()
    budget = _Budget(deadline)
    _install_linked_css()
    with fetcher._session() as session, _reusing_stylesheets(fetcher), fewer_collections():
        try:
            with budget:
                # Layout recurses deeply: on a roomy frame stack (ccm._util.on_roomy_stack).
                document = on_roomy_stack(
                    _lay_out, html, base_url, fetcher,
                    font_config=font_config(),
                    counter_style=counter_style,
                    color_profiles=color_profiles,
                    stylesheets=list(stylesheets),
                )
        except BudgetError:
            raise
        except AssetRefused as exc:
            if budget.expired:
                raise budget.error() from exc
            raise exc.to_error() from exc
        except FatalURLFetchingError as exc:
            if budget.expired:
                raise budget.error() from exc
            raise _fatal_to_error(exc, session) from exc
        except CCMError:
            raise
        except Exception as exc:
            if budget.expired:
                raise budget.error() from exc
            raise RenderError(
                f"PDF layout failed: {type(exc).__name__}: {exc}", channel="pdf"
            ) from exc
    budget.check()
    if session.failures:
        raise session.failures[0].to_error()
    return document


# --- writing ------------------------------------------------------------------


def _attachment(name: str, data: bytes, media_type: str) -> Any:
    if not name or "/" in name or "\\" in name:
        raise ValueError(f"attachment name must be a plain file name, got {name!r}")
    # A data: URL is the public way to hand WeasyPrint bytes *with* a media type.
    url = f"data:{media_type};base64,{base64.b64encode(data).decode('ascii')}"
    return weasyprint.Attachment(
        url=url,
        url_fetcher=URLFetcher(allowed_protocols=("data",), fail_on_errors=True),
        name=name,
        description=name,
        relationship="Data",
    )


@functools.cache
def _srgb_icc() -> bytes:
    return (files("weasyprint.pdf") / "sRGB2014.icc").read_bytes()


def _output_intent(target: Any, variant: str | None) -> str | None:
    """Give PDF/A its sRGB output intent ourselves; ``None`` when the variant has none.

    WeasyPrint would open its sRGB profile and never close the file (a
    ResourceWarning per archival PDF); a fresh profile per write also keeps
    concurrent writes from sharing its ``pdf_reference``.
    """
    if variant is None or VARIANTS[variant][1].get("output_intent") != "srgb":
        return None
    key = "ccm-srgb"
    target.color_profiles[key] = ColorProfile(
        io.BytesIO(_srgb_icc()), "sRGB2014.icc", "relative-colorimetric", (["r"], ["g"], ["b"])
    )
    target.output_intent = key
    return key


def _check_info_keys(metadata: Mapping[str, str]) -> None:
    for key in metadata:
        if not _INFO_KEY.fullmatch(key) or key in _STANDARD_INFO_KEYS:
            raise ValueError(f"custom PDF metadata key not allowed: {key!r}")


def _info_finisher(metadata: Mapping[str, str]) -> Any:
    _check_info_keys(metadata)

    def finish(document: Any, pdf: Any) -> None:
        # WeasyPrint's custom_metadata strips ':' and '-' from keys; set them as given.
        for key, value in metadata.items():
            pdf.info[key] = pydyf.String(str(value))
        serialise_once(pdf, COMPRESSION_LEVEL)  # last: every object is final now

    return finish


def write_pdf(
    document: Any,
    *,
    title: str,
    author: str,
    lang: str,
    subject: str | None = None,
    variant: str | None = None,
    attachments: Sequence[tuple[str, bytes, str]] = (),
    metadata: Mapping[str, str] = _NO_METADATA,
) -> bytes:
    """Draw ``document`` (from :func:`render_document`) as tagged PDF bytes.

    ``title``, ``author`` (the brand name), ``lang`` and ``subject`` replace
    what the HTML declared; ``metadata`` adds document-info keys as given
    (e.g. ``ccm:archival-sha256``). ``variant`` is a WeasyPrint PDF variant
    such as ``"pdf/a-3b"``; ``attachments`` are ``(file name, bytes, media
    type)`` embedded as associated files (``/AFRelationship /Data``).
    Attachments declared in the HTML are not embedded.

    The document is not modified, so it can be written again (archival copy,
    then delivery copy).
    """
    if not lang:
        raise ValueError("lang is required: a tagged PDF declares its language")
    if variant is not None and variant not in VARIANTS:
        raise ValueError(f"unknown PDF variant {variant!r}; known: {', '.join(sorted(VARIANTS))}")
    finisher = _info_finisher(metadata)
    files = [_attachment(name, data, media_type) for name, data, media_type in attachments]

    # Write a copy: WeasyPrint adds the sRGB profile of PDF/A to color_profiles,
    # and HTML <link rel=attachment> sources can only be read once.
    info = copy.copy(document.metadata)
    info.title = title
    info.authors = [author]
    info.lang = lang
    info.description = subject
    info.attachments = []
    info.custom = {}
    info.xmp_metadata = list(info.xmp_metadata)
    target = document.copy()
    target.metadata = info
    target.color_profiles = dict(document.color_profiles)
    options: dict[str, Any] = {}
    if (intent := _output_intent(target, variant)) is not None:
        options["output_intent"] = intent

    fetcher = document.url_fetcher
    session_of = fetcher._session if isinstance(fetcher, PackFetcher) else contextlib.nullcontext
    with session_of() as session, fewer_collections():
        try:
            pdf: bytes = on_roomy_stack(
                target.write_pdf, finisher=finisher, pdf_tags=True, pdf_variant=variant,
                attachments=files, **options,
            )
        except AssetRefused as exc:
            raise exc.to_error() from exc
        except FatalURLFetchingError as exc:
            raise _fatal_to_error(exc, session or _Session()) from exc
        except CCMError:
            raise
        except Exception as exc:
            raise RenderError(
                f"PDF writing failed: {type(exc).__name__}: {exc}", channel="pdf"
            ) from exc
    if session is not None and session.failures:
        raise session.failures[0].to_error()
    return pdf


def delivery_from_archival(metadata: Mapping[str, str] = _NO_METADATA) -> Any:
    """An ``edit`` for :func:`ccm.render.security.encrypt_pdf`: archival copy in, delivery PDF out.

    The PDF/A-3b archival copy from :func:`write_pdf` and the tagged delivery
    PDF share everything a reader sees -- pages, fonts, structure tree,
    title, author, language -- and differ only in what PDF/A adds: the
    embedded request (``/AF``, ``/Names /EmbeddedFiles``), the XMP packet that
    claims PDF/A conformance and the sRGB output intent. Removing those from
    the archival copy while encrypting it gives the delivery PDF without
    drawing and serialising the document a second time (WeasyPrint's
    ``write_pdf`` is the dear part); ``metadata`` adds document-info keys
    as :func:`write_pdf` does. The returned callable takes a ``pikepdf.Pdf``.
    """
    _check_info_keys(metadata)
    custom = dict(metadata)

    def edit(pdf: Any) -> None:
        import pikepdf

        root = pdf.Root
        for key in ("/AF", "/Metadata", "/OutputIntents"):
            if key in root:
                del root[key]
        names = root.get("/Names")
        if names is not None and "/EmbeddedFiles" in names:
            del names["/EmbeddedFiles"]
            if not names.keys():
                del root["/Names"]
        for key, value in custom.items():
            pdf.docinfo[pikepdf.Name("/" + key)] = pikepdf.String(str(value))

    return edit
