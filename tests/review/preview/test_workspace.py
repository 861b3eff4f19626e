"""The preview's workspace: choices, rendered views, errors as values, generations."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ccm.review.preview.workspace import EmailView, ErrorInfo, PdfView, SmsView, Workspace

LIGHT = "payment_reminder"


def insert_in_block(path: Path, text: str) -> None:
    """Put ``text`` at the start of the template's content block."""
    source = path.read_text("utf-8")
    path.write_text(source.replace("{% block content %}\n", "{% block content %}\n" + text, 1),
                    "utf-8")


def test_resolve_fills_in_defaults(project: tuple[list[Path], Path]) -> None:
    """Missing choices default to the first pack, template and sample, and the sample's locale."""
    packs, templates = project
    ws = Workspace(packs, templates, lint=False)
    key = ws.resolve()
    listing = ws.listing("acme")
    assert key.pack == "acme"
    assert key.template == listing.templates[0].id
    assert key.sample == listing.templates[0].samples[0]
    assert key.locale in listing.locales
    de = ws.resolve("acme", LIGHT, None, "02_de_DE_one_day")
    assert de.locale == "de_DE"


def test_resolve_replaces_stale_choices(project: tuple[list[Path], Path]) -> None:
    """A pack, template, locale or sample that does not exist falls back to a default."""
    packs, templates = project
    ws = Workspace(packs, templates, lint=False)
    key = ws.resolve("nope", "gone", "xx_XX", "missing")
    assert key.pack == "acme" and key.template in {t.id for t in ws.listing("acme").templates}
    assert key.locale in ws.listing("acme").locales
    globex = ws.resolve("globex", LIGHT, "en_GB")
    assert globex.locale in ws.listing("globex").locales


def test_view_renders_email_and_sms(project: tuple[list[Path], Path]) -> None:
    """A view holds the email's HTML, text and headers and the SMS with encoding and segments."""
    packs, templates = project
    ws = Workspace(packs, templates, lint=False)
    view = ws.view(ws.resolve("acme", LIGHT))
    assert view.error is None
    email = view.channel("email")
    sms = view.channel("sms")
    assert email is not None and isinstance(email.output, EmailView)
    assert sms is not None and isinstance(sms.output, SmsView)
    assert "<html" in email.output.html.lower() and email.output.text.strip()
    assert {"From", "To", "Subject"} <= {name for name, _ in email.output.headers}
    assert sms.output.text.startswith("ACME: ")
    assert sms.output.encoding in {"GSM-7", "UCS-2"} and sms.output.segments >= 1
    assert ws.view(view.key) is view  # cached within a generation


def test_email_links_pack_assets_locally(project: tuple[list[Path], Path]) -> None:
    """Images the email loads from the pack's assets_url are served by the preview instead."""
    packs, templates = project
    ws = Workspace(packs, templates, lint=False)
    email = ws.view(ws.resolve("acme", LIGHT)).channel("email")
    assert email is not None and isinstance(email.output, EmailView)
    assert "https://acme.example/brand/v1/" not in email.output.html
    assert "/pack-file/acme/assets/" in email.output.html


def test_confidential_pdf_pages_are_drawn_decrypted(project: tuple[list[Path], Path]) -> None:
    """The encrypted statement is opened with the sample's password and drawn page by page."""
    packs, templates = project
    ws = Workspace(packs, templates, lint=False)
    pdf = ws.view(ws.resolve("acme", "monthly_statement")).channel("pdf")
    assert pdf is not None and isinstance(pdf.output, PdfView), pdf
    assert pdf.output.encrypted and pdf.output.password_hint
    assert pdf.output.pages and all(p.startswith(b"\x89PNG") for p in pdf.output.pages)
    width, height = pdf.output.sizes[0]
    assert 1.3 < height / width < 1.5  # A4 portrait


def test_template_error_shows_file_and_line(project: tuple[list[Path], Path]) -> None:
    """A syntax error becomes the channel's error with file, line and the lines around it."""
    packs, templates = project
    source = templates / LIGHT / "sms.txt.j2"
    insert_in_block(source, "{{ data.amount | money( }}\n")
    ws = Workspace(packs, templates, lint=False)
    view = ws.view(ws.resolve("acme", LIGHT))
    sms = view.channel("sms")
    email = view.channel("email")
    assert sms is not None and sms.error is not None
    assert sms.error.where == f"templates/{LIGHT}/sms.txt.j2:3"
    assert sms.error.message.startswith(f"templates/{LIGHT}/sms.txt.j2:3: ")
    assert (3, "{{ data.amount | money( }}") in sms.error.excerpt
    assert email is not None and isinstance(email.output, EmailView)  # the others still render


def test_broken_pack_is_an_error_not_an_exception(project: tuple[list[Path], Path]) -> None:
    """A pack.yaml that does not parse is shown with its file and line; templates still list."""
    packs, templates = project
    manifest = packs[0] / "pack.yaml"
    manifest.write_text(manifest.read_text("utf-8") + "\nlocales: [oops\n", "utf-8")
    ws = Workspace(packs, templates, lint=False)
    listing = ws.listing("acme")
    assert listing.error is not None
    assert listing.error.where is not None
    assert listing.error.where.startswith("brand_packs/acme/pack.yaml:")
    assert LIGHT in {t.id for t in listing.templates}
    view = ws.view(ws.resolve("acme", LIGHT))
    assert view.error == listing.error
    assert ws.listing("globex").error is None


def test_bump_rebuilds_from_disk(project: tuple[list[Path], Path]) -> None:
    """After a change, a new generation renders the edited sources."""
    packs, templates = project
    ws = Workspace(packs, templates, lint=False)
    key = ws.resolve("acme", LIGHT)
    first = ws.view(key).channel("sms")
    insert_in_block(templates / LIGHT / "sms.txt.j2", "Zebra. ")
    assert ws.view(key).channel("sms") == first
    ws.bump()
    sms = ws.view(key).channel("sms")
    assert sms is not None and isinstance(sms.output, SmsView)
    assert sms.output.text.startswith("ACME: Zebra. ")


def test_template_without_samples_says_so(project: tuple[list[Path], Path]) -> None:
    """A template with no sample requests shows an error naming its samples folder."""
    packs, templates = project
    for sample in (templates / LIGHT / "samples").glob("*.json"):
        sample.unlink()
    ws = Workspace(packs, templates, lint=False)
    view = ws.view(ws.resolve("acme", LIGHT))
    assert view.error is not None
    assert "no sample requests" in view.error.message
    assert view.error.where == f"templates/{LIGHT}/samples"


def test_asset_stays_inside_the_pack(project: tuple[list[Path], Path]) -> None:
    """Pack files are served; paths outside the pack and hidden files are not."""
    packs, templates = project
    ws = Workspace(packs, templates, lint=False)
    assert ws.asset("acme", "assets/logo.svg") == (packs[0] / "assets" / "logo.svg").resolve()
    (packs[0] / ".secret").write_text("x", "utf-8")
    assert ws.asset("acme", "../globex/pack.yaml") is None
    assert ws.asset("acme", ".secret") is None
    assert ws.asset("nope", "pack.yaml") is None


@dataclass(frozen=True)
class _Finding:
    file: str
    line: int | None
    rule: str
    severity: str
    message: str


def test_findings_are_for_what_is_shown(project: tuple[list[Path], Path],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Lint runs per channel for the view's locale and sample; findings are sorted and relative."""
    packs, templates = project
    calls: list[tuple[str, str, str]] = []

    def findings_for(engine: Any, template_id: str, channel: str, locale: str,
                     request: Any, *, sample: Path, result: Any) -> list[_Finding]:
        calls.append((template_id, channel, locale))
        assert sample == templates / template_id / "samples" / f"{key.sample}.json"
        assert result is not None  # the message the view rendered, checked as shown
        src = str(templates / template_id / f"{channel}.txt.j2")
        return [_Finding(src, 2, "tone-banned-term", "warning", "say 'pay', not 'remit'"),
                _Finding(src, None, "sms-ucs2", "error", "’ forces UCS-2")]

    fake = types.ModuleType("ccm.review.lint")
    fake.findings_for = findings_for  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ccm.review.lint", fake)
    ws = Workspace(packs, templates)
    key = ws.resolve("acme", LIGHT, "de_DE")
    found = ws.findings(key)
    assert calls == [(LIGHT, "email", "de_DE"), (LIGHT, "sms", "de_DE")]
    assert [f.severity for f in found] == ["error", "error", "warning", "warning"]
    assert found[-1].where == f"templates/{LIGHT}/sms.txt.j2:2"
    assert ws.findings(key) == found and len(calls) == 2  # cached


def test_a_failing_linter_is_shown_not_raised(project: tuple[list[Path], Path],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """An exception inside the linter becomes one 'lint-failed' finding."""
    packs, templates = project

    def findings_for(*args: Any, **kwargs: Any) -> list[Any]:
        raise RuntimeError("linter bug")

    fake = types.ModuleType("ccm.review.lint")
    fake.findings_for = findings_for  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ccm.review.lint", fake)
    found = Workspace(packs, templates).findings(Workspace(packs, templates).resolve())
    assert [(f.rule, f.message) for f in found] == [("lint-failed", "linter bug")]


def test_error_info_reads_the_message_location(tmp_path: Path) -> None:
    """ErrorInfo takes file:line from the message when the context lacks it."""
    source = tmp_path / "t" / "sms.txt.j2"
    source.parent.mkdir()
    source.write_text("one\ntwo\nthree\n", "utf-8")
    info = ErrorInfo.from_exception(ValueError(f"{source}:2: boom"), root=tmp_path)
    assert info.where == "t/sms.txt.j2:2"
    assert info.message == "t/sms.txt.j2:2: boom"
    assert info.excerpt == ((1, "one"), (2, "two"), (3, "three"))


def test_real_findings_point_at_the_template_and_the_sample(
        project: tuple[list[Path], Path]) -> None:
    """The linter's findings for the view name the template line and the sample line."""
    packs, templates = project
    email = templates / LIGHT / "email.mjml.j2"
    insert_in_block(email, "<mj-text>Please act now.</mj-text>\n")
    sample = templates / LIGHT / "samples" / "01_en_GB_overdue.json"
    sample.write_text(sample.read_text("utf-8").replace(
        '"pay_url": "https://pay.example.com/r/7Q2M9X"', '"pay_url": 42'), "utf-8")
    ws = Workspace(packs, templates)
    key = ws.resolve("acme", LIGHT, "en_GB", "01_en_GB_overdue")
    lines = sample.read_text("utf-8").split("\n")
    pay_line = next(n for n, text in enumerate(lines, 1) if '"pay_url"' in text)
    found = {(f.rule, f.where) for f in ws.findings(key)}
    assert ("contract-violation", f"templates/{LIGHT}/samples/01_en_GB_overdue.json:{pay_line}") \
        in found
    sample.write_text(sample.read_text("utf-8").replace(
        '"pay_url": 42', '"pay_url": "https://pay.example/r/1"'), "utf-8")
    ws.bump()
    act_line = email.read_text("utf-8").split("\n").index(
        "<mj-text>Please act now.</mj-text>") + 1
    found = {(f.rule, f.where) for f in ws.findings(key)}
    assert found == {("banned-term", f"templates/{LIGHT}/email.mjml.j2:{act_line}"),
                     ("untranslated-text", f"templates/{LIGHT}/email.mjml.j2:{act_line}")}


def test_findings_follow_the_generation(project: tuple[list[Path], Path]) -> None:
    """After a change on disk the findings are those of the new sources, not the cached ones."""
    packs, templates = project
    ws = Workspace(packs, templates)
    key = ws.resolve("acme", LIGHT, "en_GB")
    assert ws.findings(key) == ()
    insert_in_block(templates / LIGHT / "sms.txt.j2", "Pay IMMEDIATELY. ")
    assert ws.findings(key) == ()  # same generation: cached
    ws.bump()
    assert sorted((f.rule, f.where) for f in ws.findings(key)) == [
        ("pressuring-wording", f"templates/{LIGHT}/sms.txt.j2:3"),
        ("shouting", f"templates/{LIGHT}/sms.txt.j2:3"),
        ("untranslated-text", f"templates/{LIGHT}/sms.txt.j2:3")]


def test_lint_checks_the_messages_the_view_rendered(project: tuple[list[Path], Path],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Showing a view and its findings renders each channel once, not twice."""
    import ccm.render.engine

    packs, templates = project
    ws = Workspace(packs, templates)
    key = ws.resolve("acme", LIGHT, "en_GB")
    ws.engine("acme")
    renders: list[Any] = []
    original = ccm.render.engine.Engine.render

    def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        renders.append(args[:2])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ccm.render.engine.Engine, "render", counting)
    ws.view(key)
    ws.findings(key)
    assert len(renders) == 1  # every channel in one call, reused by lint


def test_pack_manifest_error_shows_the_line_of_its_key(
        project: tuple[list[Path], Path]) -> None:
    """A pack.yaml that parses but breaks a rule points at the line of the key it names."""
    packs, templates = project
    manifest = packs[0] / "pack.yaml"
    text = manifest.read_text("utf-8")
    manifest.write_text(text.replace("locales: [en_GB, de_DE]", "locales: [en_GB, de_DE, fr_FR]"),
                        "utf-8")
    listing = Workspace(packs, templates, lint=False).listing("acme")
    legal = text.split("\n").index("legal:") + 1
    assert listing.error is not None
    assert listing.error.where == f"brand_packs/acme/pack.yaml:{legal}"
    assert "legal: no text for locale(s) fr_FR" in listing.error.message
    assert (legal, "legal:") in listing.error.excerpt


def test_nothing_loading_is_not_shown_as_no_findings(project: tuple[list[Path], Path]) -> None:
    """When the pack or templates do not load, the lint panel says nothing was linted (it
    said "No findings for what is shown" under the error)."""
    packs, templates = project
    ws = Workspace(packs, templates)
    key = ws.resolve("acme", LIGHT)
    manifest = templates / LIGHT / "template.yaml"
    manifest.write_text(manifest.read_text("utf-8") + "\nnot: [valid\n", "utf-8")
    ws.bump()
    found = ws.findings(key)
    assert [(f.severity, f.rule) for f in found] == [("error", "not-linted")]
    assert "do not load" in found[0].message
