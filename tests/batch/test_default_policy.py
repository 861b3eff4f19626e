"""A pack without a ``policy:`` section has the default policy in a batch too."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
import yaml

from ccm.batch.run import run_batch

from .conftest import DAYTIME, PACK, TEMPLATES


@pytest.mark.parametrize("channels", [None, ["sms"]], ids=["every-channel", "sms-fast-path"])
def test_marketing_without_consent_is_suppressed_by_the_default_policy(
        tmp_path: Path, record_url: str, channels: list[str] | None) -> None:
    """Marketing needs consent without a policy section (as Engine.render decides), on the
    full path and on the fast SMS path: suppressed with consent:<channel>, no file."""
    pack = tmp_path / "pack"
    shutil.copytree(PACK, pack)
    raw = yaml.safe_load((pack / "pack.yaml").read_text("utf-8"))
    del raw["policy"]
    (pack / "pack.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True), "utf-8")
    sample = TEMPLATES / "product_offer" / "samples" / "01_en_GB_interest.json"
    request = json.loads(sample.read_text("utf-8"))
    rows = []
    for i in range(3):
        row = copy.deepcopy(request)
        row["customer"]["id"] = f"C{i}"
        row["customer"]["consents"] = {}
        rows.append(row)
    out = tmp_path / "out"
    summary = run_batch("product_offer", rows, pack=pack, templates=TEMPLATES, out=out,
                        record_url=record_url, run_id="r1", workers=0, channels=channels,
                        now=DAYTIME)
    expected = {f"consent:{c}": 3 for c in channels or ["email", "sms"]}
    assert (summary.generated, summary.suppressed, summary.failed) == (0, expected, 0)
    assert not list(out.glob("*.sms.txt")) and not list(out.glob("*.eml"))
