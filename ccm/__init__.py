"""ccm: customer communication management.

One brand pack and brand-neutral templates render every channel (PDF, email,
SMS); confidential PDFs are encrypted; every message goes into one
communication record. Start with :class:`Engine`.
"""

from __future__ import annotations

from . import errors as errors
from .engine import DEFAULT as DEFAULT
from .engine import Engine as Engine
from .engine import RenderOptions as RenderOptions
from .errors import CCMError as CCMError
from .errors import ConfigError as ConfigError
from .errors import MessageError as MessageError
from .message import Message as Message
from .message import Request as Request
from .pack import BrandPack as BrandPack
from .pack import load_pack as load_pack
from .template import Template as Template
from .template import load_template as load_template

__version__ = "0.1.0"

__all__ = [
    "DEFAULT",
    "BrandPack",
    "CCMError",
    "ConfigError",
    "Engine",
    "Message",
    "MessageError",
    "RenderOptions",
    "Request",
    "Template",
    "errors",
    "load_pack",
    "load_template",
]
