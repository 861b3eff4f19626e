"""What folding the pack's constants into the email layout would save: a probe (issue 12).

    python benchmarks/specialize_probe.py     # ~20 s

Issue 12 suggests precompiling each template and pack "once into what varies
per message". Most of the `acme` email layout's expressions do not vary per
message: ``{{ p.primary }}`` (the palette), ``{{ start }}``/``{{ end }}``
(from the text direction), ``{{ font }}``, ``{{ lang }}``, ``{{ dir }}``. Each
still costs a sandboxed attribute lookup, an escape and a chunk of output per
message. This probe writes what a compiler folding them would produce, by
hand: a copy of the pack whose layout has those expressions replaced by their
values for ``en_GB``, and renders the same ``en_GB`` reminders through
``Engine._render`` (sandboxed Jinja with the context, what an email's render
starts with) with both packs, checking that every rendered source is the same
text. It prints the CPU µs per email of each, interleaved, best of three.

ccm does not fold anything yet: the figure says what the compiler would be
worth before it is written. For people: no target, no assertion.
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from _common import PACK, TEMPLATES, load_average, requests_for
from markupsafe import escape

NOON = datetime(2026, 3, 2, 12, tzinfo=UTC)
FONT = "'DejaVu Sans', Verdana, Geneva, Arial, sans-serif"


def folded_pack(folder: Path) -> Path:
    """A copy of the acme pack with the layout's per-pack constants written in (en_GB, ltr)."""
    pack = folder / "acme"
    shutil.copytree(PACK, pack)
    palette = yaml.safe_load((pack / "pack.yaml").read_text("utf-8"))["palette"]
    layout = pack / "layouts" / "email.mjml.j2"
    text = re.sub(r"\{\{ p\.(\w+) \}\}", lambda m: str(palette[m.group(1)]),
                  layout.read_text("utf-8"))
    for expression, value in (("start", "left"), ("end", "right"), ("lang", "en"),
                              ("dir", "ltr"), ("font", str(escape(FONT)))):  # autoescaped
        text = text.replace("{{ " + expression + " }}", value)
    layout.write_text(text, "utf-8")
    return pack


def _setup(pack: Path, n: int) -> tuple[Any, Any, list[tuple[Any, Any]]]:
    from ccm.message import Message
    from ccm.render.engine import Engine
    from ccm.render.template import validate_request

    engine = Engine(pack, TEMPLATES, record=None, clock=lambda: NOON)
    tpl = engine.template("payment_reminder")
    pairs = []
    for raw in requests_for("payment_reminder", n, prefix="F"):
        req = validate_request(raw)
        if engine.pack.resolve_locale(req.customer.get("locale")) != "en_GB":
            continue
        pairs.append((req, Message(
            message_id=f"{len(pairs):032x}", customer_id=req.customer_id, template=tpl.id,
            template_version=tpl.version, pack="acme", pack_version="1", channel="email",
            locale="en_GB", message_type=tpl.message_type, journey=tpl.journey,
            content=b"")))
    return engine, tpl, pairs


def _render(setup: tuple[Any, Any, list[tuple[Any, Any]]]) -> list[str]:
    engine, tpl, pairs = setup
    deadline = time.monotonic() + 3600
    return [engine._render(tpl, req, "email", message, deadline,
                           blocks=("subject", "preheader")).text for req, message in pairs]


def main() -> int:
    folder = Path(tempfile.mkdtemp(prefix="ccm-probe-fold-"))
    try:
        runs = {"as written": _setup(PACK, 3000), "constants folded": _setup(folded_pack(folder),
                                                                              3000)}
        texts = {name: _render(setup) for name, setup in runs.items()}
        if texts["as written"] != texts["constants folded"]:
            print("the folded layout renders other text: the probe is wrong", file=sys.stderr)
            return 1
        best: dict[str, float] = {}
        for _ in range(3):
            for name, setup in runs.items():
                start = time.process_time()
                _render(setup)
                spent = (time.process_time() - start) / len(setup[2]) * 1e6
                best[name] = min(spent, best.get(name, spent))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    count = len(runs["as written"][2])
    print(f"Engine._render, email, en_GB, {count} reminders, CPU µs per email "
          f"(best of 3, load {load_average()}):")
    for name, spent in best.items():
        print(f"  {name:18s} {spent:7.1f}")
    print(f"  saved             {best['as written'] - best['constants folded']:7.1f} "
          f"({1 - best['constants folded'] / best['as written']:.0%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
