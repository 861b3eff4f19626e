"""``ccm doctor``: what this machine lacks for ccm, and the command that fixes each."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass

import click

from ccm.cli._common import ExitCode

__all__ = ["Check", "checks", "doctor"]


@dataclass(frozen=True)
class Check:
    """One requirement: whether it is met, what was found, and the fix when it is not."""

    name: str
    ok: bool
    found: str
    fix: str
    required: bool


def _module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _weasyprint() -> Check:
    try:
        import weasyprint  # noqa: F401 - loading it loads Pango
    except (ImportError, OSError) as exc:
        return Check("WeasyPrint and Pango (PDF)", False, type(exc).__name__,
                     "apt-get install libpango-1.0-0 libpangoft2-1.0-0", True)
    from weasyprint import __version__

    return Check("WeasyPrint and Pango (PDF)", True, f"WeasyPrint {__version__}", "", True)


def _harfbuzz() -> Check:
    try:
        from ccm.channels.pdf import harfbuzz_subset
    except (ImportError, OSError):  # WeasyPrint cannot load: its own check says why
        return Check("HarfBuzz subsetter (fast PDF fonts)", False,
                     "unknown: WeasyPrint cannot load", "apt-get install libharfbuzz-subset0",
                     True)
    ok = harfbuzz_subset()
    return Check("HarfBuzz subsetter (fast PDF fonts)", ok,
                 "libharfbuzz-subset" if ok else "missing: PDFs take ~3x as long (fontTools)",
                 "apt-get install libharfbuzz-subset0", True)


def _fonts() -> Check:
    fc_list = shutil.which("fc-list")
    if fc_list is None:
        return Check("fonts (fontconfig)", False, "fc-list missing",
                     "apt-get install fontconfig fonts-dejavu-core", True)
    listed = subprocess.run([fc_list, ":", "family"], capture_output=True, text=True,
                            timeout=60, check=False).stdout
    families = {line.split(",")[0].strip() for line in listed.splitlines() if line.strip()}
    return Check("fonts (fontconfig)", bool(families), f"{len(families)} families",
                 "apt-get install fonts-dejavu-core", True)


def _chromium() -> Check:
    path = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"),
                             shutil.which("google-chrome")) if p), None)
    return Check("Chromium (preview and browser tests)", path is not None, path or "missing",
                 "apt-get install chromium", False)


def _extra(name: str, modules: tuple[str, ...], extra: str) -> Callable[[], Check]:
    def check() -> Check:
        missing = [m for m in modules if not _module(m)]
        return Check(name, not missing, "missing: " + ", ".join(missing) if missing
                     else "installed", f"pip install 'ccm-engine[{extra}]'", False)
    return check


#: Every check ``ccm doctor`` runs, in the order it prints them.
CHECKS: tuple[Callable[[], Check], ...] = (
    _weasyprint, _harfbuzz, _fonts, _chromium,
    _extra("PostgreSQL driver (record in PostgreSQL)", ("psycopg",), "postgres"),
    _extra("preview extra (ccm preview, ccm proof)",
           ("starlette", "uvicorn", "watchfiles", "pypdfium2"), "preview"),
    _extra("tracking extra (ccm track-serve)", ("starlette", "uvicorn"), "tracking"),
    _extra("cluster extra (ccm batch --scheduler)", ("dask", "distributed", "fsspec"),
           "cluster"),
)


def checks() -> list[Check]:
    """Run every check."""
    return [check() for check in CHECKS]


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
def doctor(as_json: bool) -> None:
    """Check this machine for what ccm needs (HarfBuzz subsetter, fonts, Chromium, drivers).

    Exit 0 when everything required is there (optional parts may be missing),
    1 when something required is missing; each missing part names its fix.
    """
    results = checks()
    if as_json:
        click.echo(json.dumps([asdict(r) for r in results], indent=2))
    else:
        for r in results:
            mark = "ok     " if r.ok else ("MISSING" if r.required else "absent ")
            line = f"{mark} {r.name}: {r.found}"
            if not r.ok:
                line += f"\n        fix: {r.fix}"
            click.echo(line)
    if any(r.required and not r.ok for r in results):
        click.echo("ccm: error: something ccm needs is missing; run the fix shown above",
                   err=True)
        raise SystemExit(int(ExitCode.BAD_INPUT))
