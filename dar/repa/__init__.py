"""REPA: projector, alignment loss, hidden-state capture and frozen target encoders."""

from dar.repa.align import REPA_STATES, HiddenCapture, alignment_loss, build_projector
from dar.repa.encoders import ENCODERS, build_encoder

__all__ = ["ENCODERS", "REPA_STATES", "HiddenCapture", "alignment_loss", "build_encoder", "build_projector"]
