"""DepthRecon: one radiograph -> bone mask + front/back depth maps -> 3D bone surfaces.

Slicer-facing shell only (module description, widget, self-test). All computation is in
``DepthReconLib`` and ``BoneReconLib``, which run without Qt and headless.
"""

import os
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import slicer
from slicer import vtkMRMLLabelMapVolumeNode
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

# Developer set-up (module folders added in Application Settings > Modules): the shared
# BoneReconLib package sits beside the module folders, not inside them. An installed extension
# has it next to the module files already.
_repositoryRoot = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.isdir(os.path.join(_repositoryRoot, "BoneReconLib")) and _repositoryRoot not in sys.path:
    sys.path.append(_repositoryRoot)

from DepthReconLib import DepthReconLogic  # noqa: E402,F401  (re-exported: GUI-free logic)
from BoneReconLib.widget_helpers import BoneReconWidgetMixin  # noqa: E402


class DepthRecon(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "Depth Recon"
        self.parent.categories = ["BoneRecon"]
        self.parent.dependencies = []
        self.parent.contributors = ["BoneRecon developers"]
        self.parent.helpText = (
            "Bones (hand, wrist, forearm, knee) from one radiograph through per-pixel front/back "
            "depth maps. Today the module builds one surface model per bone of a CT label map; "
            "the radiograph reconstruction follows. See the project README."
        )
        self.parent.acknowledgementText = "Part of the BoneRecon extension."


@parameterNodeWrapper
class DepthReconParameterNode:
    """Module settings, saved with the scene."""

    inputLabelMap: vtkMRMLLabelMapVolumeNode
    smoothing: Annotated[float, WithinRange(0.0, 1.0)] = 0.5


class DepthReconWidget(BoneReconWidgetMixin, ScriptedLoadableModuleWidget, VTKObservationMixin):
    parameterNodeClass = DepthReconParameterNode
    applyToolTip = "Build one surface model per label."
    missingInputToolTip = "Select a bone label map."

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        self.logic = DepthReconLogic()
        self.setupModuleWidget(slicer.util.loadUI(self.resourcePath("UI/DepthRecon.ui")))

    def onApplyButton(self):
        params = self._parameterNode
        models = self.runWithProgress(
            lambda progress: self.logic.createBoneModels(
                params.inputLabelMap, smoothing=params.smoothing, progress=progress
            )[1],
            "Failed to build the bone models.",
        )
        if models is not None:
            self.ui.statusLabel.text = "Models: " + ", ".join(models)


class DepthReconTest(ScriptedLoadableModuleTest):
    """Runs the same self-tests as the headless pytest suite, on Slicer's own scene."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        from DepthReconLib.selftests import SELF_TESTS
        from BoneReconLib.app_context import get_context

        for test in SELF_TESTS:
            self.setUp()
            self.delayDisplay(f"Running {test.__name__}")
            with tempfile.TemporaryDirectory() as tmp:
                test(get_context(), Path(tmp))
        self.delayDisplay("DepthRecon self-tests passed")
