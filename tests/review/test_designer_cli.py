"""What a template designer sees from the CLI when a pack or template folder is broken."""

from __future__ import annotations

from pathlib import Path

import pytest

from ccm.cli import main
from tests.examples_helpers import copy_examples

WELCOME_SAMPLE = "welcome/samples/01_en_GB.json"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _use_proof_key(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A proof signing key made with ``ccm proof --generate-key``, in CCM_PROOF_KEY_FILE."""
    key = tmp_path / "keys" / "proof.pem"
    key.parent.mkdir()
    assert main(["proof", "--generate-key", str(key)]) == 0
    capsys.readouterr()
    monkeypatch.setenv("CCM_PROOF_KEY_FILE", str(key))


@pytest.fixture
def other_template_broken(tmp_path: Path) -> tuple[Path, Path]:
    """The examples, with a symlink out of ``nps_survey``'s folder (not the template rendered)."""
    pack, templates = copy_examples(tmp_path)
    outside = tmp_path / "outside.txt"
    outside.write_text("not for templates", "utf-8")
    (templates / "nps_survey" / "evil.j2").symlink_to(outside)
    return pack, templates


@pytest.mark.parametrize("command", ["render", "approve", "proof"])
def test_a_broken_template_names_itself_when_another_is_asked_for(
        other_template_broken: tuple[Path, Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        command: str) -> None:
    """Rendering, approving or proofing ``welcome`` while ``nps_survey`` is broken fails (the
    folder loads all or nothing) with one line naming the broken template, its file, that it
    stops every template, and what to do; nothing is written."""
    pack, templates = other_template_broken
    out = tmp_path / "out"
    if command == "render":
        args = ["render", "welcome", "--pack", str(pack), "--templates", str(templates),
                "--data", str(templates / WELCOME_SAMPLE), "--no-record", "--out", str(out)]
    elif command == "approve":
        args = ["approve", "welcome", "--pack", str(pack), "--templates", str(templates),
                "--by", "Dana"]
    else:
        key = tmp_path / "keys" / "proof.pem"
        key.parent.mkdir()
        assert main(["proof", "--generate-key", str(key)]) == 0
        capsys.readouterr()
        monkeypatch.setenv("CCM_PROOF_KEY_FILE", str(key))
        args = ["proof", "--pack", str(pack), "--templates", str(templates),
                "--template", "welcome", "--out", str(out)]
    code, _, err = run(capsys, *args)
    assert code == 1
    assert "Traceback" not in err and err.count("ccm: error:") == 1
    assert f"{templates / 'nps_survey' / 'evil.j2'}: refused: resolves outside" in err
    assert "template 'nps_survey' does not load" in err
    assert "none renders until it is fixed" in err
    assert f"move {templates / 'nps_survey'} out of the folder" in err
    assert not out.exists()
    assert not (templates.parent / "approvals.json").exists()


def test_every_broken_template_is_named(tmp_path: Path) -> None:
    """Two broken templates: the error is the first one's (its class, file and line) and
    names the second too; its context names the template."""
    import ccm

    pack, templates = copy_examples(tmp_path)
    (templates / "nps_survey" / "contract.schema.json").write_text('{"type": "object",}')
    manifest = templates / "welcome" / "template.yaml"
    manifest.write_text(manifest.read_text("utf-8").replace("journey:", "jorney:"), "utf-8")
    with pytest.raises(ccm.TemplateError) as caught:
        ccm.Engine(pack, templates, record=None)
    error = caught.value
    assert str(error).startswith(f"{templates / 'nps_survey' / 'contract.schema.json'}:1: "
                                 "invalid JSON")
    assert "template 'nps_survey' (and 'welcome') does not load" in str(error)
    assert error.template == "nps_survey" and error.line == 1  # type: ignore[attr-defined]
    assert isinstance(error.__cause__, ccm.TemplateError)


@pytest.mark.parametrize("line", [
    'msgstr "Datum',          # closing quote missing: Babel read it as "Datu"
    "msgstr Datum",           # not quoted at all
    'msgstr "Datum" x',       # text after the string
    "Datum",                  # a stray line
])
def test_a_catalog_text_not_quoted_right_is_refused_at_its_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str) -> None:
    """A ``.po`` line whose text is not one well-quoted string fails the German render with
    the catalog's file and line and what to do, instead of a German letter saying "Datu";
    nothing is written."""
    pack, templates = copy_examples(tmp_path)
    po = pack / "locales" / "de_DE" / "LC_MESSAGES" / "messages.po"
    lines = po.read_text("utf-8").splitlines()
    number = lines.index('msgstr "Datum"') + 1
    lines[number - 1] = line
    po.write_text("\n".join(lines) + "\n", "utf-8")
    out = tmp_path / "out"
    code, _, err = run(capsys, "render", "welcome", "--pack", str(pack),
                       "--templates", str(templates), "--channel", "pdf",
                       "--data", str(templates / "welcome/samples/02_de_DE.json"),
                       "--no-record", "--out", str(out))
    assert code == 1, err
    assert "Traceback" not in err
    assert f"{po}:{number}: invalid translation catalog: " in err
    assert ("a text is not quoted right" in err) or ("not a line of a translation catalog" in err)
    assert not any(out.glob("*.pdf"))


def test_a_misspelt_pack_key_is_named_at_its_line_with_the_key_meant(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``palete:`` for ``palette:`` in pack.yaml: the error is the unknown key at its line with
    the key meant, not "'palette' is a required property" at the top of the file."""
    pack, templates = copy_examples(tmp_path)
    manifest = pack / "pack.yaml"
    lines = manifest.read_text("utf-8").split("\n")
    number = lines.index("palette:") + 1
    lines[number - 1] = "palete:"
    manifest.write_text("\n".join(lines), "utf-8")
    code, _, err = run(capsys, "render", "welcome", "--pack", str(pack),
                       "--templates", str(templates), "--no-record",
                       "--data", str(templates / WELCOME_SAMPLE), "--out", str(tmp_path / "o"))
    assert code == 1
    assert err == (f"ccm: error: {manifest}:{number}: palete: unknown key "
                   "(did you mean 'palette'?)\n")


@pytest.mark.parametrize(("old", "new", "key", "meant"), [
    ("  confidential: false", "  confidentail: false", "pdf.confidentail", "confidential"),
    ("journey: onboarding", "jorney: onboarding", "jorney", "journey"),
])
def test_a_misspelt_template_key_is_named_at_its_line(
        tmp_path: Path, old: str, new: str, key: str, meant: str) -> None:
    """A typo in template.yaml, nested or at the top, names the key as written, its line
    and the key meant; ``key`` and ``line`` are in the error's context."""
    import ccm

    _, templates = copy_examples(tmp_path)
    manifest = templates / "welcome" / "template.yaml"
    text = manifest.read_text("utf-8")
    number = text.split("\n").index(old) + 1
    manifest.write_text(text.replace(old, new), "utf-8")
    with pytest.raises(ccm.TemplateError) as caught:
        ccm.load_template(templates / "welcome")
    assert str(caught.value) == (f"{manifest}:{number}: {key}: unknown key "
                                 f"(did you mean {meant!r}?)")
    assert caught.value.key == key and caught.value.line == number  # type: ignore[attr-defined]


def test_an_invalid_contract_names_the_line_and_the_schema_path(tmp_path: Path) -> None:
    """A contract that is JSON but not a JSON Schema (``"minLength": "x"``) names its line
    and the schema path of the mistake, not only jsonschema's "'x' is not of type"."""
    import ccm

    _, templates = copy_examples(tmp_path)
    contract = templates / "welcome" / "contract.schema.json"
    text = contract.read_text("utf-8")
    number = next(i for i, row in enumerate(text.split("\n"), 1)
                  if '"product_name": {' in row)
    contract.write_text(text.replace('"minLength": 1, "maxLength": 100',
                                     '"minLength": "x", "maxLength": 100'), "utf-8")
    with pytest.raises(ccm.TemplateError) as caught:
        ccm.load_template(templates / "welcome")
    assert str(caught.value) == (
        f"{contract}:{number}: not a valid JSON Schema: $.properties.product_name.minLength: "
        "'x' is not of type 'integer'")
    assert caught.value.line == number  # type: ignore[attr-defined]


def test_approve_names_the_line_of_a_sample_that_is_not_json(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A sample cut short: approve refuses naming its file and line (as render and lint do)
    and writes no approvals file."""
    pack, templates = copy_examples(tmp_path)
    sample = templates / WELCOME_SAMPLE
    sample.write_text('{"customer":\n', "utf-8")
    code, _, err = run(capsys, "approve", "welcome", "--pack", str(pack),
                       "--templates", str(templates), "--by", "Dana")
    assert code == 1
    assert err.startswith(f"ccm: error: {sample}:2: invalid JSON: Expecting value (column 1); "
                          "not approved: fix or remove the sample")
    assert not (templates.parent / "approvals.json").exists()


def test_proof_of_a_template_without_samples_says_what_to_add(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``ccm proof`` of a template without samples: exit 1, one line naming the pack and
    template (no empty ``//`` parts) and saying to add a sample."""
    import shutil

    pack, templates = copy_examples(tmp_path)
    shutil.rmtree(templates / "welcome" / "samples")
    _use_proof_key(tmp_path, capsys, monkeypatch)
    code, _, err = run(capsys, "proof", "--pack", str(pack), "--templates", str(templates),
                       "--template", "welcome", "--out", str(tmp_path / "proof"))
    assert code == 1
    assert (f"ccm: error: acme/welcome: {templates / 'welcome'}/samples: no sample requests, "
            "so nothing of 'welcome' was rendered; add one (e.g. samples/01_example.json "
            "with a customer and data)\n") in err


@pytest.mark.parametrize("inside", ["pack", "template"])
def test_approve_refuses_an_approvals_file_inside_what_it_approves(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], inside: str) -> None:
    """``--approvals`` in the pack or a template folder would add a file to what is digested,
    so the approval it records could never match: refused (exit 1), nothing written, and the
    line says where to keep it."""
    import json

    import ccm

    pack, templates = copy_examples(tmp_path)
    target = (pack if inside == "pack" else templates / "welcome") / "approvals.json"
    code, _, err = run(capsys, "approve", "welcome", "--pack", str(pack),
                       "--templates", str(templates), "--approvals", str(target), "--by", "Dana")
    assert code == 1
    name = "'acme'" if inside == "pack" else "'welcome'"
    assert err.startswith(f"ccm: error: {target}: the approvals file is inside {inside} {name}")
    assert f"keep it outside, e.g. the default {templates.parent / 'approvals.json'}" in err
    assert not target.exists()
    # What it would have done: the approval written there does not match at once.
    approvals = tmp_path / "approvals.json"
    assert main(["approve", "welcome", "--pack", str(pack), "--templates", str(templates),
                 "--approvals", str(approvals), "--by", "Dana"]) == 0
    target.write_text(approvals.read_text("utf-8"), "utf-8")
    engine = ccm.Engine(pack, templates, record=None, options=ccm.RenderOptions(
        require_approval=True, approvals_file=target))
    request = json.loads((templates / WELCOME_SAMPLE).read_text("utf-8"))
    with pytest.raises(ccm.ApprovalError, match=r"added: .*approvals\.json"):
        engine.render("welcome", request, "email")


@pytest.mark.parametrize("inside", ["pack", "template"])
def test_proof_refuses_an_out_folder_inside_what_it_proofs(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        inside: str) -> None:
    """``--out`` in the pack or a template folder: its own files would change the sources it
    digests (it failed at the end with "sources ... changed during the proof; run it again",
    which fails the same way, and left the folder half-written). Refused before anything is
    made, exit 1."""
    pack, templates = copy_examples(tmp_path)
    out = (pack if inside == "pack" else templates / "welcome") / "proof" / "june"
    _use_proof_key(tmp_path, capsys, monkeypatch)
    code, _, err = run(capsys, "proof", "--pack", str(pack), "--templates", str(templates),
                       "--template", "welcome", "--out", str(out))
    assert code == 1
    kind = "brand pack" if inside == "pack" else "template"
    assert err == (f"ccm: error: {out}: the proof folder is inside the {kind} "
                   f"{out.parent.parent}, whose files the proof digests: its own files would "
                   "change the sources it describes; choose a folder outside the brand packs "
                   "and template folders (e.g. proof/ next to them)\n")
    assert not out.parent.exists()
