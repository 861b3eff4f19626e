"""Proof packs: every render, lint findings, a signed manifest, and its verification."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pypdf import PdfReader

from ccm.cli import main
from ccm.errors import ConfigError, KeyConfigError
from ccm.review.proof import (
    KEY_FILE_ENV,
    ProofResult,
    build_proof,
    generate_key,
    load_private_key,
    verify_proof,
)
from tests.examples_helpers import PACKS, TEMPLATES

TEMPLATE = "monthly_statement"
#: A template without a PDF, for tests that only need a proof to exist.
LIGHT = "payment_reminder"


@dataclass(frozen=True)
class FakeFinding:
    file: str
    line: int | None
    rule: str
    severity: str
    message: str


def fake_lint(packs: Sequence[Path], templates: Path) -> list[FakeFinding]:
    """A stand-in linter: one warning per pack (the real one has its own tests)."""
    return [FakeFinding(str(p / "pack.yaml"), 3, "sentence-length", "warning",
                        "sentence too long") for p in packs]


def small_project(base: Path) -> tuple[Path, Path]:
    """The acme pack and two templates with one sample each: quick to proof."""
    pack = base / "brand_packs" / "acme"
    shutil.copytree(PACKS / "acme", pack)
    templates = base / "templates"
    for name in (TEMPLATE, LIGHT):
        shutil.copytree(TEMPLATES / name, templates / name)
        for extra in sorted((templates / name / "samples").glob("*.json"))[1:]:
            extra.unlink()
    return pack, templates


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[ProofResult, Ed25519PrivateKey, Path]:
    """One proof of the small project, shared (rendering is the slow part)."""
    base = tmp_path_factory.mktemp("proof")
    pack, templates = small_project(base)
    key = Ed25519PrivateKey.generate()
    result = build_proof([pack], templates, base / "out", key=key, linter=fake_lint,
                         templates=[TEMPLATE])
    return result, key, base


@pytest.fixture()
def proof_copy(made: tuple[ProofResult, Ed25519PrivateKey, Path], tmp_path: Path) -> Path:
    """A copy of the shared proof folder that a test may tamper with."""
    target = tmp_path / "proof"
    shutil.copytree(made[0].out_dir, target)
    return target


def test_proof_renders_every_locale_and_channel(
    made: tuple[ProofResult, Ed25519PrivateKey, Path],
) -> None:
    """Each locale of the pack × the sample × each channel is one generated row."""
    result = made[0]
    combos = {(r.locale, r.channel) for r in result.rows}
    assert combos == {(loc, ch) for loc in ("en_GB", "de_DE") for ch in ("pdf", "email", "sms")}
    assert all(r.status == "generated" for r in result.rows), result.failed


def test_manifest_lists_sources_and_outputs(
    made: tuple[ProofResult, Ed25519PrivateKey, Path],
) -> None:
    """The manifest holds a SHA-256 for every source file and every file written."""
    result = made[0]
    manifest = json.loads((result.out_dir / "manifest.json").read_text("utf-8"))
    pack_files = manifest["sources"]["packs"]["acme"]["files"]
    assert "layouts/pdf.html.j2" in pack_files and "pack.yaml" in pack_files
    assert "sms.txt.j2" in manifest["sources"]["templates"][TEMPLATE]["files"]
    written = {p.relative_to(result.out_dir).as_posix() for p in result.out_dir.rglob("*")
               if p.is_file()} - {"manifest.json", "manifest.sig", "manifest.pub"}
    assert set(manifest["outputs"]) == written
    assert {"index.html", "findings.json"} <= written
    assert manifest["lint"] == {"errors": 0, "warnings": 1}


def test_untouched_proof_verifies(made: tuple[ProofResult, Ed25519PrivateKey, Path]) -> None:
    """A proof verifies against the signer's public key."""
    result, key, _ = made
    verdict = verify_proof(result.out_dir, key.public_key())
    assert verdict.ok, verdict.describe()


def test_tampered_output_breaks_verification(
    proof_copy: Path, made: tuple[ProofResult, Ed25519PrivateKey, Path],
) -> None:
    """Changing one byte of an output makes verification fail and names the file."""
    sms = next(proof_copy.rglob("sms.txt"))
    sms.write_bytes(sms.read_bytes().replace(b"ready", b"READY"))
    verdict = verify_proof(proof_copy, made[1].public_key())
    assert not verdict.ok
    assert verdict.signature_ok
    assert verdict.changed == [sms.relative_to(proof_copy).as_posix()]


def test_missing_and_added_files_break_verification(
    proof_copy: Path, made: tuple[ProofResult, Ed25519PrivateKey, Path],
) -> None:
    """A deleted output and a slipped-in file are both reported."""
    next(proof_copy.rglob("email.eml")).unlink()
    (proof_copy / "extra.pdf").write_bytes(b"%PDF-1.7")
    verdict = verify_proof(proof_copy, made[1].public_key())
    assert not verdict.ok
    assert len(verdict.missing) == 1 and verdict.missing[0].endswith("email.eml")
    assert verdict.added == ["extra.pdf"]


def test_edited_manifest_breaks_the_signature(
    proof_copy: Path, made: tuple[ProofResult, Ed25519PrivateKey, Path],
) -> None:
    """Rewriting the manifest to match a tampered output invalidates the signature."""
    sms = next(proof_copy.rglob("sms.txt"))
    sms.write_bytes(b"tampered")
    manifest = json.loads((proof_copy / "manifest.json").read_text("utf-8"))
    manifest["outputs"][sms.relative_to(proof_copy).as_posix()] = \
        hashlib.sha256(b"tampered").hexdigest()
    (proof_copy / "manifest.json").write_text(json.dumps(manifest), "utf-8")
    verdict = verify_proof(proof_copy, made[1].public_key())
    assert not verdict.signature_ok and not verdict.ok
    assert verdict.changed == []


def test_other_public_key_fails(proof_copy: Path) -> None:
    """A proof does not verify under a key other than the signer's."""
    assert not verify_proof(proof_copy, Ed25519PrivateKey.generate().public_key()).signature_ok


def test_delivery_pdf_is_encrypted_and_review_copy_is_not(
    made: tuple[ProofResult, Ed25519PrivateKey, Path],
) -> None:
    """The confidential statement is kept as delivered (AES-256) next to a readable copy."""
    result = made[0]
    row = next(r for r in result.rows if r.channel == "pdf" and r.locale == "en_GB")
    delivery = PdfReader(BytesIO((result.out_dir / row.files["delivery"]).read_bytes()))
    review = PdfReader(BytesIO((result.out_dir / row.files["review"]).read_bytes()))
    assert delivery.is_encrypted and not review.is_encrypted
    assert len(review.pages) == row.details["pages"] >= 1
    assert (result.out_dir / row.files["thumbnail"]).read_bytes().startswith(b"\x89PNG")


def test_index_links_every_output_that_exists(
    made: tuple[ProofResult, Ed25519PrivateKey, Path],
) -> None:
    """index.html links thumbnails, emails and shows SMS text and the findings."""
    result = made[0]
    page = (result.out_dir / "index.html").read_text("utf-8")
    links = re.findall(r"(?:href|src)='([^'#][^']*)'", page)
    assert links and all((result.out_dir / link).is_file() for link in links)
    anchors = re.findall(r"href='#([^']+)'", page)
    assert anchors and all(f"id='{a}'" in page for a in anchors)
    assert "sentence-length" in page
    assert "document.png" in page and "email.html" in page
    assert "http://" not in page and "https://" not in page


def test_rerun_replaces_an_earlier_proof(
    made: tuple[ProofResult, Ed25519PrivateKey, Path], proof_copy: Path,
) -> None:
    """Proofing into an earlier proof's folder replaces it; a foreign folder is refused."""
    _, key, base = made
    (proof_copy / "stray.txt").write_text("not mine", "utf-8")
    pack, templates = base / "brand_packs" / "acme", base / "templates"
    with pytest.raises(ConfigError, match="not part of the earlier proof"):
        build_proof([pack], templates, proof_copy, key=key, linter=fake_lint,
                    templates=[TEMPLATE], thumbnails=False)
    (proof_copy / "stray.txt").unlink()
    again = build_proof([pack], templates, proof_copy, key=key, linter=fake_lint,
                        templates=[LIGHT])
    assert {r.template for r in again.rows} == {LIGHT}
    assert verify_proof(again.out_dir, key.public_key()).ok


def test_generate_key_is_private_and_never_overwrites(tmp_path: Path) -> None:
    """--generate-key writes a 0600 PEM key and its .pub, and refuses to overwrite."""
    path = tmp_path / "keys" / "proof.pem"
    public = generate_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_private_key(path).public_key().public_bytes_raw() == public.public_bytes_raw()
    assert (tmp_path / "keys" / "proof.pem.pub").read_bytes().startswith(b"-----BEGIN PUBLIC")
    with pytest.raises(KeyConfigError, match="already exists"):
        generate_key(path)


def test_key_must_be_private_and_outside_the_sources(tmp_path: Path) -> None:
    """A group-readable key, a key inside the sources, and no key at all are refused."""
    path = tmp_path / "repo" / "proof.pem"
    generate_key(path)
    with pytest.raises(KeyConfigError, match="inside"):
        load_private_key(path, forbidden=[tmp_path / "repo"])
    path.chmod(0o640)
    with pytest.raises(KeyConfigError, match="chmod 600"):
        load_private_key(path)
    with pytest.raises(KeyConfigError, match="--generate-key"):
        load_private_key(None)


def test_proof_and_verify_commands(
    made: tuple[ProofResult, Ed25519PrivateKey, Path], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """`ccm proof` signs with $CCM_PROOF_KEY_FILE; `ccm proof --verify` exits 1 once tampered."""
    import ccm.review.proof

    real = ccm.review.proof.build_proof

    def quick(*args: Any, **kwargs: Any) -> ProofResult:
        return real(*args, **{**kwargs, "linter": fake_lint, "thumbnails": False})

    monkeypatch.setattr(ccm.review.proof, "build_proof", quick)
    _, _, base = made
    key_file = tmp_path / "keys" / "proof.pem"
    assert main(["proof", "--generate-key", str(key_file)]) == 0
    monkeypatch.setenv(KEY_FILE_ENV, str(key_file))
    out = tmp_path / "out"
    code = main(["proof", "--pack", str(base / "brand_packs" / "acme"),
                 "--templates", str(base / "templates"), "--template", LIGHT,
                 "--out", str(out)])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "proof written to" in printed.out and "0 failed" in printed.out
    pub = f"{key_file}.pub"
    assert main(["proof", "--verify", str(out), "--public-key", pub]) == 0
    assert "proof intact" in capsys.readouterr().out
    (out / "index.html").write_text("<p>all good</p>", "utf-8")
    assert main(["proof", "--verify", str(out)]) == 1
    assert "changed: index.html" in capsys.readouterr().out


def test_proof_without_key_fails_with_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Without --key or $CCM_PROOF_KEY_FILE the command fails and says how to make a key."""
    monkeypatch.delenv(KEY_FILE_ENV, raising=False)
    code = main(["proof", "--pack", str(PACKS / "acme"), "--templates", str(TEMPLATES),
                 "--out", str(tmp_path / "out")])
    assert code == 1
    assert "ccm proof --generate-key FILE" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "out")


def test_proof_carries_the_real_lint_findings(tmp_path: Path) -> None:
    """By default the proof lints with ccm.review.lint: findings.json, the manifest and the index
    show a banned term at its template line."""
    pack = tmp_path / "brand_packs" / "acme"
    shutil.copytree(PACKS / "acme", pack)
    manifest_file = pack / "pack.yaml"  # a birth-date password: one warning
    manifest_file.write_text(manifest_file.read_text("utf-8").replace(
        "    field: document_code\n", "    field: date_of_birth\n    format: DDMMYYYY\n", 1),
        "utf-8")
    shutil.copytree(TEMPLATES / LIGHT, tmp_path / "templates" / LIGHT)
    for extra in sorted((tmp_path / "templates" / LIGHT / "samples").glob("*.json"))[1:]:
        extra.unlink()
    source = tmp_path / "templates" / LIGHT / "email.mjml.j2"
    text = source.read_text("utf-8").replace(
        "{% block content %}\n", "{% block content %}\n<mj-text>Please act now.</mj-text>\n", 1)
    source.write_text(text, "utf-8")
    line = text.split("\n").index("<mj-text>Please act now.</mj-text>") + 1
    key = Ed25519PrivateKey.generate()
    result = build_proof([pack], tmp_path / "templates", tmp_path / "out", key=key,
                         thumbnails=False)
    findings = json.loads((result.out_dir / "findings.json").read_text("utf-8"))
    banned = [f for f in findings if f["rule"] == "banned-term"]
    assert [(f["file"], f["line"], f["severity"]) for f in banned] == [
        (f"templates/{LIGHT}/email.mjml.j2", line, "error")]
    manifest = json.loads((result.out_dir / "manifest.json").read_text("utf-8"))
    # and the text is not wrapped for translation; the weak password rule is the warning
    assert manifest["lint"] == {"errors": 2, "warnings": 1}
    page = (result.out_dir / "index.html").read_text("utf-8")
    assert f"templates/{LIGHT}/email.mjml.j2:{line}" in page and "banned-term" in page
    assert verify_proof(result.out_dir, key.public_key()).ok


@pytest.mark.parametrize(("args", "code", "said"), [
    (["--template", "nope"], 3, "unknown template 'nope'"),
    (["--pack", "no-such-pack"], 1, "no pack.yaml"),
])
def test_a_proof_that_cannot_start_leaves_no_folder(
        args: list[str], code: int, said: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown --template or a --pack that is not a pack fails in one line, and the --out
    folder the command made for it is gone again (an empty one was left behind)."""
    key_file = tmp_path / "keys" / "proof.pem"
    generate_key(key_file)
    monkeypatch.setenv(KEY_FILE_ENV, str(key_file))
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    base = ["proof", "--pack", str(PACKS / "acme"), "--templates", str(TEMPLATES),
            "--out", str(out)]
    if args[0] == "--pack":
        base[2] = str(tmp_path / args[1])
        args = []
    assert main([*base, *args]) == code
    assert said in capsys.readouterr().err
    assert not out.exists()


def test_verifying_a_folder_that_does_not_exist_says_so(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`ccm proof --verify TYPO` exits 3 naming the folder; it said "signature: INVALID for
    this public key" (exit 1), as if the proof had been tampered with."""
    key_file = tmp_path / "proof.pem"
    generate_key(key_file)
    missing = tmp_path / "no-such-proof"
    assert main(["proof", "--verify", str(missing), "--key", str(key_file)]) == 3
    captured = capsys.readouterr()
    assert captured.err.strip() == f"ccm: error: --verify {missing}: no such folder; " \
        "give the proof's folder"
    assert "INVALID" not in captured.out
