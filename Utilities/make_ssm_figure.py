"""Regenerate docs/ssm-variation.png: the synthetic regional variation of the bundled L4 model.

Each row is one regional field at -3 (blue) and +3 (orange) standard deviations on the L4 mean
(rows from the top: pedicle length, spinous process length, spinous inclination, endplate wedging,
transverse process length both sides), seen from the left (lateral) and from behind.
Run from the repository root: python Utilities/make_ssm_figure.py
"""

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from BoneReconLib.app_context import new_headless_context  # noqa: E402
from BoneReconLib.mesh_io import polydata_from_arrays  # noqa: E402
from BoneReconLib.screenshot import render_views, write_png  # noqa: E402
from BoneReconLib.shape_model_library import load_models  # noqa: E402
from BoneReconLib.synthetic_variation import regional_variation  # noqa: E402

ROWS = (["pedicle length"], ["spinous process length"], ["spinous process inclination"], ["endplate wedging"],
        ["left transverse process length", "right transverse process length"])
COLOURS = {-3.0: (0.25, 0.45, 0.95), 3.0: (1.0, 0.55, 0.1)}
ROW_SPACING = 60.0  # mm between rows (stacked along z, so both views separate them)


def main():
    model = load_models()["L4"]
    variation = regional_variation(model)
    fields = dict(zip(variation.names, variation.fields))
    context = new_headless_context()
    try:
        for row, names in enumerate(ROWS):
            field = sum(fields[name] for name in names)
            for sign, colour in COLOURS.items():
                points = model.mean + sign * field
                points[:, 2] -= row * ROW_SPACING
                node = context.scene.AddNewNodeByClass("vtkMRMLModelNode", f"{names[0]} {sign:+g} sd")
                node.SetAndObservePolyData(polydata_from_arrays(points, model.triangles))
                node.CreateDefaultDisplayNodes()
                node.GetDisplayNode().SetColor(*colour)
                node.GetDisplayNode().SetOpacity(0.55)
        picture = render_views(context, ("Left", "Posterior"), size=(400, 760), zoom=1.9)
    finally:
        context.close()
    path = write_png(picture, REPO / "docs" / "ssm-variation.png")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
