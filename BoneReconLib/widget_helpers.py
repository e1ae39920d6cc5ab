"""What every BoneRecon module panel does the same way (GUI layer, used inside Slicer only).

- Parameter node plumbing of Slicer's scripted-module template: the module's
  ``@parameterNodeWrapper`` node is bound to the ``.ui`` (``SlicerParameterName``), re-created when
  the scene closes, released when the user leaves the module.
- Apply / Cancel / progress: the logic runs with a Progress callback that updates the bar and lets
  Qt process events, so Slicer stays responsive and Cancel works; on cancel or error the logic has
  already removed what it added, and the user gets one sentence.

Imports no Qt module directly (uses ``slicer.app`` and ``slicer.util``).
"""

import logging

from .errors import InputError
from .progress import Cancelled, Progress


class BoneReconWidgetMixin:
    """Mix in before ScriptedLoadableModuleWidget and VTKObservationMixin.

    The module widget sets ``parameterNodeClass``, ``requiredInput`` (the parameter that enables
    Apply, a node of class ``requiredInputClass``), the two tool tips, and calls
    :meth:`setupModuleWidget` from ``setup()``. Its ``.ui`` has applyButton, cancelButton,
    progressBar and statusLabel.
    """

    parameterNodeClass = None
    requiredInput = "inputLabelMap"
    requiredInputClass = "vtkMRMLLabelMapVolumeNode"
    applyToolTip = "Run."
    missingInputToolTip = "Select the input."

    _parameterNode = None
    _parameterNodeGuiTag = None
    _running = None  # Progress of the operation in flight

    def setupModuleWidget(self, uiWidget):
        import slicer

        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancelButton)
        self.initializeParameterNode()

    # --- parameter node ---------------------------------------------------------------------

    def cleanup(self):
        self.removeObservers()

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        self.setParameterNode(None)

    def onSceneStartClose(self, caller, event):
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self):
        import slicer

        self.setParameterNode(self.parameterNodeClass(self.logic.getParameterNode()))
        if not getattr(self._parameterNode, self.requiredInput):
            first = slicer.mrmlScene.GetFirstNodeByClass(self.requiredInputClass)
            if first:
                setattr(self._parameterNode, self.requiredInput, first)

    def setParameterNode(self, inputParameterNode):
        import vtk

        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
        self._checkCanApply()

    def _checkCanApply(self, caller=None, event=None):
        hasInput = bool(self._parameterNode and getattr(self._parameterNode, self.requiredInput))
        self.ui.applyButton.enabled = hasInput and self._running is None
        self.ui.applyButton.toolTip = self.applyToolTip if hasInput else self.missingInputToolTip

    # --- Apply / Cancel / progress ----------------------------------------------------------

    def onCancelButton(self):
        if self._running is not None:
            self._running.cancel()

    def _onProgress(self, fraction, message):
        import slicer

        self.ui.progressBar.value = int(round(100 * fraction))
        self.ui.statusLabel.text = message
        slicer.app.processEvents()

    def runWithProgress(self, work, failureMessage: str,
                        cancelledMessage: str = "Cancelled; nothing was added to the scene."):
        """Call ``work(progress)``; returns its result, or None when cancelled or failed (user told)."""
        import slicer

        self._running = Progress(self._onProgress)
        self.ui.cancelButton.enabled = True
        self.ui.progressBar.visible = True
        self._checkCanApply()
        try:
            return work(self._running)
        except Cancelled:
            self.ui.statusLabel.text = cancelledMessage
        except InputError as exc:
            self.ui.statusLabel.text = str(exc)
            slicer.util.errorDisplay(str(exc))
        except Exception as exc:  # noqa: BLE001 - shown to the user, traceback in the log
            logging.exception(failureMessage)
            self.ui.statusLabel.text = failureMessage
            slicer.util.errorDisplay(f"{failureMessage} {exc}")
        finally:
            self._running = None
            self.ui.cancelButton.enabled = False
            self.ui.progressBar.visible = False
            self._checkCanApply()
        return None
