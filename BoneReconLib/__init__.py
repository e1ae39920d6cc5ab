"""BoneRecon shared library: geometry, rendering, shape models, MRML adapters and the CLI.

Importing this package is cheap and never imports Qt; heavy modules (torch, vtk, slicer) are
imported by the submodules that need them.
"""

__version__ = "0.1.0"
