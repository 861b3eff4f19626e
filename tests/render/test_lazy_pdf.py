"""WeasyPrint and Pango load with the first PDF: SMS, email and the CLI's start go without.

Loading the PDF channel costs about half a second of start-up (Pango through
cffi); SMS, email and ``ccm --help`` never pay it. Checked in child interpreters,
whose modules are their own. (A machine where it cannot load at all:
tests/test_without_pango.py.)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ..examples_helpers import PACKS, TEMPLATES

_CHILD = """
import json, sys
from datetime import UTC, datetime
import ccm, ccm.cli, ccm.batch

try:
    ccm.cli.main(["--help"])
except SystemExit:
    pass
seen = {"start": "weasyprint" in sys.modules}
engine = ccm.Engine(sys.argv[1], sys.argv[2], record=None,
                    clock=lambda: datetime(2026, 6, 1, 12, tzinfo=UTC))
request = json.loads(open(sys.argv[3]).read())
texts = [engine.render("payment_reminder", request, channel) for channel in ("sms", "email")]
seen["text"] = "weasyprint" in sys.modules
statement = json.loads(open(sys.argv[4]).read())
pdf = engine.render("monthly_statement", statement, "pdf")
seen["pdf"] = "weasyprint" in sys.modules
seen["pdf_head"] = pdf.content[:5].decode()
seen["sms_text"] = bool(texts[0].content) and bool(texts[1].content)
print(json.dumps(seen))
"""


def _sample(template: str) -> Path:
    return sorted((TEMPLATES / template / "samples").glob("*.json"))[0]


def test_weasyprint_loads_with_the_first_pdf_only(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(PACKS / "acme"), str(TEMPLATES),
         str(_sample("payment_reminder")), str(_sample("monthly_statement"))],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == {"start": False, "text": False, "pdf": True, "pdf_head": "%PDF-",
                    "sms_text": True}
