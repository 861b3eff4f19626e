"""Delivery: transports, the outbox, senders and the events that come back (bounces, callbacks).

Rendering and sending are two steps joined by the record: a rendered message
is queued with a due time (``RenderOptions(queue=True)``, ``ccm render
--queue``); a :class:`Sender` (``ccm send``) takes due messages and hands each
to the transport configured for its channel (:func:`load_config`). See
docs/delivery.md.

The transports: :class:`~ccm.delivery.smtp.SmtpTransport`,
:class:`~ccm.delivery.sms.TwilioTransport` and
:class:`~ccm.delivery.webhook.WebhookTransport` (these two need
``ccm-engine[delivery]``), :class:`FolderTransport`; your own is any object with
``name``, ``send(message) -> Receipt`` and ``close()`` (:class:`Transport`).
"""

from __future__ import annotations

from ccm.delivery.config import DeliveryConfig as DeliveryConfig
from ccm.delivery.config import Route as Route
from ccm.delivery.config import load_config as load_config
from ccm.delivery.sender import Sender as Sender
from ccm.delivery.sender import SendReport as SendReport
from ccm.delivery.sender import Sent as Sent
from ccm.delivery.smtp import SmtpSettings as SmtpSettings
from ccm.delivery.smtp import SmtpTransport as SmtpTransport
from ccm.delivery.transport import Checkable as Checkable
from ccm.delivery.transport import FolderTransport as FolderTransport
from ccm.delivery.transport import RateLimiter as RateLimiter
from ccm.delivery.transport import Retry as Retry
from ccm.delivery.transport import Transport as Transport

__all__ = [
    "Checkable",
    "DeliveryConfig",
    "FolderTransport",
    "RateLimiter",
    "Retry",
    "Route",
    "SendReport",
    "Sender",
    "Sent",
    "SmtpSettings",
    "SmtpTransport",
    "Transport",
    "load_config",
]
