def test_parameter_node_is_one_singleton_per_module(context):
    from BiplanarReconLib import BiplanarReconLogic
    from DepthReconLib import DepthReconLogic

    biplanar = BiplanarReconLogic(context.scene).getParameterNode()
    assert BiplanarReconLogic(context.scene).getParameterNode() is biplanar
    assert biplanar.GetSingletonTag() == "BiplanarRecon" and biplanar.GetAttribute("ModuleName") == "BiplanarRecon"
    depth = DepthReconLogic(context.scene).getParameterNode()
    assert depth is not biplanar and depth.GetSingletonTag() == "DepthRecon"
    assert context.scene.GetNumberOfNodesByClass("vtkMRMLScriptedModuleNode") == 2


def test_logic_defaults_to_the_process_scene():
    import slicer
    from BiplanarReconLib import BiplanarReconLogic
    from BoneReconLib.app_context import get_context

    context = get_context()
    try:
        assert BiplanarReconLogic().scene is context.scene is slicer.mrmlScene
    finally:
        context.close()
