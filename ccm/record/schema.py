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

from collections.abc import Callable
from datetime import UTC, datetime

import sqlalchemy as sa

from ccm.errors import RecordSchemaError

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "archive",
    "ccm_meta",
    "chain",
    "check_version",
    "data_keys",
    "ensure_schema",
    "events",
    "messages",
    "meta_value",
    "metadata",
    "outbox",
    "read_version",
    "set_meta",
]

#: The layout this ccm writes.
SCHEMA_VERSION = 2

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


def read_version(conn: sa.Connection) -> int | None:
    """The record's schema version; ``None`` for an empty database, 0 for the unversioned layout."""
    inspector = sa.inspect(conn)
    if inspector.has_table("ccm_meta"):
        value = conn.execute(
            sa.select(ccm_meta.c.value).where(ccm_meta.c.key == "schema_version")
        ).scalar_one_or_none()
        return int(value) if value is not None else 0
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
    version = read_version(conn)
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
