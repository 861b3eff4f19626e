"""ccm: customer communication management.

One brand pack and brand-neutral templates render every channel (PDF, email,
SMS); confidential PDFs are encrypted; every message goes into one
communication record. Start with :class:`Engine`.
"""

from __future__ import annotations

import typing as _typing

from ccm import errors as errors
from ccm._version import __version__ as __version__
from ccm.errors import AlreadyErased as AlreadyErased
from ccm.errors import ApprovalError as ApprovalError
from ccm.errors import AssetError as AssetError
from ccm.errors import BudgetError as BudgetError
from ccm.errors import CCMError as CCMError
from ccm.errors import ConfigError as ConfigError
from ccm.errors import ContentErased as ContentErased
from ccm.errors import ContentTampered as ContentTampered
from ccm.errors import CustomerNotFound as CustomerNotFound
from ccm.errors import DataError as DataError
from ccm.errors import DeliveryConfigError as DeliveryConfigError
from ccm.errors import DeliveryError as DeliveryError
from ccm.errors import DeliveryUncertain as DeliveryUncertain
from ccm.errors import ErasurePending as ErasurePending
from ccm.errors import HeaderError as HeaderError
from ccm.errors import IdempotencyConflict as IdempotencyConflict
from ccm.errors import InboundError as InboundError
from ccm.errors import KeyConfigError as KeyConfigError
from ccm.errors import MessageError as MessageError
from ccm.errors import MessageNotFound as MessageNotFound
from ccm.errors import NotARecord as NotARecord
from ccm.errors import NotFoundError as NotFoundError
from ccm.errors import PackError as PackError
from ccm.errors import PasswordRuleError as PasswordRuleError
from ccm.errors import PermanentDeliveryError as PermanentDeliveryError
from ccm.errors import RecordError as RecordError
from ccm.errors import RecordIOError as RecordIOError
from ccm.errors import RecordLocked as RecordLocked
from ccm.errors import RecordNotFound as RecordNotFound
from ccm.errors import RecordSchemaError as RecordSchemaError
from ccm.errors import RenderError as RenderError
from ccm.errors import SandboxError as SandboxError
from ccm.errors import SenderBusy as SenderBusy
from ccm.errors import SmsTooLongError as SmsTooLongError
from ccm.errors import TemplateError as TemplateError
from ccm.errors import TemplateSyntaxError as TemplateSyntaxError
from ccm.errors import TemporaryDeliveryError as TemporaryDeliveryError
from ccm.errors import TokenError as TokenError
from ccm.errors import TransportUnavailable as TransportUnavailable
from ccm.errors import UnknownChannel as UnknownChannel
from ccm.errors import UnknownLocale as UnknownLocale
from ccm.errors import UnknownTemplate as UnknownTemplate
from ccm.errors import UnsafeFileError as UnsafeFileError

if _typing.TYPE_CHECKING:
    from ccm.delivery import Sender as Sender
    from ccm.message import Message as Message
    from ccm.message import Request as Request
    from ccm.pack import BrandPack as BrandPack
    from ccm.pack import load_pack as load_pack
    from ccm.render.engine import DEFAULT as DEFAULT
    from ccm.render.engine import Engine as Engine
    from ccm.render.engine import RenderOptions as RenderOptions
    from ccm.render.template import Template as Template
    from ccm.render.template import load_template as load_template

#: The public names that need the rendering stack, imported on first use: ``import ccm``
#: (and so ``python -m ccm``, whose start-up a Ctrl-C may interrupt) stays light.
_LAZY = {
    "Sender": "ccm.delivery",
    "Message": "ccm.message",
    "Request": "ccm.message",
    "BrandPack": "ccm.pack",
    "load_pack": "ccm.pack",
    "DEFAULT": "ccm.render.engine",
    "Engine": "ccm.render.engine",
    "RenderOptions": "ccm.render.engine",
    "Template": "ccm.render.template",
    "load_template": "ccm.render.template",
}


def __getattr__(name: str) -> _typing.Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ccm' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

__all__ = [
    "DEFAULT",
    "AlreadyErased",
    "ApprovalError",
    "AssetError",
    "BrandPack",
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
    "Engine",
    "ErasurePending",
    "HeaderError",
    "IdempotencyConflict",
    "InboundError",
    "KeyConfigError",
    "Message",
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
    "RenderOptions",
    "Request",
    "SandboxError",
    "Sender",
    "SenderBusy",
    "SmsTooLongError",
    "Template",
    "TemplateError",
    "TemplateSyntaxError",
    "TemporaryDeliveryError",
    "TokenError",
    "TransportUnavailable",
    "UnknownChannel",
    "UnknownLocale",
    "UnknownTemplate",
    "UnsafeFileError",
    "__version__",
    "errors",
    "load_pack",
    "load_template",
]
