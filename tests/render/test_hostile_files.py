"""Hostile packs and template folders made in tmp_path: nothing outside a root is ever read."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import ccm
from ccm.channels.email import _mjml as email_mjml
from ccm.errors import RenderError, UnsafeFileError
from tests.examples_helpers import copy_examples, daytime, sample

PASSWD_MARK = "root:"


@pytest.fixture
def hostile(tmp_path: Path) -> tuple[Path, Path]:
    """The example pack and templates, plus a shared partial that is a symlink to /etc/passwd."""
    pack, templates = copy_examples(tmp_path)
    (templates / "partials").mkdir()
    (templates / "partials" / "secret.txt").symlink_to("/etc/passwd")
    return pack, templates


@pytest.mark.parametrize(
    ("template", "channel", "source"),
    [
        ("welcome", "pdf", "pdf.html.j2"),
        ("payment_reminder", "email", "email.mjml.j2"),
        ("payment_reminder", "sms", "sms.txt.j2"),
    ],
)
def test_include_of_a_symlink_to_etc_passwd_is_refused_on_every_channel(
    hostile: tuple[Path, Path], template: str, channel: str, source: str
) -> None:
    """``{% include %}`` of a symlink leaving the templates folder fails naming the file."""
    pack, templates = hostile
    src = templates / template / source
    text = src.read_text("utf-8")
    marker = "{% block content %}"
    src.write_text(text.replace(marker, marker + '{% include "templates/partials/secret.txt" %}',
                                1), "utf-8")
    engine = ccm.Engine(pack, templates, record=None, clock=daytime)
    with pytest.raises(UnsafeFileError) as caught:
        engine.render(template, sample(template), channel)
    assert "partials/secret.txt" in str(caught.value)
    assert PASSWD_MARK not in str(caught.value)


@pytest.mark.parametrize(
    "tag",
    [
        '{% import "templates/partials/secret.txt" as m %}',
        '{% from "templates/partials/secret.txt" import x %}',
        '{% extends "templates/partials/secret.txt" %}',
    ],
)
def test_import_and_extends_of_a_symlink_are_refused(hostile: tuple[Path, Path],
                                                     tag: str) -> None:
    """``import``, ``from … import`` and ``extends`` go through the same contained loader."""
    pack, templates = hostile
    src = templates / "payment_reminder" / "sms.txt.j2"
    src.write_text(tag + "\n{% block content %}x{% endblock %}\n", "utf-8")
    engine = ccm.Engine(pack, templates, record=None, clock=daytime)
    with pytest.raises(UnsafeFileError, match=r"secret\.txt"):
        engine.render("payment_reminder", sample("payment_reminder"), "sms")


def test_symlink_to_a_file_in_another_folder_is_refused(tmp_path: Path) -> None:
    """A partial linking to a file next to the templates folder (not inside it) is refused."""
    pack, templates = copy_examples(tmp_path)
    (tmp_path / "private.txt").write_text("internal only", "utf-8")
    (templates / "partials").mkdir()
    (templates / "partials" / "note.txt").symlink_to(tmp_path / "private.txt")
    src = templates / "payment_reminder" / "sms.txt.j2"
    src.write_text(src.read_text("utf-8").replace(
        "{% block content %}", '{% block content %}{% include "templates/partials/note.txt" %}'),
        "utf-8")
    engine = ccm.Engine(pack, templates, record=None, clock=daytime)
    with pytest.raises(UnsafeFileError, match=r"note\.txt"):
        engine.render("payment_reminder", sample("payment_reminder"), "sms")


def test_symlink_inside_a_template_folder_fails_loading(tmp_path: Path) -> None:
    """A symlink out of a template's own folder is refused when the engine loads (hashing)."""
    pack, templates = copy_examples(tmp_path)
    (templates / "welcome" / "leak.txt").symlink_to("/etc/passwd")
    with pytest.raises(UnsafeFileError, match=r"leak\.txt"):
        ccm.Engine(pack, templates, record=None, clock=daytime)


def test_pack_layout_symlink_fails_loading(tmp_path: Path) -> None:
    """A pack layout that is a symlink to /etc/passwd fails loading the pack."""
    pack, _templates = copy_examples(tmp_path)
    (pack / "layouts" / "evil.html.j2").symlink_to("/etc/passwd")
    with pytest.raises(UnsafeFileError, match=r"evil\.html\.j2"):
        ccm.load_pack(pack)


def test_symlink_to_dev_zero_in_assets_fails_loading(tmp_path: Path) -> None:
    """A symlink to /dev/zero in assets/ is refused at once instead of exhausting memory."""
    pack, templates = copy_examples(tmp_path)
    (pack / "assets" / "zero.bin").symlink_to("/dev/zero")
    with pytest.raises(UnsafeFileError, match=r"zero\.bin"):
        ccm.Engine(pack, templates, record=None, clock=daytime)


def test_symlink_loop_in_a_pack_fails_loading(tmp_path: Path) -> None:
    """A symlink loop in a pack is an UnsafeFileError naming it, not a raw OSError."""
    pack, templates = copy_examples(tmp_path)
    (pack / "assets" / "a").symlink_to(pack / "assets" / "b")
    (pack / "assets" / "b").symlink_to(pack / "assets" / "a")
    with pytest.raises(UnsafeFileError, match="symlink loop"):
        ccm.Engine(pack, templates, record=None, clock=daytime)


def test_fifo_in_assets_does_not_hang_the_engine(tmp_path: Path) -> None:
    """A FIFO in assets/ makes Engine() fail promptly (run in a child with a timeout)."""
    pack, templates = copy_examples(tmp_path)
    os.mkfifo(pack / "assets" / "pipe")
    code = (
        "import sys, ccm\n"
        f"try:\n    ccm.Engine({str(pack)!r}, {str(templates)!r}, record=None)\n"
        "except ccm.UnsafeFileError as exc:\n    print(exc); sys.exit(0)\nsys.exit(1)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False, env={"PYTHONDONTWRITEBYTECODE": "1"})
    assert done.returncode == 0, done.stderr
    assert "pipe" in done.stdout and "FIFO" in done.stdout


def test_manifest_symlink_is_refused(tmp_path: Path) -> None:
    """A template.yaml that is a symlink to /etc/passwd is refused, its content never parsed."""
    pack, templates = copy_examples(tmp_path)
    manifest = templates / "welcome" / "template.yaml"
    manifest.unlink()
    manifest.symlink_to("/etc/passwd")
    with pytest.raises(UnsafeFileError) as caught:
        ccm.Engine(pack, templates, record=None, clock=daytime)
    assert PASSWD_MARK not in str(caught.value)


def test_catalog_symlink_is_refused(tmp_path: Path) -> None:
    """A translation catalog linking out of the pack is refused when it is loaded."""
    pack, templates = copy_examples(tmp_path)
    po = next(pack.glob("locales/*/LC_MESSAGES/*.po"))
    po.unlink()
    po.symlink_to("/etc/passwd")
    with pytest.raises(UnsafeFileError):
        ccm.Engine(pack, templates, record=None, clock=daytime)


def test_a_folder_symlink_that_is_no_template_gives_no_access(hostile: tuple[Path, Path]) -> None:
    """``templates/etc -> /etc`` (no template.yaml there) cannot be included from."""
    pack, templates = hostile
    (templates / "etc").symlink_to("/etc", target_is_directory=True)
    src = templates / "payment_reminder" / "sms.txt.j2"
    src.write_text(src.read_text("utf-8").replace(
        "{% block content %}", '{% block content %}{% include "templates/etc/passwd" %}'),
        "utf-8")
    engine = ccm.Engine(pack, templates, record=None, clock=daytime)
    with pytest.raises(UnsafeFileError, match="passwd"):
        engine.render("payment_reminder", sample("payment_reminder"), "sms")


@pytest.mark.parametrize("bad", [b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8,
                                 b"<svg xmlns='http://www.w3.org/2000/svg'><unclosed"])
def test_an_image_weasyprint_cannot_read_fails_the_render(tmp_path: Path, bad: bytes) -> None:
    """WeasyPrint logs an image it cannot decode and lays the page out without it (the alt
    text in its place); ccm fails the render with AssetError naming the file instead."""
    from ccm.errors import AssetError

    pack, templates = copy_examples(tmp_path)
    name = "broken.svg" if bad.startswith(b"<svg") else "broken.png"
    (pack / "assets" / name).write_bytes(bad)
    source = templates / "welcome" / "pdf.html.j2"
    source.write_text(source.read_text(encoding="utf-8").replace(
        "{% block content %}", f'{{% block content %}}<img src="assets/{name}" alt="Logo">', 1),
        encoding="utf-8")
    eng = ccm.Engine(pack, templates, record=None, clock=daytime)
    with pytest.raises(AssetError, match=name) as caught:
        eng.render("welcome", sample("welcome"), channel="pdf")
    assert "valid PNG" in str(caught.value)
    # The same template without the broken image renders.
    source.write_text(source.read_text(encoding="utf-8").replace(
        f'<img src="assets/{name}" alt="Logo">', ""), encoding="utf-8")
    assert ccm.Engine(pack, templates, record=None, clock=daytime).render(
        "welcome", sample("welcome"), channel="pdf").status == "generated"


def test_a_small_png_of_169_million_pixels_fails_the_render(tmp_path: Path) -> None:
    """A 13,000 x 13,000 PNG of about 20 KB (1.4 GB once decoded) in a pack is refused by
    its header, with the default limit, before WeasyPrint decodes it."""
    from PIL import Image

    from ccm.errors import AssetError

    pack, templates = copy_examples(tmp_path)
    Image.new("1", (13_000, 13_000)).save(pack / "assets" / "huge.png")
    assert (pack / "assets" / "huge.png").stat().st_size < 50_000
    source = templates / "welcome" / "pdf.html.j2"
    source.write_text(source.read_text(encoding="utf-8").replace(
        "{% block content %}", '{% block content %}<img src="assets/huge.png" alt="Logo">', 1),
        encoding="utf-8")
    eng = ccm.Engine(pack, templates, record=None, clock=daytime)
    with pytest.raises(AssetError, match=r"assets/huge\.png.* 13000 x 13000 pixels") as caught:
        eng.render("welcome", sample("welcome"), channel="pdf")
    assert "40,000,000" in str(caught.value) and "scale it down" in str(caught.value)


def test_a_png_past_pillows_own_limit_is_refused_with_its_true_size(tmp_path: Path) -> None:
    """A 20,000 x 20,000 PNG (400 million pixels, past the count at which Pillow stops
    before saying the width and height) is refused with its true pixel count, not a made-up
    "40000001 x 1 pixels"."""
    from PIL import Image

    from ccm.errors import AssetError

    pack, templates = copy_examples(tmp_path)
    Image.new("1", (20_000, 20_000)).save(pack / "assets" / "huge.png")
    source = templates / "welcome" / "pdf.html.j2"
    source.write_text(source.read_text(encoding="utf-8").replace(
        "{% block content %}", '{% block content %}<img src="assets/huge.png" alt="Logo">', 1),
        encoding="utf-8")
    eng = ccm.Engine(pack, templates, record=None, clock=daytime)
    with pytest.raises(AssetError, match=r"assets/huge\.png.* has 400,000,000 pixels, more "
                       r"than the limit of 40,000,000"):
        eng.render("welcome", sample("welcome"), channel="pdf")


def test_deeply_nested_email_is_a_render_error_naming_the_template(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A loop opening 20,000 tags fails the render; mjml-python (it would crash) never runs."""
    pack, templates = copy_examples(tmp_path)
    src = templates / "payment_reminder" / "email.mjml.j2"
    marker = "{% block content %}"
    src.write_text(src.read_text("utf-8").replace(
        marker, marker + "<mj-text>{% for i in range(20000) %}<b>{% endfor %}x</mj-text>", 1),
        "utf-8")

    def refuse(source: str, **kwargs: object) -> str:
        pytest.fail("the MJML compiler was called")

    monkeypatch.setattr(email_mjml, "mjml2html", refuse)
    email_mjml.clear_mjml_cache()
    engine = ccm.Engine(pack, templates, record=None)
    with pytest.raises(RenderError, match=r"^template 'payment_reminder': the MJML nests "
                                          r"elements \d+ deep, more than the 100 ") as caught:
        engine.render("payment_reminder", sample("payment_reminder"), "email")
    assert caught.value.template == "payment_reminder"
    assert caught.value.channel == "email"


# -- hidden files and other templates' files: no digest covers them, no render reads them


def test_hidden_mj_include_is_refused(tmp_path: Path) -> None:
    """``<mj-include>`` of a hidden pack file fails the email, naming the file."""
    pack, templates = copy_examples(tmp_path)
    (pack / ".parts").mkdir()
    (pack / ".parts" / "x.mjml").write_text("<mj-text>HIDDEN</mj-text>", "utf-8")
    src = templates / "payment_reminder" / "email.mjml.j2"
    src.write_text(src.read_text("utf-8").replace(
        "{% block content %}", '{% block content %}<mj-include path=".parts/x.mjml" />', 1),
        "utf-8")
    engine = ccm.Engine(pack, templates, record=None)
    with pytest.raises(ccm.RenderError, match=r"\.parts/x\.mjml.*hidden"):
        engine.render("payment_reminder", sample("payment_reminder"), "email")


def test_hidden_partial_in_the_template_folder_is_refused(tmp_path: Path) -> None:
    """The rule is the same in a template's folder: a hidden source is never included."""
    pack, templates = copy_examples(tmp_path)
    (templates / "payment_reminder" / ".note.txt.j2").write_text("HIDDEN", "utf-8")
    src = templates / "payment_reminder" / "sms.txt.j2"
    src.write_text(src.read_text("utf-8").replace(
        "{% block content %}",
        '{% block content %}{% include "templates/payment_reminder/.note.txt.j2" %}', 1),
        "utf-8")
    engine = ccm.Engine(pack, templates, record=None, clock=daytime)
    with pytest.raises(UnsafeFileError, match=r"'\.note\.txt\.j2' is hidden"):
        engine.render("payment_reminder", sample("payment_reminder"), "sms")


def test_layout_including_a_template_file_is_refused(tmp_path: Path) -> None:
    """A pack layout loads only the pack's layouts: a templates folder is no part of a pack."""
    pack, templates = copy_examples(tmp_path)
    (templates / "shared").mkdir()
    (templates / "shared" / "note.txt.j2").write_text("SHARED", "utf-8")
    layout = pack / "layouts" / "sms.txt.j2"
    layout.write_text('{% include "templates/shared/note.txt.j2" %}' +
                      layout.read_text("utf-8"), "utf-8")
    engine = ccm.Engine(pack, templates, record=None, clock=daytime)
    with pytest.raises(UnsafeFileError) as caught:
        engine.render("payment_reminder", sample("payment_reminder"), "sms")
    assert "templates/shared/note.txt.j2" in str(caught.value)
    assert "pack/sms.txt.j2 may load only the pack's layouts" in str(caught.value)


def test_hidden_logo_in_pack_yaml_fails_loading(tmp_path: Path) -> None:
    """pack.yaml naming a hidden file (which the pack's digest skips) fails loading it."""
    pack, _templates = copy_examples(tmp_path)
    (pack / "assets" / "logo.svg").rename(pack / "assets" / ".logo.svg")
    manifest = pack / "pack.yaml"
    manifest.write_text(manifest.read_text("utf-8").replace(
        "logo: assets/logo.svg", "logo: assets/.logo.svg"), "utf-8")
    with pytest.raises(ccm.PackError, match=r"logo: '\.logo\.svg' is hidden"):
        ccm.load_pack(pack)
