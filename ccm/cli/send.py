"""``ccm send``: send due messages from the record's outbox (see docs/delivery.md).

::

    ccm send --config delivery.yaml            # send what is due now, then exit
    ccm send --config delivery.yaml --follow   # keep sending; SIGTERM/SIGINT stop it cleanly
    ccm send --dry-run [--config FILE]         # check the config, list what is due, send nothing
    ccm send --review                          # list messages a crash left uncertain
    ccm send --resolve ID --as sent|failed|queued [--note TEXT]

Exit codes: 0 done (retries and messages in review are reported, not
errors of the command), 1 bad config or no master key, or some message
failed for good in this run, 3 unknown message or no such config file, 4
another sender holds the SQLite record (or the message cannot be resolved
so), 5 the record, the relay, the API or the folder cannot be reached (the
message in hand is put back untouched), 130 / 143 stopped by SIGINT / SIGTERM
(without --follow; the message in hand is settled first, the rest stay
queued).
"""

from __future__ import annotations

import json
import os
import signal
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from ccm.cli._common import (
    ExitCode,
    Fail,
    IsoDateTime,
    aware,
    echo,
    exit_code_for,
    json_text,
    lock_timeout,
    shown,
)
from ccm.errors import CCMError, MessageNotFound, RecordError, SenderBusy

__all__ = ["send"]

DEFAULT_URL = "sqlite:///ccm-record.db"


@contextmanager
def _record(url: str | None) -> Iterator[Any]:
    from ccm.record import MasterKey, Record
    from ccm.record.keys import ENV_KEY, ENV_KEY_FILE

    key = MasterKey.from_env() if (os.environ.get(ENV_KEY) or os.environ.get(ENV_KEY_FILE)) \
        else None
    try:
        rec = Record(url or os.environ.get("CCM_RECORD_URL") or DEFAULT_URL, master_key=key,
                     create=False, lock_timeout=lock_timeout())
    except CCMError as exc:
        raise Fail(str(exc), exit_code_for(exc)) from exc
    try:
        yield rec
    finally:
        rec.close()


def _line(item: dict[str, Any]) -> str:
    extra = f" ({item['error']})" if item.get("error") else ""
    return (f"{item['state']:8} {item['message_id']} {item['channel']:5} "
            f"{shown(item['customer_id'])} due {item['due_at']} attempts {item['attempts']}{extra}")


@click.command("send")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Delivery config (YAML) [default: $CCM_DELIVERY_CONFIG].")
@click.option("--record", "record_url", default=None, metavar="URL",
              help=f"Record URL [default: $CCM_RECORD_URL or {DEFAULT_URL}].")
@click.option("--follow", is_flag=True, help="Keep running; stop cleanly on SIGTERM or SIGINT.")
@click.option("--poll", type=click.FloatRange(min=0.05), default=1.0, show_default=True,
              help="Seconds between looks at the queue when nothing is due (--follow).")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Send at most this many messages, then exit.")
@click.option("--dry-run", is_flag=True,
              help="Check the delivery config as a real run does and list the messages that "
                   "are due; connect to nothing, send nothing.")
@click.option("--review", is_flag=True, help="List messages waiting for a person's decision.")
@click.option("--resolve", "resolve_id", default=None, metavar="MESSAGE_ID",
              help="Settle a message in review, or send a failed one again (with --as).")
@click.option("--as", "resolve_as", type=click.Choice(["sent", "failed", "queued"]),
              default=None, help="The decision for --resolve: it arrived, it did not "
                                 "(failed), or send it again (queued).")
@click.option("--note", default=None, help="Why (kept with the decision; no personal data).")
@click.option("--as-of", "as_of", type=IsoDateTime(),
              default=None, metavar="DATETIME",
              help="The time the sender sees (due times, events), ISO 8601; naive means UTC "
                   "[default: now].")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def send(config_file: Path | None, record_url: str | None, follow: bool, poll: float,
         limit: int | None, dry_run: bool, review: bool, resolve_id: str | None,
         resolve_as: str | None, note: str | None, as_of: datetime | None,
         as_json: bool) -> None:
    """Send the due messages of the record's outbox through the configured transports."""
    modes = sum(bool(x) for x in (dry_run, review, resolve_id, follow))
    if modes > 1:
        raise Fail("choose one of --follow, --dry-run, --review and --resolve", ExitCode.USAGE)
    if (resolve_id is None) != (resolve_as is None):
        raise Fail("--resolve MESSAGE_ID and --as DECISION go together", ExitCode.USAGE)
    if follow and limit is not None:
        raise Fail("--limit N sends at most N messages and exits; --follow keeps sending until "
                   "stopped: give one of them", ExitCode.USAGE)
    moment = aware(as_of)

    def now() -> datetime:
        return moment or datetime.now(UTC)

    def show(item: dict[str, Any]) -> None:
        if as_json:
            click.echo(json_text(json.dumps(item, ensure_ascii=False)))
        else:
            echo(_line(item))

    from ccm.record import Outbox

    # The dry run checks the config exactly as a real run does (connecting to nothing), so a
    # config it passes is not refused by the real send; without one it only lists.
    checked = _load_config(config_file) if dry_run and _config_path(config_file) else None
    with _record(record_url) as rec:
        outbox = Outbox(rec)
        try:
            if dry_run or review:
                items = (outbox.due(now=now()) if dry_run
                         else outbox.items(states=["review"]))
                for item in items:
                    show(item.to_dict())
                what = "due" if dry_run else "in review"
                if dry_run:
                    what += (f"; delivery config {checked.path} is valid" if checked else
                             "; no --config given, so no delivery config was checked")
                echo(f"ccm: {len(items)} message(s) {what}", err=True)
                return
            if resolve_id is not None:
                assert resolve_as is not None
                try:
                    item = outbox.resolve(resolve_id, resolve_as, at=now(), note=note)
                except MessageNotFound as exc:
                    raise Fail(str(exc), ExitCode.NOT_FOUND) from exc
                except RecordError as exc:
                    raise Fail(str(exc), ExitCode.CONFLICT) from exc
                show(item.to_dict())
                return
        except CCMError as exc:
            raise Fail(str(exc), exit_code_for(exc)) from exc
        _run(rec, config_file, follow=follow, poll=poll, limit=limit,
             clock=(lambda: moment) if moment else None, as_json=as_json)


def _config_path(config_file: Path | None) -> Path | None:
    """``--config``, else ``$CCM_DELIVERY_CONFIG``, else None."""
    return config_file or (Path(os.environ["CCM_DELIVERY_CONFIG"])
                           if os.environ.get("CCM_DELIVERY_CONFIG") else None)


def _load_config(config_file: Path | None) -> Any:
    """The delivery config, loaded and checked (no connection made); the one way both a real
    run and ``--dry-run`` read it. A file that does not exist is NOT_FOUND naming it."""
    from ccm.delivery import load_config

    path = _config_path(config_file)
    if path is None:
        raise Fail("--config delivery.yaml is needed to send (or set CCM_DELIVERY_CONFIG); "
                   "see docs/delivery.md", ExitCode.USAGE)
    if not path.exists():
        raise Fail(f"{path}: no such delivery config file; check the path",
                   ExitCode.NOT_FOUND)
    try:
        return load_config(path)
    except CCMError as exc:
        raise Fail(str(exc)) from exc


def _need_key(rec: Any) -> None:
    """Refuse to start without the master key: every queued recipient is encrypted."""
    if rec.master_key is None:
        raise Fail("sending needs the record's master key (the recipients are stored "
                   "encrypted): set CCM_MASTER_KEY_FILE to the key file, or CCM_MASTER_KEY; "
                   "no message was taken", ExitCode.BAD_INPUT)


def _left(rec: Any) -> int:
    from ccm.record import Outbox

    return int(Outbox(rec).counts()["queued"])


def _run(rec: Any, config_file: Path | None, *, follow: bool, poll: float, limit: int | None,
         clock: Any, as_json: bool) -> None:
    from ccm.delivery import Sender, SendReport
    from ccm.errors import ConfigError, TransportUnavailable

    _need_key(rec)
    config = _load_config(config_file)
    # SIGTERM or SIGINT (Ctrl-C) stops after the message in hand, which is settled first:
    # killed mid-message, it would be left in `sending` and go to review. A message still
    # waiting for its rate limit is not in hand: the wait ends and it goes back untouched.
    # A second signal stops at once (KeyboardInterrupt: a message the transport holds goes
    # to review, one it does not is put back).
    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, _frame: Any) -> None:
        received.append(signum)
        if len(received) > 1:
            raise KeyboardInterrupt
        stop.set()

    def pause(seconds: float) -> None:
        if stop.wait(seconds):
            raise KeyboardInterrupt  # the sender puts the waiting message back

    try:
        sender = Sender(rec, config, clock=clock, sleep=pause)
    except SenderBusy as exc:
        raise Fail(str(exc), ExitCode.CONFLICT) from exc

    done = SendReport()

    def show(result: Any) -> None:
        done.add(result)
        doc = result.to_dict()
        if as_json:
            click.echo(json_text(json.dumps(doc, ensure_ascii=False)))
        else:
            detail = f" ({doc['detail']})" if doc.get("detail") else ""
            echo(f"{doc['state']:10} {doc['message_id']} {doc['channel']}{detail}")

    def waiting(exc: TransportUnavailable, wait: float) -> None:
        echo(f"ccm: {exc}; {_left(rec)} message(s) left queued; trying again in {wait:g}s",
             err=True)

    def summary() -> None:
        counts = ", ".join(f"{n} {state}" for state, n in done.counts.items() if n) \
            or "nothing due"
        echo(f"ccm: {counts}", err=True)

    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, on_signal)
    try:
        if follow:
            echo(f"ccm: sending from {rec.where} (channels: "
                 f"{', '.join(sender.channels)}); SIGTERM stops", err=True)
            sender.run(stop, poll=poll, on_result=show, on_unavailable=waiting)
        else:
            # Each line as its message is settled (click.echo flushes): a sender killed
            # half-way leaves a log line for every message the record says it sent.
            sender.send_due(limit=limit, on_result=show, stop=stop)
    except KeyboardInterrupt:
        if not received:  # not one of our signals: the usual `ccm: interrupted`
            raise
    except TransportUnavailable as exc:
        if done.results:
            summary()
        raise Fail(f"{exc}; sending stopped, {_left(rec)} message(s) left queued (none "
                   "failed, no attempt counted); run ccm send again once it is back",
                   ExitCode.IO_ERROR) from exc
    except ConfigError as exc:
        if done.results:
            summary()
        raise Fail(f"{exc}; sending stopped, the message in hand was put back in the queue",
                   exit_code_for(exc)) from exc
    except CCMError as exc:
        raise Fail(str(exc), exit_code_for(exc)) from exc
    finally:
        sender.close()
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
    summary()
    if received and not follow:
        name = signal.Signals(received[0]).name
        how = ("at once (a second signal): ccm send --review lists a message it was handing "
               "over" if len(received) > 1 else "after the message in hand")
        echo(f"ccm: stopped by {name} {how}; {_left(rec)} message(s) left queued; run ccm "
             "send again to send them", err=True)
        raise SystemExit(128 + received[0])
    _warn_unrouted(rec, sender.channels, _config_path(config_file), clock)
    if done.counts["failed"] and not follow:
        # Some message failed for good in this run (refused, out of attempts, or no longer
        # sendable): say so to scripts. Retries and review are not failures.
        raise click.exceptions.Exit(int(ExitCode.BAD_INPUT))


def _warn_unrouted(rec: Any, routed: list[str], path: Path | None, clock: Any) -> None:
    """Say so when messages are due on a channel ``path`` has no transport for: ``--dry-run``
    lists them as due, and they stay queued until a transport is configured."""
    from ccm.message import CHANNELS
    from ccm.record import Outbox

    others = [c for c in CHANNELS if c not in routed]
    if not others:
        return
    left = Counter(item.channel for item in
                   Outbox(rec).due(now=clock() if clock else datetime.now(UTC), channels=others))
    if left:
        which = ", ".join(f"{n} {ch}" for ch, n in sorted(left.items()))
        echo(f"ccm: warning: {sum(left.values())} message(s) due on a channel {path} has no "
             f"transport for ({which}): they stay queued; add the channel to the config "
             "(see docs/delivery.md)", err=True)
