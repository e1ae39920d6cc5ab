"""GUI-free part of the DepthRecon module (usable from Slicer's Python console and headless)."""

from .logic import DepthReconLogic

__all__ = ["DepthReconLogic"]
