"""The PDF channel: pack-only fetching, budgets, metadata, PDF/A-3b, tagging, RTL.

Fixtures are made in each test's tmp folder: the logo is a 4x4 PNG drawn with
Pillow, the font is DejaVu Sans copied from /usr/share/fonts (fonts-dejavu-core).
"""

from __future__ import annotations

import base64
import io
import logging
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pikepdf
import pytest
from PIL import Image
from pypdf import PdfReader

from ccm.channels.pdf import (
    PackFetcher,
    delivery_from_archival,
    font_config,
    load_stylesheet,
    render_document,
    write_pdf,
)
from ccm.errors import AssetError, BudgetError
from ccm.render.security import encrypt_pdf

DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
META = {"title": "Monthly statement", "author": "Acme Bank", "lang": "en-GB"}


# --- fixtures -----------------------------------------------------------------


def _png(path: Path, colour: str = "red") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), colour).save(path, "PNG")
    return path


@pytest.fixture()
def pack(tmp_path: Path) -> Path:
    """A pack folder with a logo, a stylesheet and, beside it, files it must not reach."""
    root = tmp_path / "pack"
    _png(root / "assets" / "logo.png")
    (root / "style.css").write_text("body { font-family: sans-serif; }\n")
    _png(tmp_path / "secret.png", "blue")
    return root


@pytest.fixture()
def fetcher(pack: Path) -> PackFetcher:
    return PackFetcher(roots=[pack])


@pytest.fixture()
def weasy_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Fail the test if WeasyPrint logs a warning or error (it logs what it skips)."""
    caplog.set_level(logging.WARNING, logger="weasyprint")
    yield caplog
    problems = [r.getMessage() for r in caplog.records if r.name.startswith("weasyprint")]
    assert not problems, problems


def html_doc(body: str, *, head: str = "", lang: str = "en", extra: str = "") -> str:
    return (
        f'<!doctype html><html lang="{lang}"{extra}><head><meta charset="utf-8">'
        f"<title>t</title>{head}</head><body>{body}</body></html>"
    )


def render(html: str, fetcher: PackFetcher, pack: Path, **kwargs: Any) -> Any:
    return render_document(html, base_url=pack.as_uri() + "/", fetcher=fetcher, **kwargs)


def text_of(pdf: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


@pytest.fixture()
def pdftotext() -> Callable[..., str]:
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext not installed (apt-get install poppler-utils)")

    def run(pdf: bytes, *args: str) -> str:
        out = subprocess.run(
            ["pdftotext", *args, "-", "-"], input=pdf, capture_output=True, check=True
        )
        return out.stdout.decode("utf-8")

    return run


# --- fetching: what is served -------------------------------------------------


def test_pack_assets_render(fetcher: PackFetcher, pack: Path, weasy_logs: Any) -> None:
    """Images inside the pack and data: URLs are served and the text lands in the PDF."""
    data_png = "data:image/png;base64," + base64.b64encode(
        (pack / "assets" / "logo.png").read_bytes()
    ).decode()
    document = render(
        html_doc(f'<img src="assets/logo.png" alt="Acme"><img src="{data_png}" alt="dot">'
                 "<p>Balance due</p>"),
        fetcher, pack,
    )
    assert "Balance due" in text_of(write_pdf(document, **META))


def test_symlink_inside_pack_is_served(fetcher: PackFetcher, pack: Path, weasy_logs: Any) -> None:
    """A symlink whose target stays inside the pack is fine."""
    (pack / "assets" / "alias.png").symlink_to(pack / "assets" / "logo.png")
    render(html_doc('<img src="assets/alias.png" alt="Acme">'), fetcher, pack)


def test_fetcher_caches_bytes_until_the_file_changes(fetcher: PackFetcher, pack: Path) -> None:
    """Pack files are read once per (path, mtime, size); a changed file is read again."""
    url = (pack / "style.css").as_uri()
    first = fetcher.fetch(url).read()
    assert fetcher.fetch(url)._file_obj.getvalue() is fetcher.fetch(url)._file_obj.getvalue()
    (pack / "style.css").write_text("p { color: red; }\n")
    os.utime(pack / "style.css", ns=(1, 1))
    assert fetcher.fetch(url).read() == b"p { color: red; }\n" != first


# --- fetching: what is refused ------------------------------------------------


def _refused(html: str, fetcher: PackFetcher, pack: Path) -> AssetError:
    with pytest.raises(AssetError) as info:
        render(html, fetcher, pack)
    return info.value


def test_missing_logo_fails_the_render(fetcher: PackFetcher, pack: Path) -> None:
    """A missing image is an AssetError naming the pack-relative path, not a blank space."""
    error = _refused(html_doc('<img src="assets/missing.png" alt="x">'), fetcher, pack)
    assert "assets/missing.png" in str(error)
    assert "not found" in str(error)
    assert error.url == (pack / "assets" / "missing.png").as_uri()  # type: ignore[attr-defined]


def test_absolute_file_url_outside_is_refused(fetcher: PackFetcher, pack: Path) -> None:
    """file:///etc/passwd is refused and named."""
    error = _refused(html_doc('<img src="file:///etc/passwd" alt="x">'), fetcher, pack)
    assert "file:///etc/passwd" in str(error)
    assert error.url == "file:///etc/passwd"  # type: ignore[attr-defined]


@pytest.mark.parametrize("src", ["../secret.png", "assets/../../secret.png", "%2e%2e/secret.png"])
def test_dotdot_escape_is_refused(fetcher: PackFetcher, pack: Path, src: str) -> None:
    """A relative path climbing out of the pack is refused (the file exists)."""
    error = _refused(html_doc(f'<img src="{src}" alt="x">'), fetcher, pack)
    assert "outside the pack" in str(error)


def test_symlink_escaping_the_pack_is_refused(fetcher: PackFetcher, pack: Path) -> None:
    """A symlink inside the pack pointing outside it is refused (resolved path counts)."""
    (pack / "assets" / "link.png").symlink_to(pack.parent / "secret.png")
    error = _refused(html_doc('<img src="assets/link.png" alt="x">'), fetcher, pack)
    assert "outside the pack" in str(error)


def test_network_is_refused_without_touching_it(
    fetcher: PackFetcher, pack: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """http://example.com is refused by host before any socket is opened."""
    calls: list[object] = []

    def no_network(*args: object, **kwargs: object) -> None:
        calls.append(args)
        raise OSError("network used in a unit test")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    error = _refused(html_doc('<img src="http://example.com/x.png" alt="x">'), fetcher, pack)
    assert "example.com" in str(error)
    assert error.url == "http://example.com/x.png"  # type: ignore[attr-defined]
    assert calls == []


def test_other_schemes_are_refused(fetcher: PackFetcher, pack: Path) -> None:
    """ftp: and friends are refused."""
    error = _refused(html_doc('<img src="ftp://example.com/x.png" alt="x">'), fetcher, pack)
    assert "'ftp'" in str(error)


def test_css_import_outside_is_refused(fetcher: PackFetcher, pack: Path) -> None:
    """@import of a stylesheet outside the pack fails the render."""
    (pack.parent / "evil.css").write_text("body { color: red; }")
    error = _refused(
        html_doc("x", head="<style>@import url('../evil.css');</style>"), fetcher, pack
    )
    assert (pack.parent / "evil.css").as_uri() in str(error)


def test_linked_stylesheet_outside_is_refused(fetcher: PackFetcher, pack: Path) -> None:
    """<link rel=stylesheet> outside the pack fails the render."""
    (pack.parent / "evil.css").write_text("body { color: red; }")
    _refused(html_doc("x", head='<link rel="stylesheet" href="../evil.css">'), fetcher, pack)


def test_font_face_outside_is_refused(fetcher: PackFetcher, pack: Path) -> None:
    """An @font-face src outside the pack fails the render instead of falling back."""
    shutil.copy(DEJAVU, pack.parent / "outside.ttf")
    css = (
        "@font-face { font-family: Sneaky; src: url('../outside.ttf'); }"
        "body { font-family: Sneaky }"
    )
    error = _refused(html_doc("x", head=f"<style>{css}</style>"), fetcher, pack)
    assert "outside.ttf" in str(error)


def test_refusal_swallowed_inside_svg_still_fails(fetcher: PackFetcher, pack: Path) -> None:
    """WeasyPrint catches everything while drawing SVG; the fetcher's note still fails the write."""
    svg = (
        '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
        'width="10" height="10"><image xlink:href="file:///etc/passwd" width="10" height="10"/>'
        "</svg>"
    )
    (pack / "assets" / "badge.svg").write_text(svg)
    for body in ('<img src="assets/badge.svg" alt="x">', svg):
        document = render(html_doc(body), fetcher, pack)  # SVG <image> is fetched when drawn
        with pytest.raises(AssetError, match="file:///etc/passwd"):
            write_pdf(document, **META)


def test_symlink_loop_is_an_asset_error(fetcher: PackFetcher, pack: Path) -> None:
    """A symlink loop inside the pack is a missing asset, not a crash."""
    (pack / "assets" / "loop.png").symlink_to(pack / "assets" / "loop.png")
    error = _refused(html_doc('<img src="assets/loop.png" alt="x">'), fetcher, pack)
    assert error.url == (pack / "assets" / "loop.png").as_uri()  # type: ignore[attr-defined]


def test_font_registered_by_another_pack_is_still_refused(tmp_path: Path, pack: Path) -> None:
    """The shared font configuration does not hand pack A's font to pack B by absolute URL."""
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(DEJAVU, pack / "a.ttf")
    face = f"@font-face {{ font-family: OnlyA; src: url('{(pack / 'a.ttf').as_uri()}'); }}"
    page = html_doc("x", head=f"<style>{face} body {{ font-family: OnlyA }}</style>")
    render(page, PackFetcher([pack]), pack)
    with pytest.raises(AssetError, match="outside the pack"):
        render(page, PackFetcher([other]), other)


def test_fetcher_pickles_to_the_same_policy(fetcher: PackFetcher) -> None:
    """Batch workers can receive a fetcher; it keeps roots and hosts, not caches."""
    clone = pickle.loads(pickle.dumps(PackFetcher(fetcher.roots, ["cdn.example.com"],
                                                  max_image_pixels=1234)))
    assert clone.policy == (fetcher.roots, frozenset({"cdn.example.com"}))
    assert clone.max_image_pixels == 1234


@pytest.mark.parametrize("as_data", [False, True])
def test_an_image_over_the_pixel_limit_is_refused_before_decoding(
        pack: Path, as_data: bool) -> None:
    """A raster image of more pixels than the fetcher's limit fails the render, named, from
    a file or a data: URL; one at the limit is drawn."""
    limit = 40 * 30
    fetcher = PackFetcher([pack], max_image_pixels=limit)
    for size, refused in (((40, 30), False), ((41, 30), True)):
        path = pack / "assets" / f"photo-{size[0]}.png"
        Image.new("RGB", size, "green").save(path, "PNG")
        src = ("data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
               if as_data else f"assets/{path.name}")
        page = html_doc(f'<img src="{src}" alt="x">')
        if not refused:
            pdf = PdfReader(io.BytesIO(write_pdf(render(page, fetcher, pack), **META)))
            assert [(i.image.width, i.image.height) for i in pdf.pages[0].images] == [size]
            continue
        error = _refused(page, fetcher, pack)
        assert "41 x 30 pixels" in str(error) and f"{limit:,}" in str(error)
        assert ("a data: URL (image/png;base64" if as_data else f"assets/{path.name}") \
            in str(error)
        assert "base64,iVBOR" not in str(error)  # a data: URL is not quoted whole


def test_refusal_inside_stylesheet_from_load_stylesheet(fetcher: PackFetcher, pack: Path) -> None:
    """load_stylesheet raises AssetError like a render does."""
    (pack / "bad.css").write_text("@import url('file:///etc/passwd');")
    with pytest.raises(AssetError):
        load_stylesheet(pack / "bad.css", fetcher)


def test_allowed_host_is_served_and_redirects_are_not_followed(
    pack: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An allowed host is fetched (a local server); its redirect elsewhere is refused."""
    for scheme in ("http", "https", "all"):
        monkeypatch.delenv(f"{scheme}_proxy", raising=False)
        monkeypatch.delenv(f"{scheme.upper()}_PROXY", raising=False)
    png = (pack / "assets" / "logo.png").read_bytes()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/logo.png":
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(png)))
                self.end_headers()
                self.wfile.write(png)
            else:
                self.send_response(302)
                self.send_header("Location", "http://example.com/x.png")
                self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        fetcher = PackFetcher([pack], allowed_hosts=["127.0.0.1"])
        document = render(html_doc(f'<img src="{base}/logo.png" alt="x"><p>ok</p>'), fetcher, pack)
        assert "ok" in text_of(write_pdf(document, **META))
        with pytest.raises(AssetError) as info:
            render(html_doc(f'<img src="{base}/moved.png" alt="x">'), fetcher, pack)
        assert "302" in str(info.value)
    finally:
        server.shutdown()
        server.server_close()


# --- stylesheets and fonts ----------------------------------------------------


def test_load_stylesheet_reuses_until_a_dependency_changes(
    fetcher: PackFetcher, pack: Path
) -> None:
    """The parsed CSS is reused; touching it or an @import'ed file re-parses it."""
    (pack / "base.css").write_text("p { color: black; }")
    (pack / "main.css").write_text("@import url('base.css'); p { margin: 0; }")
    first = load_stylesheet(pack / "main.css", fetcher)
    assert load_stylesheet(pack / "main.css", fetcher) is first
    assert load_stylesheet(pack / "main.css", PackFetcher([pack, pack.parent])) is not first
    os.utime(pack / "base.css", ns=(1, 1))
    second = load_stylesheet(pack / "main.css", fetcher)
    assert second is not first
    assert load_stylesheet(pack / "main.css", fetcher) is second


def test_font_config_is_shared() -> None:
    """One FontConfiguration per process."""
    assert font_config() is font_config()


def test_pack_font_and_counter_style_from_cached_css(
    fetcher: PackFetcher, pack: Path, weasy_logs: Any
) -> None:
    """@font-face and @counter-style in a cached stylesheet apply to later renders."""
    shutil.copy(DEJAVU, pack / "brand.ttf")
    (pack / "brand.css").write_text(
        "@font-face { font-family: BrandFace; src: url('brand.ttf'); }"
        "@counter-style stars { system: cyclic; symbols: '*'; suffix: ' '; }"
        "body { font-family: BrandFace; } ol { list-style: stars; }"
    )
    css = load_stylesheet(pack / "brand.css", fetcher)
    for _ in range(2):
        document = render(html_doc("<ol><li>Item</li></ol>"), fetcher, pack, stylesheets=[css])
        pdf = write_pdf(document, **META)
        fonts = {
            str(font["/BaseFont"])
            for page in PdfReader(io.BytesIO(pdf)).pages
            for font in page["/Resources"]["/Font"].values()
        }
        assert any(name.endswith("+BrandFace") for name in fonts), fonts
        text = text_of(pdf)
        assert "*" in text and "Item" in text and "1." not in text, text


def _colour_of(document: Any, tag: str) -> tuple[float, ...]:
    for page in document.pages:
        for box in page._page_box.descendants():
            if getattr(box, "element_tag", None) == tag:
                return tuple(box.style["color"])
    raise AssertionError(f"no <{tag}> box")


def test_linked_pack_stylesheet_is_parsed_once_and_stays_author_css(
    fetcher: PackFetcher, pack: Path, weasy_logs: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A <link>ed pack stylesheet is parsed once per process and cascades as author CSS."""
    import weasyprint

    shutil.copy(DEJAVU, pack / "brand.ttf")
    (pack / "linked.css").write_text(
        "@font-face { font-family: LinkedFace; src: url('brand.ttf'); }"
        "@counter-style dashes { system: cyclic; symbols: '~'; suffix: ' '; }"
        "p.x { color: rgb(255, 0, 0); } body { font-family: LinkedFace; }"
        "ol { list-style: dashes; }"
    )
    parsed: list[str] = []
    real_css = weasyprint.CSS

    def counting_css(*args: Any, **kwargs: Any) -> Any:
        parsed.append(str(kwargs.get("url")))
        return real_css(*args, **kwargs)

    monkeypatch.setattr(weasyprint, "CSS", counting_css)
    # The inline rule is less specific: author CSS from the link must beat it.
    head = '<link rel="stylesheet" href="linked.css"><style>p { color: rgb(0, 0, 255); }</style>'
    for _ in range(3):
        document = render(html_doc('<p class="x">Red</p><ol><li>Item</li></ol>', head=head),
                          fetcher, pack)
        assert _colour_of(document, "p")[:3] == (1.0, 0.0, 0.0)
        pdf = write_pdf(document, **META)
        assert "~" in text_of(pdf)
        fonts = {str(font["/BaseFont"]) for page in PdfReader(io.BytesIO(pdf)).pages
                 for font in page["/Resources"]["/Font"].values()}
        assert any(name.endswith("+LinkedFace") for name in fonts), fonts
    assert [url for url in parsed if url.endswith("linked.css")] == [
        (pack / "linked.css").resolve().as_uri()]


def test_linked_stylesheet_changes_are_seen(fetcher: PackFetcher, pack: Path) -> None:
    """Editing a linked pack stylesheet takes effect on the next render."""
    (pack / "live.css").write_text("p { color: rgb(255, 0, 0); }")
    html = html_doc("<p>Text</p>", head='<link rel="stylesheet" href="live.css">')
    assert _colour_of(render(html, fetcher, pack), "p")[:3] == (1.0, 0.0, 0.0)
    (pack / "live.css").write_text("p { color: rgb(0, 255, 0); }")
    os.utime(pack / "live.css", ns=(10**18, 10**18))
    assert _colour_of(render(html, fetcher, pack), "p")[:3] == (0.0, 1.0, 0.0)



def _counting_style_parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The <style> texts WeasyPrint parses from now on."""
    from ccm.channels.pdf import _css

    parsed: list[str] = []
    real = _css._weasy_css

    def counting(*args: Any, **kwargs: Any) -> Any:
        if isinstance(kwargs.get("string"), str):
            parsed.append(kwargs["string"])
        return real(*args, **kwargs)

    monkeypatch.setattr(_css, "_weasy_css", counting)
    return parsed


def test_style_element_is_parsed_once_with_its_fonts_counters_and_page_rules(
    fetcher: PackFetcher, pack: Path, weasy_logs: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same <style> text is parsed once; fonts, counters, @page and the cascade still apply."""
    shutil.copy(DEJAVU, pack / "inline.ttf")
    (pack / "linked.css").write_text("p { color: rgb(255, 0, 0); }")
    style = (
        "<style>@font-face { font-family: InlineFace; src: url('inline.ttf'); }"
        "@counter-style stars { system: cyclic; symbols: '*'; suffix: ' '; }"
        "@page { @bottom-right { content: 'Seite ' counter(page); } }"
        "body { font-family: InlineFace; } ol { list-style: stars; }"
        "p { color: rgb(0, 0, 255); }</style>"
    )
    # Same specificity, later in the document: the <style> rule beats the linked one.
    head = '<link rel="stylesheet" href="linked.css">' + style
    parsed = _counting_style_parses(monkeypatch)
    for _ in range(3):
        document = render(html_doc("<p>Blue</p><ol><li>Item</li></ol>", head=head), fetcher, pack)
        assert _colour_of(document, "p")[:3] == (0.0, 0.0, 1.0)
        pdf = write_pdf(document, **META)
        assert "*" in text_of(pdf) and "Seite 1" in text_of(pdf)
        fonts = {str(font["/BaseFont"]) for page in PdfReader(io.BytesIO(pdf)).pages
                 for font in page["/Resources"]["/Font"].values()}
        assert any(name.endswith("+InlineFace") for name in fonts), fonts
    assert len(parsed) == 1
    # Other text is parsed for itself.
    render(html_doc("<p>x</p>", head="<style>p { color: rgb(0, 255, 0); }</style>"), fetcher, pack)
    assert len(parsed) == 2


def test_style_element_follows_its_files_and_policy(
    fetcher: PackFetcher, pack: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A changed @import is seen; another fetcher policy parses again; refusals are not kept."""
    (pack / "part.css").write_text("p { color: rgb(255, 0, 0); }")
    html = html_doc("<p>x</p>", head="<style>@import url('part.css');</style>")
    parsed = _counting_style_parses(monkeypatch)
    assert _colour_of(render(html, fetcher, pack), "p")[:3] == (1.0, 0.0, 0.0)
    (pack / "part.css").write_text("p { color: rgb(0, 255, 0); }")
    os.utime(pack / "part.css", ns=(10**18, 10**18))
    assert _colour_of(render(html, fetcher, pack), "p")[:3] == (0.0, 1.0, 0.0)
    assert _colour_of(render(html, fetcher, pack), "p")[:3] == (0.0, 1.0, 0.0)
    assert len(parsed) == 2
    other = PackFetcher(roots=[pack], allowed_hosts=["example.invalid"])
    render(html, other, pack)
    assert len(parsed) == 3
    # A font outside the pack fails every render, not only the first.
    outside = html_doc("<p>x</p>", head=(
        "<style>@font-face { font-family: F; src: url('../secret.ttf'); }</style>"))
    for _ in range(2):
        with pytest.raises(AssetError):
            render(outside, fetcher, pack)


def test_style_element_with_layers_is_parsed_per_document(
    fetcher: PackFetcher, pack: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """@layer order is shared by a document's sheets: such <style> text is not reused."""
    html = html_doc("<p>x</p>", head=(
        "<style>@layer base { p { color: rgb(255, 0, 0); } }</style>"))
    parsed = _counting_style_parses(monkeypatch)
    for _ in range(2):
        assert _colour_of(render(html, fetcher, pack), "p")[:3] == (1.0, 0.0, 0.0)
    assert len(parsed) == 3  # the first probe, then WeasyPrint's own parse per render


# --- budgets ------------------------------------------------------------------


def _slow_html() -> str:
    rows = "".join(
        f"<tr><td>{i}</td><td>row {i} text</td><td>{i * 3}.00</td></tr>" for i in range(6000)
    )
    return html_doc(f"<table>{rows}</table>")


def test_layout_is_interrupted_at_the_deadline(fetcher: PackFetcher, pack: Path) -> None:
    """On the main thread SIGALRM stops layout; the previous handler is restored."""
    def sentinel(signum: int, frame: object) -> None:
        raise AssertionError("the old handler must not fire")

    previous = signal.signal(signal.SIGALRM, sentinel)
    try:
        started = time.monotonic()
        with pytest.raises(BudgetError, match=r"PDF layout exceeded 0\.3 s"):
            render(_slow_html(), fetcher, pack, deadline=started + 0.3)
        assert signal.getsignal(signal.SIGALRM) is sentinel
        assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    finally:
        signal.signal(signal.SIGALRM, previous)


def test_an_outer_alarm_is_re_armed(fetcher: PackFetcher, pack: Path) -> None:
    """Someone else's ITIMER_REAL is suspended during layout and re-armed afterwards."""
    def outer(signum: int, frame: object) -> None:
        raise AssertionError("outer alarm fired during the test")

    previous = signal.signal(signal.SIGALRM, outer)
    signal.setitimer(signal.ITIMER_REAL, 30)
    try:
        render(html_doc("quick"), fetcher, pack, deadline=time.monotonic() + 10)
        delay, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 0 < delay <= 30  # re-armed with what was left of its 30 s
        assert signal.getsignal(signal.SIGALRM) is outer
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_an_alarm_after_layout_returned_raises_nothing() -> None:
    """The alarm can go off after layout has returned, before the budget disarms (seen on a
    loaded machine, at the start of its ``__exit__``). Raising there left the repeating
    alarm armed, and it went off later outside any render: a row's BudgetError escaped its
    batch task. Outside layout it only marks the budget expired; the block's end disarms."""
    from ccm.channels.pdf import _Budget

    previous = signal.getsignal(signal.SIGALRM)
    budget = _Budget(time.monotonic() + 30)
    with budget:
        budget._on_alarm(signal.SIGALRM, sys._getframe())  # not inside layout
    assert budget.expired
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert signal.getsignal(signal.SIGALRM) is previous


def test_deadline_already_passed_off_main_thread(fetcher: PackFetcher, pack: Path) -> None:
    """Off the main thread there is no alarm, but a passed deadline is still refused."""
    errors: list[BaseException] = []

    def work() -> None:
        try:
            render(html_doc("x"), fetcher, pack, deadline=time.monotonic() - 1)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert len(errors) == 1 and isinstance(errors[0], BudgetError)


def test_html_too_large_is_refused_before_layout(fetcher: PackFetcher, pack: Path) -> None:
    """HTML over max_html_bytes (UTF-8 bytes) raises BudgetError."""
    with pytest.raises(BudgetError, match="larger than 1000 bytes"):
        render(html_doc("é" * 600), fetcher, pack, max_html_bytes=1000)


# --- writing ------------------------------------------------------------------


def test_metadata_and_tagging(fetcher: PackFetcher, pack: Path, weasy_logs: Any) -> None:
    """Title, author (the brand), subject, language; tagged with a structure tree."""
    document = render(html_doc("<h1>Hello</h1><p>Text</p>", lang="xx"), fetcher, pack)
    pdf = write_pdf(document, **META, subject="Statement", metadata={"ccm:run": "r1"})
    reader = PdfReader(io.BytesIO(pdf))
    assert reader.metadata is not None
    assert reader.metadata.title == "Monthly statement"
    assert reader.metadata.author == "Acme Bank"
    assert reader.metadata.subject == "Statement"
    assert reader.metadata["/ccm:run"] == "r1"
    root = reader.trailer["/Root"]
    assert root["/Lang"] == "en-GB"
    assert "/StructTreeRoot" in root
    assert root["/MarkInfo"]["/Marked"] == True  # noqa: E712 (a pypdf BooleanObject)


def test_pdfa3b_with_embedded_request(fetcher: PackFetcher, pack: Path, weasy_logs: Any) -> None:
    """PDF/A-3b: XMP part 3 conformance B, the attachment extractable and unchanged."""
    request = '{"customer": {"id": "42", "name": "Zoë"}}'.encode()
    document = render(html_doc("<p>Archive me</p>"), fetcher, pack)
    pdf = write_pdf(
        document, **META, variant="pdf/a-3b",
        attachments=[("request.json", request, "application/json")],
    )
    reader = PdfReader(io.BytesIO(pdf))
    xmp = reader.xmp_metadata
    assert xmp is not None
    assert xmp.pdfaid_part == "3" or str(xmp.pdfaid_part) == "3"
    assert xmp.pdfaid_conformance == "B"
    assert reader.attachments["request.json"] == [request]
    root = reader.trailer["/Root"]
    (filespec,) = {ref.idnum: ref.get_object() for ref in root["/AF"]}.values()
    assert filespec["/AFRelationship"] == "/Data"
    assert filespec["/EF"]["/F"].get_object()["/Subtype"] == "/application/json"
    assert "/OutputIntents" in root and "/StructTreeRoot" in root
    assert reader.metadata is not None and reader.metadata.title == "Monthly statement"


def test_one_document_written_twice(fetcher: PackFetcher, pack: Path, weasy_logs: Any) -> None:
    """Archival PDF/A then delivery PDF from one layout: the second carries nothing of the first."""
    (pack / "note.txt").write_text("declared in HTML")
    document = render(
        html_doc("<p>Twice</p>", head='<link rel="attachment" href="note.txt">'), fetcher, pack
    )
    archival = write_pdf(document, **META, variant="pdf/a-3b",
                         attachments=[("request.json", b"{}", "application/json")])
    delivery = write_pdf(document, **META, metadata={"ccm:archival-sha256": "ab" * 32})
    again = write_pdf(document, **META)
    root = PdfReader(io.BytesIO(delivery)).trailer["/Root"]
    assert "/OutputIntents" not in root and "/AF" not in root
    assert PdfReader(io.BytesIO(delivery)).attachments == {}
    assert PdfReader(io.BytesIO(archival)).attachments.keys() == {"request.json"}
    assert text_of(archival) == text_of(delivery) == text_of(again)
    assert PdfReader(io.BytesIO(delivery)).metadata["/ccm:archival-sha256"] == "ab" * 32  # type: ignore[index]


def test_delivery_from_archival_copy(fetcher: PackFetcher, pack: Path, weasy_logs: Any) -> None:
    """The delivery PDF made from the archival copy has its pages and tags, none of PDF/A."""
    document = render(html_doc("<h1>Statement</h1><p>Derived</p>"), fetcher, pack)
    archival = write_pdf(document, **META, subject="Statement", variant="pdf/a-3b",
                         attachments=[("request.json", b'{"secret": 1}', "application/json")])
    direct = write_pdf(document, **META, subject="Statement")
    delivery = encrypt_pdf(archival, "pw-1234",
                           edit=delivery_from_archival({"ccm:archival-sha256": "cd" * 32}))
    reader = PdfReader(io.BytesIO(delivery))
    assert reader.decrypt("pw-1234").name == "USER_PASSWORD"
    root = reader.trailer["/Root"]
    for key in ("/AF", "/Names", "/Metadata", "/OutputIntents"):
        assert key not in root
    assert reader.attachments == {}
    with pikepdf.open(io.BytesIO(delivery), password="pw-1234") as opened:
        kinds = {str(obj.get("/Type")) for obj in opened.objects if hasattr(obj, "get")}
    assert "/EmbeddedFile" not in kinds and "/Filespec" not in kinds  # request not carried
    assert root["/Lang"] == "en-GB" and "/StructTreeRoot" in root
    assert root["/MarkInfo"]["/Marked"] == True  # noqa: E712 (a pypdf BooleanObject)
    assert reader.metadata is not None
    assert (reader.metadata.title, reader.metadata.author, reader.metadata.subject) == (
        "Monthly statement", "Acme Bank", "Statement")
    assert reader.metadata["/ccm:archival-sha256"] == "cd" * 32
    assert "\n".join(page.extract_text() for page in reader.pages) == text_of(direct)
    with pytest.raises(ValueError, match="metadata key"):
        delivery_from_archival({"Title": "x"})


def test_write_rejects_bad_arguments(fetcher: PackFetcher, pack: Path) -> None:
    """Unknown variants, odd metadata keys and path-like attachment names are refused."""
    document = render(html_doc("x"), fetcher, pack)
    with pytest.raises(ValueError, match="variant"):
        write_pdf(document, **META, variant="pdf/z")
    for key in ("Title", "has space", "a/b", ""):
        with pytest.raises(ValueError, match="metadata key"):
            write_pdf(document, **META, metadata={key: "v"})
    with pytest.raises(ValueError, match="lang"):
        write_pdf(document, title="t", author="a", lang="")
    with pytest.raises(ValueError, match="file name"):
        write_pdf(document, **META, attachments=[("../x.json", b"{}", "application/json")])


def test_page_numbers(fetcher: PackFetcher, pack: Path, pdftotext: Callable[..., str]) -> None:
    """counter(page) / counter(pages) in a page margin box give "Page 2 of 2"."""
    css = '@page { @bottom-center { content: "Page " counter(page) " of " counter(pages) } }'
    body = "".join(f"<p>Line {i}</p>" for i in range(45))
    document = render(html_doc(body, head=f"<style>{css}</style>"), fetcher, pack)
    pdf = write_pdf(document, **META)
    assert len(document.pages) == 2
    assert "Page 2 of 2" in pdftotext(pdf)
    assert "Page 2 of 2" in PdfReader(io.BytesIO(pdf)).pages[1].extract_text()


def test_arabic_rtl(fetcher: PackFetcher, pack: Path, pdftotext: Callable[..., str]) -> None:
    """dir=rtl lang=ar with a pack font: shaped Arabic comes back as the same words."""
    shutil.copy(DEJAVU, pack / "DejaVuSans.ttf")
    css = ("@font-face { font-family: PackSans; src: url('DejaVuSans.ttf'); }"
           "body { font-family: PackSans; }")
    words = "مرحبا بالعالم"
    document = render(
        html_doc(f"<p>{words}</p>", lang="ar", extra=' dir="rtl"', head=f"<style>{css}</style>"),
        fetcher, pack,
    )
    pdf = write_pdf(document, title="كشف الحساب", author="Acme", lang="ar")
    text = pdftotext(pdf)
    for word in words.split():
        assert word in text, text
    assert PdfReader(io.BytesIO(pdf)).metadata.title == "كشف الحساب"  # type: ignore[union-attr]
