"""Brand packs: the look and the voice, loaded and validated once."""

from __future__ import annotations

from .loader import load_pack as load_pack
from .model import BrandPack as BrandPack

__all__ = ["BrandPack", "load_pack"]
