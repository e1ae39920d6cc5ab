"""GUI-free part of the BiplanarRecon module (usable from Slicer's Python console and headless)."""

from .logic import BiplanarReconLogic

__all__ = ["BiplanarReconLogic"]
