"""``ccm record ...``: the record's commands (the main CLI mounts :data:`record`).

Every subcommand takes ``--record URL`` (default ``$CCM_RECORD_URL``, else
``sqlite:///ccm-record.db``; a plain path means a SQLite file). Archived
content is read with the master key from ``CCM_MASTER_KEY`` /
``CCM_MASTER_KEY_FILE``.

Commands that only read open the record read-only and never create one.
Files they write (export, checkpoint, features, timeline --html, show
--content/--archival) go to a temporary name in the target folder and are
renamed when complete; the folder must exist. Errors are one line on stderr
with the exit codes of :class:`ccm.cli._common.ExitCode` (docs/cli.md).
"""

from __future__ import annotations

import errno
import io
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import click

from ccm._util import atomic_write, write_csv
from ccm.cli._common import (
    ExistingFile,
    ExitCode,
    Fail,
    echo,
    exit_code_for,
    json_text,
    lock_timeout,
    shown,
)
from ccm.errors import (
    CCMError,
    RecordError,
)
from ccm.record import checkpoint as checkpoints
from ccm.record.entries import personal_data_in
from ccm.record.keys import ENV_KEY, ENV_KEY_FILE, MasterKey
from ccm.record.store import EVENT_KINDS, Record
from ccm.record.views import FEATURE_COLUMNS

__all__ = ["record"]

DEFAULT_URL = "sqlite:///ccm-record.db"
F = TypeVar("F", bound=Callable[..., Any])




def _url(value: str | None) -> str:
    return value or os.environ.get("CCM_RECORD_URL") or DEFAULT_URL


def record_option(func: F) -> F:
    """The ``--record URL`` option every subcommand takes."""
    return click.option(
        "--record", "record_url", default=None, metavar="URL",
        help=f"Record URL [default: $CCM_RECORD_URL or {DEFAULT_URL}].",
    )(func)


def _master_key() -> MasterKey | None:
    if os.environ.get(ENV_KEY) or os.environ.get(ENV_KEY_FILE):
        return MasterKey.from_env()
    return None


def fail(exc: CCMError) -> Fail:
    """``exc`` as the one-line CLI error with its exit code."""
    return Fail(str(exc), exit_code_for(exc))


@contextmanager
def _opened(url: str | None, *, with_key: bool = False, write: bool = False,
            erase_wait: float = 30.0) -> Iterator[Record]:
    """Open the record (read-only unless ``write``); ccm errors become one line and a code."""
    try:
        rec = Record(_url(url), master_key=_master_key() if with_key else None, create=False,
                     read_only=not write, erase_wait=erase_wait, lock_timeout=lock_timeout())
    except CCMError as exc:
        raise fail(exc) from exc
    try:
        yield rec
    except CCMError as exc:
        raise fail(exc) from exc
    except _GARBAGE as exc:
        # A value of the wrong type in the record (text where a time belongs, a blob in a
        # text column): told apart from a bug in ccm by verify, which reads every stored
        # value as untrusted and never raises on one.
        raise _changed_outside(rec, exc) from exc
    finally:
        rec.close()


#: What reading a value of the wrong type out of a changed record raises.
_GARBAGE = (ValueError, TypeError, KeyError, AttributeError, IndexError, OverflowError)


def _changed_outside(rec: Record, exc: Exception) -> BaseException:
    """``exc`` as a one-line error when verify finds the record changed outside ccm;
    else ``exc`` itself (a bug in ccm: the boundary reports it)."""
    try:
        found = rec.verify()
    except Exception:  # the verify's own failure does not hide the first one
        return exc
    if found.ok:
        return exc
    return fail(RecordError(
        f"the record at {rec.where} holds values changed outside ccm that this command "
        f"cannot read; `ccm record verify --record URL` names the {found.problem_count} "
        "problem(s), and a backup or a checkpoint tells what they were"))


def write_output(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary name in its folder, then rename.

    The folder must exist (a typo is not silently created); disk full,
    read-only file systems and permissions are one-line errors with exit
    code IO_ERROR, and nothing partial is left behind.
    """
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise Fail(f"cannot write {path}: the folder {folder} does not exist (create it first)",
                   ExitCode.NOT_FOUND)
    if path.is_dir():
        raise Fail(f"cannot write {path}: it is a folder", ExitCode.BAD_INPUT)
    try:
        return atomic_write(path, data)
    except OSError as exc:
        raise Fail(f"cannot write {path}: {_why(exc)}; nothing was written",
                   ExitCode.IO_ERROR) from exc


def _why(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "no space left on the device (disk full)"
    if exc.errno == errno.EFBIG:
        return "the file is larger than this process may write (file size limit)"
    if exc.errno == errno.EROFS:
        return "the file system is read-only"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    return exc.strerror or type(exc).__name__


class _RecordGroup(click.Group):
    """The ``record`` group; ``report`` (:mod:`ccm.cli.report`) and ``unsuppress``
    (:mod:`ccm.cli.events`) are loaded when asked for."""

    _lazy: ClassVar[dict[str, tuple[str, str]]] = {
        "report": ("ccm.cli.report", "report_cmd"),
        "unsuppress": ("ccm.cli.events", "unsuppress_cmd"),
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = set(super().list_commands(ctx))
        names.update(name for name in self._lazy if self._load(name) is not None)
        return sorted(names)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, cmd_name) or self._load(cmd_name)

    def _load(self, name: str) -> click.Command | None:
        if name not in self._lazy:
            return None
        module, attr = self._lazy[name]
        try:
            mod = __import__(module, fromlist=[attr])
        except ImportError:
            return None
        command = getattr(mod, attr, None)
        return command if isinstance(command, click.Command) else None


@click.group("record", cls=_RecordGroup)
def record() -> None:
    """The communication record: timelines, verify, checkpoints, export and erasure."""


@record.command("timeline")
@click.argument("customer")
@record_option
@click.option("--json", "as_json", is_flag=True, help="Print the timeline as JSON.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Write the timeline as an HTML page.")
@click.option("--pack", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="Brand pack whose look the HTML page takes.")
def timeline_cmd(customer: str, record_url: str | None, as_json: bool,
                 html_path: Path | None, pack: Path | None) -> None:
    """Every message sent to CUSTOMER, across channels, in time order."""
    with _opened(record_url) as rec:
        timeline = rec.timeline(customer)
        if not timeline.messages and not timeline.erasures:
            raise Fail(f"no messages for customer '{shown(customer)}' in the record at "
                       f"{rec.where}: check the customer id (the customer.id of the requests)",
                       ExitCode.NOT_FOUND)
        doc = timeline.to_dict()
        if html_path is not None:
            _write_html(doc, html_path, pack)
            if not as_json:
                return
        if as_json:
            click.echo(json_text(json.dumps(doc, indent=2, ensure_ascii=False)))
            return
        summary = doc["summary"]
        # Every line is made before the first is printed: a value that cannot be shown
        # (a record changed outside ccm) fails the command before any output.
        lines = [f"customer {shown(customer)}: {summary['generated']} generated, "
                 f"{summary['suppressed']} suppressed"]
        for m in doc["messages"]:
            events = ", ".join(e["kind"] for e in m["events"])
            reason = f" ({m['reason']})" if m["reason"] else ""
            lines.append(f"{m['created_at'][:19]}  {m['channel']:5}  {m['status']:10}  "
                         f"{m['template']}@{m['template_version']}{reason}"
                         + (f"  [{events}]" if events else ""))
        if summary["engagement_rate"]:
            rates = ", ".join(f"{ch} {r:.0%}" for ch, r in summary["engagement_rate"].items())
            lines.append(f"engagement: {rates}")
        if summary["opted_out"]:
            lines.append(f"opted out: {', '.join(summary['opted_out'])}")
        if summary["erased_at"]:
            lines.append(f"erased: {summary['erased_at']}")
        for line in lines:
            echo(line)

def _write_html(timeline: dict[str, Any], path: Path, pack: Path | None) -> None:
    try:
        from ccm.engagement import reports
    except ImportError as exc:  # pragma: no cover - reports ships with ccm
        raise Fail(f"HTML timelines need ccm.engagement.reports ({exc})") from exc
    brand = None
    if pack is not None:
        from ccm.pack import load_pack

        try:
            brand = reports.brand_from_pack(load_pack(pack))
        except CCMError as exc:
            raise fail(exc) from exc
    page = reports.timeline_html(timeline, brand=brand)
    written = write_output(path, page.encode("utf-8"))
    echo(f"wrote {written}", err=True)


@record.command("verify")
@record_option
@click.option("--checkpoint", "checkpoint_path",
              type=ExistingFile(), default=None,
              help="Also check against this signed checkpoint (truncation, rollback).")
@click.option("--key-file", type=ExistingFile(),
              default=None, help=f"Checkpoint key [default: ${checkpoints.ENV_CHECKPOINT_KEY}].")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def verify_cmd(record_url: str | None, checkpoint_path: Path | None, key_file: Path | None,
               as_json: bool) -> None:
    """Recompute the hash chains; exit 0 when intact, 1 naming the first bad entry."""
    with _opened(record_url) as rec:
        key = checkpoints.load_key(key_file) if checkpoint_path is not None else None
        try:
            result = rec.verify(checkpoint=checkpoint_path, key=key)
        except ValueError as exc:
            raise Fail(str(exc)) from exc
    if as_json:
        click.echo(json_text(json.dumps(result.to_dict(), indent=2, ensure_ascii=False)))
    elif result.ok:
        against = f", consistent with {checkpoint_path}" if checkpoint_path else ""
        echo(f"ok: {result.checked} entries of {result.customers} customer(s) "
             f"verified{against}")
    else:
        echo(f"FAILED: {result.problem_count} problem(s) in {result.checked} entries")
        echo(f"first bad: {result.first_bad}")
        for problem in result.problems[1:]:
            echo(f"  {problem}")
    if result.erasures_pending and not as_json:
        # Not tampering, but not done either: an erase killed or held up before its flush.
        echo(f"erasure pending for {len(result.erasures_pending)} customer(s): "
             f"{', '.join(map(shown, result.erasures_pending))}: their data key is destroyed, "
             "but old pages of the database may still hold it and their archived content; "
             "run: ccm record erase --pending", err=True)
    if not result.ok:
        sys.exit(1)


@record.command("checkpoint")
@record_option
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Write the signed checkpoint here (keep it away from the record).")
@click.option("--key-file", type=ExistingFile(),
              default=None, help=f"HMAC key [default: ${checkpoints.ENV_CHECKPOINT_KEY}].")
def checkpoint_cmd(record_url: str | None, out: Path, key_file: Path | None) -> None:
    """Sign every chain head, so a later verify detects truncation and rollback."""
    try:
        key = checkpoints.load_key(key_file)
    except CCMError as exc:
        raise fail(exc) from exc
    with _opened(record_url) as rec:
        doc = rec.checkpoint_doc(key)
    text = json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    written = write_output(out, text.encode("utf-8"))
    echo(f"wrote {written}")


@record.command("show")
@click.argument("message_id")
@record_option
@click.option("--content", "content_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Write the exact generated bytes here.")
@click.option("--archival", "archival_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Write the archival copy (PDF/A) here.")
def show_cmd(message_id: str, record_url: str | None, content_path: Path | None,
             archival_path: Path | None) -> None:
    """Print a message's entry and events; optionally write its archived bytes."""
    with _opened(record_url, with_key=content_path is not None or archival_path is not None) as rec:
        entry = rec.get(message_id)
        doc = entry.to_dict()
        doc["events"] = [e.to_dict() for e in rec.events(message_id)]
        if content_path is not None:
            write_output(content_path, rec.content(message_id))
        if archival_path is not None:
            archival = rec.archival(message_id)
            if archival is None:
                raise Fail(f"message {message_id} has no archival copy", ExitCode.NOT_FOUND)
            write_output(archival_path, archival)
        click.echo(json_text(json.dumps(doc, indent=2, ensure_ascii=False)))


#: Where erasure's limits are written down (printed by ``ccm record erase``).
PRIVACY_DOC = "docs/privacy.md#what-erasure-cannot-reach-on-any-backend"


@record.command("erase")
@click.argument("customer", required=False)
@record_option
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--pending", is_flag=True,
              help="Finish every erasure left pending (readers held the database).")
@click.option("--wait", "wait", type=click.FloatRange(min=0), default=30.0, show_default=True,
              metavar="SECONDS", help="How long to wait for readers before giving up.")
def erase_cmd(customer: str | None, record_url: str | None, yes: bool, pending: bool,
              wait: float) -> None:
    """Crypto-shred CUSTOMER's archived content; the audit trail stays.

    Exit 0 only when the key is destroyed and no old page can remain (SQLite:
    the WAL was checkpointed and truncated); 4 when readers held the database
    past --wait (the customer stays "erasure pending": run --pending later),
    or when the customer was already erased; 3 for an unknown customer.
    It says how many of their messages waiting in the outbox can no longer be
    sent, and, on stderr, what it cannot reach: files render and batch wrote.
    """
    if pending:
        if customer is not None:
            raise click.UsageError("give a CUSTOMER or --pending, not both")
        with _opened(record_url, write=True, erase_wait=wait) as rec:
            finished = rec.finish_erasures()
        echo(f"finished {len(finished)} pending erasure(s)"
             + (f": {', '.join(map(shown, finished))}" if finished else ""))
        return
    if customer is None or not customer.strip():
        raise click.UsageError("give the CUSTOMER to erase (or --pending)")
    if not yes:
        try:
            confirmed = click.confirm(
                f"Destroy customer {shown(customer)}'s data key? Their archived content "
                "becomes unreadable for good", default=False,
            )
        except click.Abort as exc:  # no answer (end of input)
            if isinstance(exc.__cause__, KeyboardInterrupt):
                raise
            confirmed = False
        if not confirmed:
            raise Fail("not confirmed: nothing was erased (give --yes to skip the question)",
                       ExitCode.BAD_INPUT)
    with _opened(record_url, write=True, erase_wait=wait) as rec:
        done = rec.erase(customer)
    if done.finished_pending:
        echo(f"finished the pending erasure of customer {shown(customer)} (erased "
             f"{done.at.isoformat()}): no old page of it remains")
        return
    key = "data key destroyed" if done.data_key_destroyed else "no data key held"
    echo(f"erased customer {shown(customer)}: {key}, {done.blobs_deleted} archived part(s) "
         "deleted, audit entries kept")
    if done.unsendable:
        echo(f"{done.unsendable} message(s) waiting in the outbox can no longer be sent "
             "(their content and recipient were under the destroyed key): marked failed, "
             "nothing of this customer is due")
    if done.in_review:
        echo(f"{done.in_review} message(s) in review (sent or not, unknown) stay for you to "
             "resolve: ccm send --resolve MESSAGE_ID --as sent|failed")
    # What the record cannot reach: said every time, since only the operator knows where.
    echo("not erased (outside the record): files that ccm render or ccm batch wrote "
         "(.pdf, .eml, .sms.txt, messages-*.jsonl or .zip, the unencrypted print-*.pdf and "
         "its .csv), what was handed to a transport, and backups made before now; "
         f"see {PRIVACY_DOC}", err=True)


@record.command("rotate-key")
@record_option
@click.option("--new-key-file", required=True,
              type=ExistingFile(),
              help="The new master key (MasterKey.generate_file makes one).")
@click.option("--wait", "wait", type=click.FloatRange(min=0), default=30.0, show_default=True,
              metavar="SECONDS", help="How long to wait for readers when flushing the WAL.")
def rotate_key_cmd(record_url: str | None, new_key_file: Path, wait: float) -> None:
    """Re-wrap every data key under the master key in --new-key-file.

    The current key comes from CCM_MASTER_KEY / CCM_MASTER_KEY_FILE. Afterwards
    only the new key opens the record: point CCM_MASTER_KEY_FILE at it.
    """
    try:
        new = MasterKey.from_file(new_key_file)
        if _master_key() is None:
            raise Fail(f"rotating needs the current master key: set {ENV_KEY} or {ENV_KEY_FILE}")
    except CCMError as exc:
        raise fail(exc) from exc
    with _opened(record_url, with_key=True, write=True, erase_wait=wait) as rec:
        count = rec.rotate_key(new)
    echo(f"re-wrapped {count} data key(s) under master key {new.fingerprint}; "
         f"the old key opens nothing now: set {ENV_KEY_FILE}={new_key_file}")


@record.command("export")
@click.argument("customer")
@record_option
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the JSON here instead of stdout.")
def export_cmd(customer: str, record_url: str | None, out: Path | None) -> None:
    """Everything about CUSTOMER as JSON (subject access request), content decrypted."""
    with _opened(record_url, with_key=True) as rec:
        doc = rec.export(customer)
        if not doc["messages"] and not doc.get("erasures"):
            # As ``timeline``: an unknown customer is an error, not an empty export
            # that a subject access request would pass on as "we hold nothing".
            raise Fail(f"no messages for customer {customer!r} in the record at {rec.where}: "
                       "check the customer id (the customer.id of the requests); nothing "
                       "was written", ExitCode.NOT_FOUND)
        text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
        if out is None:
            click.echo(json_text(text), nl=False)
        else:
            write_output(out, text.encode("utf-8"))
            echo(f"wrote {out} ({len(doc['messages'])} message(s))", err=True)


def _when(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"not an ISO 8601 time: {value!r}", param_hint="--at") from None
    if moment.tzinfo is None:
        raise click.BadParameter("give a time zone, e.g. 2025-01-31T09:00:00+00:00",
                                 param_hint="--at")
    return moment


@record.command("event")
@click.argument("message_id")
@click.argument("kind", type=click.Choice(EVENT_KINDS))
@record_option
@click.option("--data", "data_json", default=None, metavar="JSON",
              help='Event data as a JSON object, e.g. \'{"url": "https://..."}\'.')
@click.option("--at", "at_text", default=None, metavar="ISO",
              help="When it happened (ISO 8601 with zone) [default: now].")
def event_cmd(message_id: str, kind: str, record_url: str | None, data_json: str | None,
              at_text: str | None) -> None:
    """Attach an event (sent, delivered, opened, ...) to MESSAGE_ID."""
    data = None
    if data_json is not None:
        try:
            data = json.loads(data_json)
        except json.JSONDecodeError as exc:
            raise click.BadParameter(f"invalid JSON: {exc.msg}", param_hint="--data") from None
        if not isinstance(data, dict):
            raise click.BadParameter("must be a JSON object", param_hint="--data")
        # Checked before the record opens, URLs included: event data is stored in clear
        # and chained, so erasing the customer later could not remove it.
        found = personal_data_in(data)
        if found:
            raise click.BadParameter(
                f"holds personal data ({'; '.join(found)}): event data is stored in clear "
                "and erasing the customer cannot remove it; keep ids, codes and channels in "
                "it (the content is archived encrypted)", param_hint="--data")
    at = _when(at_text)
    with _opened(record_url, write=True) as rec:
        added = rec.add_event(message_id, kind, at=at, data=data)
    click.echo(json_text(json.dumps(added.to_dict(), ensure_ascii=False)))


@record.command("features")
@record_option
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Write the CSV here.")
def features_cmd(record_url: str | None, out: Path) -> None:
    """One CSV row per customer of engagement features (counts, rates, recency).

    Text cells a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``,
    tab, CR first) get a leading ``'``.
    """
    buffer = io.StringIO()
    columns = list(FEATURE_COLUMNS)
    with _opened(record_url) as rec:
        rows = write_csv(buffer, columns, ([row[k] for k in columns] for row in rec.features()))
    write_output(out, buffer.getvalue().encode("utf-8"))
    echo(f"wrote {out} ({rows} customer(s))")
