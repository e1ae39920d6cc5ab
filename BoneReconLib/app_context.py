"""The MRML application context: one scene plus the logics MRML needs to work fully.

Inside 3D Slicer the application already owns all of this and :func:`get_context` simply wraps
``slicer.mrmlScene`` and the application's module logics. Outside Slicer (the ``slicer-core``
wheel: MRML without Qt) :func:`get_context` builds the same set once and sets
``slicer.mrmlScene``, so logic code is written once against the MRML API:

- application logic with the default colour nodes (label colours, segment colours);
- subject hierarchy logic, and the item bookkeeping that Slicer's Qt plugins would otherwise do
  (every data node gets a subject-hierarchy item, so folders and exports work);
- segmentations logic (label map import, closed-surface conversion, export to models);
- markups logic (markups storage, so landmarks are written into scenes);
- remote-IO and data-IO logics, which ``.mrb`` reading and writing need.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from typing import Any, Optional

import vtk

_context: Optional["MRMLContext"] = None


def in_slicer_application() -> bool:
    """True when running inside the 3D Slicer application (not the headless wheel)."""
    import slicer

    return getattr(slicer, "app", None) is not None


@dataclass
class MRMLContext:
    """A scene and the logics attached to it. Keep a reference for as long as the scene is used."""

    scene: Any
    application_logic: Any
    segmentations_logic: Any
    markups_logic: Any
    subject_hierarchy_logic: Any
    headless: bool
    _keep_alive: list = field(default_factory=list, repr=False)
    _cache_dir: Optional[tempfile.TemporaryDirectory] = field(default=None, repr=False)

    def close(self) -> None:
        """Release a headless context (clears the scene, removes the IO cache folder)."""
        global _context
        if not self.headless:
            return
        self.scene.Clear(True)
        self._keep_alive.clear()
        if self._cache_dir is not None:
            self._cache_dir.cleanup()
            self._cache_dir = None
        if _context is self:
            import slicer

            _context = None
            slicer.mrmlScene = None


def get_context() -> MRMLContext:
    """The application's context in Slicer; a process-wide headless context elsewhere."""
    global _context
    if _context is not None:
        return _context
    if in_slicer_application():
        _context = _slicer_application_context()
    else:
        import slicer

        _context = new_headless_context()
        slicer.mrmlScene = _context.scene
    return _context


def new_headless_context() -> MRMLContext:
    """A fresh, independent headless scene with all logics (e.g. to reload a saved ``.mrb``).

    Does not touch ``slicer.mrmlScene``; call :meth:`MRMLContext.close` when done.
    """
    import slicer

    scene = slicer.vtkMRMLScene()
    app_logic = slicer.vtkSlicerApplicationLogic()
    app_logic.SetMRMLScene(scene)
    app_logic.GetColorLogic().SetMRMLScene(scene)
    app_logic.GetColorLogic().AddDefaultColorNodes()
    app_logic.SetSliceLogics(vtk.vtkCollection())
    app_logic.SetViewLogics(vtk.vtkCollection())

    def attach(logic, module_name):
        logic.SetMRMLScene(scene)
        logic.SetMRMLApplicationLogic(app_logic)
        app_logic.SetModuleLogic(module_name, logic)
        return logic

    sh_logic = attach(slicer.vtkSlicerSubjectHierarchyModuleLogic(), "SubjectHierarchy")
    seg_logic = attach(slicer.vtkSlicerSegmentationsModuleLogic(), "Segmentations")
    markups_logic = attach(slicer.vtkSlicerMarkupsLogic(), "Markups")

    cache_dir = tempfile.TemporaryDirectory(prefix="bonerecon-mrml-cache-")
    remote_io = slicer.vtkMRMLRemoteIOLogic()
    remote_io.SetMRMLScene(scene)
    remote_io.SetMRMLApplicationLogic(app_logic)
    remote_io.GetCacheManager().SetRemoteCacheDirectory(cache_dir.name)
    data_io = slicer.vtkDataIOManagerLogic()
    data_io.SetMRMLScene(scene)
    data_io.SetMRMLApplicationLogic(app_logic)
    data_io.SetAndObserveDataIOManager(remote_io.GetDataIOManager())
    remote_io.AddDataIOToScene()

    sh_bookkeeping = _SubjectHierarchyBookkeeping(scene)
    return MRMLContext(
        scene=scene,
        application_logic=app_logic,
        segmentations_logic=seg_logic,
        markups_logic=markups_logic,
        subject_hierarchy_logic=sh_logic,
        headless=True,
        _keep_alive=[remote_io, data_io, sh_bookkeeping],
        _cache_dir=cache_dir,
    )


def _slicer_application_context() -> MRMLContext:
    import slicer

    return MRMLContext(
        scene=slicer.mrmlScene,
        application_logic=slicer.app.application_logic(),
        segmentations_logic=slicer.modules.segmentations.logic(),
        markups_logic=slicer.modules.markups.logic(),
        subject_hierarchy_logic=slicer.modules.subjecthierarchy.logic(),
        headless=False,
    )


class _SubjectHierarchyBookkeeping:
    """Give every data node a subject-hierarchy item (and drop it with the node), as Slicer's Qt
    plugin logic does.

    Without items, subject-hierarchy operations (folders, segment export) warn and do nothing.
    Nodes added while a scene file is being imported already carry their items in the file;
    the rest are completed when the import ends.
    """

    def __init__(self, scene):
        self._scene = scene
        scene.AddObserver(scene.NodeAddedEvent, self._onNodeAdded)
        scene.AddObserver(scene.NodeAboutToBeRemovedEvent, self._onNodeAboutToBeRemoved)
        # Low priority: run after the subject hierarchy has merged the items stored in the file.
        scene.AddObserver(scene.EndImportEvent, self._onEndImport, -100.0)

    @staticmethod
    def _needsItem(node) -> bool:
        return (
            node.IsA("vtkMRMLStorableNode")
            and not node.IsA("vtkMRMLColorNode")
            and not node.GetHideFromEditors()
            and not node.IsA("vtkMRMLSubjectHierarchyNode")
        )

    def _addItem(self, node) -> None:
        import slicer

        if not self._needsItem(node):
            return
        sh_node = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(self._scene)
        if sh_node is None or sh_node.GetItemByDataNode(node):
            return
        sh_node.CreateItem(sh_node.GetSceneItemID(), node)

    @vtk.calldata_type(vtk.VTK_OBJECT)
    def _onNodeAdded(self, caller, event, node=None):
        if node is None or self._scene.IsImporting():
            return
        self._addItem(node)

    @vtk.calldata_type(vtk.VTK_OBJECT)
    def _onNodeAboutToBeRemoved(self, caller, event, node=None):
        import slicer

        if node is None or self._scene.IsClosing() or not node.IsA("vtkMRMLStorableNode"):
            return
        sh_node = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(self._scene)
        item = sh_node.GetItemByDataNode(node) if sh_node is not None else 0
        if item:
            sh_node.RemoveItem(item, False, False)  # keep the data node and the children

    def _onEndImport(self, caller, event):
        for i in range(self._scene.GetNumberOfNodes()):
            self._addItem(self._scene.GetNthNode(i))


def set_vtk_log_level(level: int) -> None:
    """Map a Python logging level onto VTK's own stderr logger (MRML's warnings and errors).

    The CLI silences VTK below ERROR by default (it reports failures as its own sentences) and
    shows everything with ``--verbose``.
    """

    if level <= logging.DEBUG:
        verbosity = vtk.vtkLogger.VERBOSITY_INFO
    elif level <= logging.WARNING:
        verbosity = vtk.vtkLogger.VERBOSITY_WARNING
    elif level <= logging.ERROR:
        verbosity = vtk.vtkLogger.VERBOSITY_ERROR
    else:
        verbosity = vtk.vtkLogger.VERBOSITY_OFF
    vtk.vtkLogger.SetStderrVerbosity(verbosity)
