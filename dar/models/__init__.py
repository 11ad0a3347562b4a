"""Model registry: SiT sizes x patch sizes, each with any routing."""

from dar.models.sit import MODELS, PATCH_SIZES, SIZES, SiT, build_model

__all__ = ["MODELS", "PATCH_SIZES", "SIZES", "SiT", "build_model"]
