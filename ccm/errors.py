"""Exceptions raised by ccm.

Everything ccm raises derives from :class:`CCMError`. Below it there are two
branches that must never be confused:

* :class:`ConfigError` -- the setup is wrong (a bad ``pack.yaml``, a template
  that does not compile, an unknown template, channel or locale, a missing
  key). Nothing will work until a person fixes it, so a batch stops.
* :class:`MessageError` -- this one message cannot be made (bad data, a
  render that blew its budget, an idempotency conflict). A batch reports the
  row and goes on.

::

    CCMError
    ├── ConfigError
    │   ├── PackError                (ValueError)   file + key
    │   ├── TemplateError            (ValueError)   file + line
    │   │   └── TemplateSyntaxError
    │   ├── UnsafeFileError          (ValueError)   file left its root / FIFO / device / too big
    │   ├── NotFoundError            (LookupError)  lists what exists
    │   │   ├── UnknownTemplate
    │   │   ├── UnknownChannel
    │   │   └── UnknownLocale
    │   ├── KeyConfigError                          master / signing keys
    │   ├── ApprovalError                           sources changed since approval
    │   ├── RecordSchemaError                       record needs an upgrade
    │   ├── DeliveryConfigError      (ValueError)   delivery config file + key
    │   └── SenderBusy                              another sender holds the record
    └── MessageError
        ├── DataError                (ValueError)   JSON path + rule
        ├── RenderError                             template + file + line
        │   ├── SandboxError                        template tried to escape
        │   ├── AssetError                          asset missing / not allowed
        │   ├── BudgetError                         time or size budget exceeded
        │   └── SmsTooLongError                     over the pack's segment limit
        ├── HeaderError              (ValueError)   unsafe email header value
        ├── PasswordRuleError                       customer lacks the field
        ├── DeliveryError                           transport + message id + code
        │   ├── TemporaryDeliveryError              try again later (4xx, 429, dropped)
        │   │   └── TransportUnavailable            relay, API or folder unreachable: stop
        │   ├── PermanentDeliveryError              never retry (5xx, invalid number)
        │   └── DeliveryUncertain                   the transport cannot say: review
        ├── InboundError             (ValueError)   a bounce, complaint or callback
        │                                           cannot be read or matched
        └── RecordError
            ├── IdempotencyConflict                 same key, other parameters
            ├── MessageNotFound      (LookupError)
            ├── CustomerNotFound     (LookupError)  no entry for that customer
            ├── ContentErased                       customer was crypto-shredded
            ├── ContentTampered                     key or blob fails its integrity check
            ├── AlreadyErased                       erased before (``erased_at``)
            ├── ErasurePending                      erased, but readers kept old bytes
            ├── NotARecord                          the file is no ccm record
            ├── RecordNotFound       (LookupError)  nothing at the URL to read
            ├── RecordLocked                        another process held it too long
            ├── RecordIOError                       disk full, read-only, permissions
            └── TokenError           (ValueError)   forged / expired tracking token

Suppression by contact policy is *not* an error: it is a returned decision.

Errors carry where the problem is (file, line, JSON path, customer id) and
never a password or personal data. They stay picklable, so they cross
process boundaries in batch runs.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AlreadyErased",
    "ApprovalError",
    "AssetError",
    "BudgetError",
    "CCMError",
    "ConfigError",
    "ContentErased",
    "ContentTampered",
    "CustomerNotFound",
    "DataError",
    "DeliveryConfigError",
    "DeliveryError",
    "DeliveryUncertain",
    "ErasurePending",
    "HeaderError",
    "IdempotencyConflict",
    "InboundError",
    "KeyConfigError",
    "MessageError",
    "MessageNotFound",
    "NotARecord",
    "NotFoundError",
    "PackError",
    "PasswordRuleError",
    "PermanentDeliveryError",
    "RecordError",
    "RecordIOError",
    "RecordLocked",
    "RecordNotFound",
    "RecordSchemaError",
    "RenderError",
    "SandboxError",
    "SenderBusy",
    "SmsTooLongError",
    "TemplateError",
    "TemplateSyntaxError",
    "TemporaryDeliveryError",
    "TokenError",
    "TransportUnavailable",
    "UnknownChannel",
    "UnknownLocale",
    "UnknownTemplate",
    "UnsafeFileError",
]


class CCMError(Exception):
    """Root of every exception ccm raises."""

    def __init__(self, message: str, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        self.context = context
        for key, value in context.items():
            setattr(self, key, value)

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword context must survive pickling (batch workers send errors home).
        return (_rebuild, (type(self), self.message, self.context))

    def __str__(self) -> str:
        return self.message


def _rebuild(cls: type[CCMError], message: str, context: dict[str, Any]) -> CCMError:
    return cls(message, **context)


# --- configuration: a person must fix the setup ------------------------------


class ConfigError(CCMError):
    """The setup is wrong; no message can be made until it is fixed."""


class PackError(ConfigError, ValueError):
    """A brand pack is invalid. ``path`` names the file, ``key`` the field."""


class TemplateError(ConfigError, ValueError):
    """A template folder or source is invalid. ``path`` and ``line`` say where."""


class TemplateSyntaxError(TemplateError):
    """A Jinja source does not compile."""


class UnsafeFileError(ConfigError, ValueError):
    """A pack or template file may not be read. ``path`` names it, ``reason`` says why.

    It resolves outside its root (a symlink leaving the pack or templates
    folder), is a symlink loop, is not a regular file (FIFO, device,
    socket) or is over the size limit.
    """

    path: str
    reason: str


class NotFoundError(ConfigError, LookupError):
    """Something asked for by name does not exist; ``available`` lists what does."""


class UnknownTemplate(NotFoundError):
    """No template with that id in the templates folder."""


class UnknownChannel(NotFoundError):
    """The template does not support that channel."""


class UnknownLocale(NotFoundError):
    """The pack does not support that locale."""


class KeyConfigError(ConfigError):
    """A required key (master key, signing key) is missing or malformed."""


class ApprovalError(ConfigError):
    """Approval is required and the sources changed since they were approved."""


class RecordSchemaError(ConfigError):
    """The record's schema is from another version; the message says what to do."""


class DeliveryConfigError(ConfigError, ValueError):
    """The delivery config is invalid. ``path`` names the file, ``key`` the setting."""


class SenderBusy(ConfigError):
    """Another sender works on this record (SQLite allows one at a time). ``url`` names it."""


# --- per message: report it and go on ----------------------------------------


class MessageError(CCMError):
    """This one message could not be made; others are unaffected."""


class DataError(MessageError, ValueError):
    """Request data breaks the template's contract. ``path`` is a JSON path."""


class RenderError(MessageError):
    """Rendering failed. ``template``, ``channel``, ``path`` and ``line`` say where."""


class SandboxError(RenderError):
    """A template tried to reach outside the sandbox."""


class AssetError(RenderError):
    """An asset is missing, unreadable, or outside the pack. ``url`` names it."""


class BudgetError(RenderError):
    """A render exceeded its time or output-size budget."""


class SmsTooLongError(RenderError):
    """An SMS needs more segments than the pack allows."""


class HeaderError(MessageError, ValueError):
    """An email header value is unsafe (line breaks, NUL, encoded newlines)."""


class PasswordRuleError(MessageError):
    """The PDF password rule cannot be applied (the customer lacks the field)."""


class InboundError(MessageError, ValueError):
    """A delivery report, complaint or provider callback cannot be read or matched to a
    message. ``reason`` is a short code (``not-a-report``, ``malformed``,
    ``unmatched``, ``too-large``); ``source`` names the file when there is one.
    """


class RecordError(MessageError):
    """The communication record refused or failed an operation."""


class IdempotencyConflict(RecordError):
    """The idempotency key is recorded with different parameters."""


class MessageNotFound(RecordError, LookupError):
    """No message with that id in the record."""


class CustomerNotFound(RecordError, LookupError):
    """The record holds nothing about that customer (``customer_id``)."""


class ContentErased(RecordError):
    """The customer's data key was destroyed; archived content is unreadable."""


class ContentTampered(RecordError):
    """Archived content cannot be trusted: its data key or its blob fails the integrity check.

    ``message_id`` and ``customer_id`` say which; ``ccm record verify`` lists all of them.
    """


class AlreadyErased(RecordError):
    """The customer was erased before and nothing was archived since; ``erased_at`` says when."""


class ErasurePending(RecordError):
    """The key is destroyed, but old bytes may still sit in the SQLite WAL.

    Readers held the database past the wait; ``holders`` names them. The
    customer stays marked "erasure pending" until the next erase or
    ``ccm record erase --pending`` completes the checkpoint.
    """


class NotARecord(RecordError):
    """The file or database at the URL is not a ccm record (not SQLite, corrupt, other tables)."""


class RecordNotFound(RecordError, LookupError):
    """There is no record at the URL (a reader never creates one)."""


class RecordLocked(RecordError):
    """Another process held the record's lock past the busy timeout."""


class RecordIOError(RecordError):
    """The system refused the record: disk full, read-only file system, permissions.

    ``reason`` is a short tag: ``disk full``, ``read-only``, ``permission``, ``open``, ``io``.
    """


class TokenError(RecordError, ValueError):
    """A tracking or unsubscribe token is forged, expired or malformed."""


class DeliveryError(MessageError):
    """A transport did not deliver a message. ``transport``, ``message_id``, ``code`` say which.

    The message never holds the recipient's address or the content.
    """


class TemporaryDeliveryError(DeliveryError):
    """The transport refused for now (a 4xx reply, 429, a dropped connection before the data):
    the sender retries with backoff."""


class TransportUnavailable(TemporaryDeliveryError):
    """Nothing was handed over because the transport itself cannot be reached (the SMTP relay
    or the provider's API refuses connections, its name does not resolve, the connection
    times out; the folder cannot be written). Not the message's fault: the sender puts it
    back without counting an attempt and stops. ``where`` names the relay (``host:port``),
    the API's host or the folder."""


class PermanentDeliveryError(DeliveryError):
    """The transport refused for good (a 5xx reply, an invalid or unsubscribed number):
    the message fails at once."""


class DeliveryUncertain(DeliveryError):
    """The transport may or may not have taken the message (the connection dropped after the
    data was handed over): never resent blindly, reported for review."""
