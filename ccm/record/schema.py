"""The record's tables, its schema version, and in-place upgrades.

Tables (SQLAlchemy Core; the same definitions serve SQLite and PostgreSQL)::

    ccm_meta    key -> value: schema_version, ccm_version, created_at,
                master_key_fingerprint
    messages    one row per message (generated or suppressed): ids, versions,
                digests, status, reason, archive_ref -- no names, addresses
                or content
    events      sent / delivered / opened / ... attached to a message
    chain       the hash chains: one per customer, one row per message, event
                or erasure, (customer_id, seq) unique, each row's hash
                covering its data and the previous row's hash
    data_keys   one wrapped AES-256 data key per customer (destroyed on erase)
    archive     encrypted content blobs, (ref, part) -> nonce||ciphertext
    outbox      one row per queued message: delivery state, due time,
                attempts, the sender holding it, the provider's id, the
                last error (no personal data) and the recipient, encrypted
                under the customer's data key (see ccm.record.outbox)

Versioning: ``ccm_meta.schema_version`` says which layout a record has.
Opening a record runs :func:`ensure_schema`: a new record is created at
:data:`SCHEMA_VERSION`; an older one is upgraded in place, one step of
:data:`MIGRATIONS` at a time, inside one locked transaction; a newer one
raises :class:`~ccm.errors.RecordSchemaError` naming the ccm version it needs.

Version history:

* 0 -- the pre-release development layout: no ``ccm_meta`` table, and
  ``messages`` without ``sources_sha256`` and ``segment``. Kept so the
  upgrade path is exercised by a test, not only promised.
* 1 -- ccm 0.1.
* 2 -- the ``outbox`` table (delivery: queued, sending, sent, ...).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

import sqlalchemy as sa

from ccm.errors import RecordSchemaError
from ccm.record import stored

__all__ = [
    "ERASURE_PENDING",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "archive",
    "ccm_meta",
    "chain",
    "check_version",
    "data_keys",
    "ensure_schema",
    "events",
    "has_layout",
    "messages",
    "meta_problems",
    "meta_value",
    "metadata",
    "outbox",
    "read_version",
    "set_meta",
]

#: The layout this ccm writes.
SCHEMA_VERSION = 2
#: The ``ccm_meta`` keys of an erasure left pending by readers start with this.
ERASURE_PENDING = "erasure_pending:"
_META_TIMES = ("created_at", "upgraded_at", "master_key_rotated_at")
_META_FINGERPRINTS = ("master_key_fingerprint", "master_key_rotating")

metadata = sa.MetaData()
_ts = sa.DateTime(timezone=True)

ccm_meta = sa.Table(
    "ccm_meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

messages = sa.Table(
    "messages",
    metadata,
    sa.Column("message_id", sa.String, primary_key=True),
    sa.Column("idempotency_key", sa.String, nullable=False, unique=True),
    sa.Column("params_sha256", sa.String(64), nullable=False),
    sa.Column("customer_id", sa.String, nullable=False),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("template", sa.String, nullable=False),
    sa.Column("template_version", sa.String),
    sa.Column("pack", sa.String),
    sa.Column("pack_version", sa.String),
    sa.Column("message_type", sa.String(32)),
    sa.Column("journey", sa.String),
    sa.Column("locale", sa.String(35)),
    sa.Column("created_at", _ts, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("reason", sa.String),
    sa.Column("content_sha256", sa.String(64)),
    sa.Column("archival_sha256", sa.String(64)),
    sa.Column("sources_sha256", sa.String(64)),
    sa.Column("archive_ref", sa.String(64)),
    sa.Column("segment", sa.String),
    sa.Index("ix_messages_customer_created", "customer_id", "created_at"),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("event_id", sa.String(64), primary_key=True),
    sa.Column("message_id", sa.String, sa.ForeignKey("messages.message_id"), nullable=False),
    sa.Column("customer_id", sa.String, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("at", _ts, nullable=False),
    sa.Column("data", sa.Text),
    sa.Index("ix_events_message", "message_id"),
    sa.Index("ix_events_customer_kind", "customer_id", "kind"),
)

chain = sa.Table(
    "chain",
    metadata,
    sa.Column("customer_id", sa.String, primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("ref", sa.String),
    sa.Column("at", _ts, nullable=False),
    sa.Column("detail", sa.Text),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Index("ix_chain_ref", "ref"),
)

data_keys = sa.Table(
    "data_keys",
    metadata,
    sa.Column("customer_id", sa.String, primary_key=True),
    sa.Column("key_id", sa.String(64), nullable=False),
    sa.Column("wrapped", sa.LargeBinary, nullable=False),
    sa.Column("created_at", _ts, nullable=False),
)

archive = sa.Table(
    "archive",
    metadata,
    sa.Column("ref", sa.String(64), primary_key=True),
    sa.Column("part", sa.String(16), primary_key=True),
    sa.Column("message_id", sa.String, sa.ForeignKey("messages.message_id"), nullable=False),
    sa.Column("customer_id", sa.String, nullable=False),
    sa.Column("key_id", sa.String(64), nullable=False),
    sa.Column("blob", sa.LargeBinary, nullable=False),
    sa.Index("ix_archive_customer", "customer_id"),
)

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("message_id", sa.String, sa.ForeignKey("messages.message_id"), primary_key=True),
    sa.Column("customer_id", sa.String, nullable=False),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("due_at", _ts, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("sender", sa.String(120)),
    sa.Column("transport", sa.String(32)),
    sa.Column("provider_id", sa.String(200)),
    sa.Column("error", sa.String(400)),
    sa.Column("updated_at", _ts, nullable=False),
    sa.Column("key_id", sa.String(64)),
    sa.Column("recipient", sa.LargeBinary),
    sa.Index("ix_outbox_state_due", "state", "due_at"),
    sa.Index("ix_outbox_provider", "provider_id"),
)


def _ccm_version() -> str:
    from ccm._version import __version__

    return __version__


def read_version(conn: sa.Connection, *, where: str = "") -> int | None:
    """The record's schema version; ``None`` for an empty database, 0 for the unversioned layout.

    A value that is not a whole number raises :class:`RecordSchemaError`: which
    layout the record has cannot be known from it.
    """
    inspector = sa.inspect(conn)
    if inspector.has_table("ccm_meta"):
        value = conn.execute(
            sa.select(ccm_meta.c.value).where(ccm_meta.c.key == "schema_version")
        ).scalar_one_or_none()
        if value is None:
            return 0
        if not (isinstance(value, str) and value.isascii() and value.isdigit()):
            raise RecordSchemaError(
                f"the record{' at ' + where if where else ''}: schema_version in its ccm_meta "
                "table is not a whole number "
                "(edited or damaged): run `ccm record verify` on it and restore the record "
                "from a backup", version=None)
        return int(value)
    if inspector.has_table("messages"):
        return 0
    return None


def set_meta(conn: sa.Connection, **values: str) -> None:
    """Insert or update ``ccm_meta`` values (inside the caller's transaction)."""
    for key, value in values.items():
        updated = conn.execute(
            ccm_meta.update().where(ccm_meta.c.key == key).values(value=value)
        ).rowcount
        if not updated:
            conn.execute(ccm_meta.insert().values(key=key, value=value))


def meta_value(conn: sa.Connection, key: str) -> str | None:
    """One ``ccm_meta`` value, or ``None``."""
    return conn.execute(
        sa.select(ccm_meta.c.value).where(ccm_meta.c.key == key)
    ).scalar_one_or_none()


def has_layout(conn: sa.Connection) -> bool:
    """Whether every table of this ccm's layout is there (a record whose version is unreadable)."""
    present = set(sa.inspect(conn).get_table_names())
    return all(name in present for name in metadata.tables)


def _check_meta(key: str, value: object) -> str | None:
    """What is wrong with one ``ccm_meta`` value, or ``None`` (other keys: only that it is text)."""
    if not isinstance(value, str):
        return f"holds {stored.held(value)}, not text"
    if key == "schema_version":
        if not (value.isascii() and value.isdigit()):
            return "is not a whole number"
        if int(value) != SCHEMA_VERSION:
            return f"says {int(value)}, but the tables are those of version {SCHEMA_VERSION}"
    elif key in _META_TIMES:
        try:
            datetime.fromisoformat(value)
        except ValueError:
            return "is not a timestamp"
    elif key in _META_FINGERPRINTS:
        if len(value) != 16 or value.strip("0123456789abcdef"):
            return "is not a key fingerprint (16 hexadecimal digits)"
    elif key.startswith(ERASURE_PENDING):
        try:
            doc = json.loads(value)
            stored.text(doc["customer_id"])
            datetime.fromisoformat(doc["at"])
        except (ValueError, KeyError, TypeError):
            return "is not a pending erasure's note (JSON with customer_id and at)"
    return None


def meta_problems(conn: sa.Connection) -> list[str]:
    """What is wrong with the ``ccm_meta`` values this ccm reads (for verify).

    ``ccm_meta`` is outside the hash chains, so verify cannot tell an edit from
    a legitimate value; it can tell a value that no ccm writes: not text, a
    schema version that is no number, a timestamp or fingerprint that is none.
    """
    problems = []
    for key, value in conn.execute(
        sa.select(stored.raw(ccm_meta.c.key, "key"), stored.raw(ccm_meta.c.value, "value"))
        .order_by(ccm_meta.c.key)
    ):
        if not isinstance(key, str):
            problems.append(f"ccm_meta: a key holds {stored.held(key)}, not text (edited)")
            continue
        wrong = _check_meta(key, value)
        if wrong:
            problems.append(f"ccm_meta {key}: the value {wrong} (edited or damaged)")
    return problems


def _upgrade_0_to_1(conn: sa.Connection) -> None:
    """v0 -> v1: add ``sources_sha256`` and ``segment`` to messages; add missing tables.

    New columns are NULL on old rows. The chain hashes leave out NULL fields,
    so the old rows' hashes stay valid (see :mod:`ccm.record.chain`).
    """
    columns = {c["name"] for c in sa.inspect(conn).get_columns("messages")}
    preparer = conn.dialect.identifier_preparer
    for name, ddl_type in (("sources_sha256", "VARCHAR(64)"), ("segment", "VARCHAR")):
        if name not in columns:
            table, column = preparer.quote("messages"), preparer.quote(name)
            conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {column} {ddl_type}")
    metadata.create_all(conn, checkfirst=True)


def _upgrade_1_to_2(conn: sa.Connection) -> None:
    """v1 -> v2: add the ``outbox`` table (nothing is queued in an upgraded record)."""
    outbox.create(conn, checkfirst=True)


#: ``MIGRATIONS[n]`` upgrades a record from version n to n + 1.
MIGRATIONS: dict[int, Callable[[sa.Connection], None]] = {0: _upgrade_0_to_1, 1: _upgrade_1_to_2}


def check_version(version: int | None, *, where: str) -> None:
    """Raise :class:`RecordSchemaError` when the record is newer than this ccm."""
    if version is not None and version > SCHEMA_VERSION:
        raise RecordSchemaError(
            f"the record at {where} has schema version {version}, newer than this ccm "
            f"({_ccm_version()}, schema {SCHEMA_VERSION}); upgrade ccm to the version that "
            "wrote it (see its ccm_meta.ccm_version), or open a copy made before the upgrade",
            version=version,
            supported=SCHEMA_VERSION,
        )


def ensure_schema(conn: sa.Connection, *, where: str) -> int:
    """Create or upgrade the schema inside the caller's (locked) transaction.

    Returns the version found, or ``-1`` when the record was created now.
    """
    version = read_version(conn, where=where)
    check_version(version, where=where)
    now = datetime.now(UTC).isoformat()
    if version is None:
        metadata.create_all(conn, checkfirst=True)
        set_meta(conn, schema_version=str(SCHEMA_VERSION), ccm_version=_ccm_version(),
                  created_at=now)
        return -1
    start = version
    while version < SCHEMA_VERSION:
        step = MIGRATIONS.get(version)
        if step is None:  # pragma: no cover - every version below the current one has a step
            raise RecordSchemaError(f"no upgrade from record schema version {version}",
                                    version=version)
        step(conn)
        version += 1
        set_meta(conn, schema_version=str(version), ccm_version=_ccm_version(),
                  upgraded_at=now)
    return start
