"""Brand packs load, validate, and fail naming the file and the key."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

import ccm
from ccm.errors import PackError
from tests.examples_helpers import PACKS, copy_examples


def edit(pack_dir: Path, change) -> None:  # type: ignore[no-untyped-def]
    manifest = pack_dir / "pack.yaml"
    raw = yaml.safe_load(manifest.read_text())
    change(raw)
    manifest.write_text(yaml.safe_dump(raw, allow_unicode=True))


@pytest.mark.parametrize("pack", ["acme", "globex"])
def test_example_packs_load(pack: str) -> None:
    """Both example packs validate against the published schema and load."""
    loaded = ccm.load_pack(PACKS / pack)
    assert loaded.id == pack and loaded.default_locale in loaded.locales
    assert len(loaded.sources_sha256) == 64
    schema = json.loads((Path(ccm.__file__).parent / "schemas" / "pack.schema.json").read_text())
    manifest = yaml.safe_load((PACKS / pack / "pack.yaml").read_text())
    jsonschema.Draft202012Validator(schema).validate(manifest)


def test_packs_look_different() -> None:
    """acme and globex have different palettes, fonts, locales and password rules."""
    acme, globex = ccm.load_pack(PACKS / "acme"), ccm.load_pack(PACKS / "globex")
    assert acme.palette["primary"] != globex.palette["primary"]
    assert set(acme.locales) == {"en_GB", "de_DE"} and set(globex.locales) == {"en_US", "ar"}
    assert acme.is_rtl("ar") and not acme.is_rtl("de_DE")


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (lambda raw: raw.pop("name"), "(top level)"),
        (lambda raw: raw["palette"].__setitem__("primary", "navy"), "palette.primary"),
        (lambda raw: raw.__setitem__("default_locale", "fr_FR"), "default_locale"),
        (lambda raw: raw["legal"].pop(raw["default_locale"]), "legal"),
        (lambda raw: raw.__setitem__("logo", "assets/missing.svg"), "logo"),
        (lambda raw: raw.__setitem__("logo", "../../etc/passwd"), "logo"),
        (lambda raw: raw.__setitem__("colour", "#000000"), "colour"),
    ],
)
def test_bad_pack_names_file_and_key(tmp_path: Path, change, key: str) -> None:  # type: ignore[no-untyped-def]
    """Each kind of mistake raises PackError naming pack.yaml and the key."""
    pack_dir, _ = copy_examples(tmp_path)
    edit(pack_dir, change)
    with pytest.raises(PackError) as info:
        ccm.load_pack(pack_dir)
    assert "pack.yaml" in str(info.value)
    assert info.value.key == key  # type: ignore[attr-defined]
    assert isinstance(info.value, ccm.ConfigError) and not isinstance(info.value, ccm.MessageError)


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    """Broken YAML names pack.yaml and the line."""
    pack_dir, _ = copy_examples(tmp_path)
    (pack_dir / "pack.yaml").write_text("id: acme\nname: [oops\n")
    with pytest.raises(PackError, match=r"pack\.yaml:\d+"):
        ccm.load_pack(pack_dir)


def test_missing_layout_is_named(tmp_path: Path) -> None:
    """A pack without its email layout names the missing file."""
    pack_dir, _ = copy_examples(tmp_path)
    (pack_dir / "layouts" / "email.mjml.j2").unlink()
    with pytest.raises(PackError, match=r"email\.mjml\.j2"):
        ccm.load_pack(pack_dir)


def test_pack_yaml_is_loaded_safely(tmp_path: Path) -> None:
    """Python object tags in pack.yaml are refused, not constructed."""
    pack_dir, _ = copy_examples(tmp_path)
    text = (pack_dir / "pack.yaml").read_text()
    exploit = "\nexploit: !!python/object/apply:os.system ['true']\n"
    (pack_dir / "pack.yaml").write_text(text + exploit)
    with pytest.raises(PackError):
        ccm.load_pack(pack_dir)


def _alias_bomb(levels: int) -> str:
    """A flow list defining &l0 (nine strings), then &l1 (nine *l0), ... up to &l{levels-1}."""
    lists = ["&l0 [" + ", ".join(["lol"] * 9) + "]"]
    lists += [f"&l{n} [" + ", ".join([f"*l{n - 1}"] * 9) + "]" for n in range(1, levels)]
    return "[" + ", ".join(lists) + "]"


def _set_acronyms(pack_dir: Path, value: str) -> None:
    manifest = pack_dir / "pack.yaml"
    text = manifest.read_text("utf-8")
    old = "  acronyms: [EURIBOR, SONIA, ISA, BaFin, IBAN, BIC, PIN]"
    assert old in text
    manifest.write_text(text.replace(old, f"  acronyms: {value}"), "utf-8")


def test_yaml_alias_bomb_is_a_short_pack_error(tmp_path: Path) -> None:
    """Aliases expanding to 600,000 strings (a 1 KB "billion laughs") are refused in one line."""
    pack_dir, _ = copy_examples(tmp_path)
    _set_acronyms(pack_dir, _alias_bomb(7))
    with pytest.raises(PackError) as info:
        ccm.load_pack(pack_dir)
    message = str(info.value)
    assert message == (f"{pack_dir / 'pack.yaml'}: invalid YAML: its aliases (*name) expand to "
                       "more than 100,000 values; write the values out or use fewer aliases")


def test_yaml_alias_to_itself_is_a_pack_error(tmp_path: Path) -> None:
    """A list that contains itself (``&a [*a]``) is refused rather than walked forever."""
    pack_dir, _ = copy_examples(tmp_path)
    _set_acronyms(pack_dir, "&a [ISA, *a]")
    with pytest.raises(PackError, match=r"pack\.yaml: invalid YAML: an alias \(\*name\) refers "
                                        r"to a value that contains it$"):
        ccm.load_pack(pack_dir)


def test_yaml_nested_too_deeply_is_a_pack_error(tmp_path: Path) -> None:
    """Lists nested 5,000 deep are a PackError, not a RecursionError out of PyYAML."""
    pack_dir, _ = copy_examples(tmp_path)
    _set_acronyms(pack_dir, "[" * 5000 + "]" * 5000)
    with pytest.raises(PackError, match=r"pack\.yaml: invalid YAML: values are nested too deeply"):
        ccm.load_pack(pack_dir)


def test_a_few_aliases_still_load(tmp_path: Path) -> None:
    """Anchors and aliases within the budget are ordinary YAML: the pack loads."""
    pack_dir, _ = copy_examples(tmp_path)
    manifest = pack_dir / "pack.yaml"
    text = manifest.read_text("utf-8")
    text = text.replace("  allowed_phrases: [interest-free, zinsfrei]",
                        "  allowed_phrases: &phrases [interest-free, zinsfrei]")
    manifest.write_text(text.replace("  acronyms: [EURIBOR, SONIA, ISA, BaFin, IBAN, BIC, PIN]",
                                     "  acronyms: *phrases"), "utf-8")
    assert ccm.load_pack(pack_dir).tone["acronyms"] == ["interest-free", "zinsfrei"]


def test_schema_error_does_not_quote_a_long_value_whole(tmp_path: Path) -> None:
    """A wrong value is quoted in the message only up to a few hundred characters."""
    pack_dir, _ = copy_examples(tmp_path)
    _set_acronyms(pack_dir, "{" + ", ".join(f"k{n}: v{n}" for n in range(20_000)) + "}")
    with pytest.raises(PackError) as info:
        ccm.load_pack(pack_dir)
    message = str(info.value)
    assert info.value.key == "tone.acronyms"  # type: ignore[attr-defined]
    assert len(message) < len(str(pack_dir)) + 400 and message.endswith(" [...]")


def test_a_pack_check_names_the_line_of_its_key(tmp_path: Path) -> None:
    """A mistake only the loader sees (a font file missing, a locale without legal text)
    names pack.yaml's line of the key, as a schema mistake does; ``line`` is in the context."""
    pack_dir, _ = copy_examples(tmp_path)
    (pack_dir / "assets" / "fonts" / "DejaVuSans-Bold.ttf").unlink()
    lines = (pack_dir / "pack.yaml").read_text("utf-8").split("\n")
    number = next(i for i, row in enumerate(lines, 1)
                  if row.strip() == "bold: assets/fonts/DejaVuSans-Bold.ttf")
    with pytest.raises(PackError) as info:
        ccm.load_pack(pack_dir)
    assert str(info.value) == (f"{pack_dir / 'pack.yaml'}:{number}: fonts.body.files.bold: "
                               "file 'assets/fonts/DejaVuSans-Bold.ttf' does not exist")
    assert info.value.line == number  # type: ignore[attr-defined]
