"""Brand packs: the look and the voice, loaded and validated once."""

from __future__ import annotations

from ccm.pack.loader import load_pack as load_pack
from ccm.pack.model import BrandPack as BrandPack

__all__ = ["BrandPack", "load_pack"]
