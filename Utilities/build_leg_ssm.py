"""Build the bundled femur and tibia shape models (BoneReconLib/Resources/ShapeModels/Leg) from ../shared/data.

    python Utilities/build_leg_ssm.py [--out DIR] [--fibula-only]     (~10 minutes on 2 CPU cores; the fibula alone 1)

Every femur and tibia of ../shared/data/meshes/leg_staple (5 people: ICL_MRI, JIA_MRI, LHDL_CT,
MC22 left + right, TLEM2_MRI left + right; 7 femurs, 7 tibias; tibia files hold the fibula too,
the tibia is their largest piece). Each surface is brought into its own anatomical frame and left
bones are mirrored (BoneReconLib/leg_surfaces.py), so both models are of a RIGHT bone (a left one
is its mirror image). The fibula (each tibia file's second piece) gets its own model in its tibia's
frame (BoneReconLib/leg_fibula.py: fitted beside the tibia to explain its share of the images). Synthetic variation: the twist and tilt fields of BoneReconLib/leg_variation.py
(femoral anteversion, neck-shaft angle; tibial torsion, posterior slope). Leave-one-out checks leave a person's both knees out
together. The models are derived from CC BY-NC 4.0 data and carry that licence (see the folder's README).
"""

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from BoneReconLib.leg_fibula import add_fibula_model, build_fibula_model, fibula_surfaces  # noqa: E402
from BoneReconLib.leg_landmarks import LEG_LANDMARKS  # noqa: E402
from BoneReconLib.leg_surfaces import leg_bone_surfaces  # noqa: E402
from BoneReconLib.leg_variation import leg_variation  # noqa: E402
from BoneReconLib.ssm_command import run_ssm_build  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "meshes" / "leg_staple"
OUT = REPO / "BoneReconLib" / "Resources" / "ShapeModels" / "Leg"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--fibula-only", action="store_true",
                        help="only (re)build the fibula model into the folder (its femur and tibia models stay)")
    args = parser.parse_args()
    files = {bone: sorted(DATA.glob(f"*__{bone}_*.stl")) for bone in LEG_LANDMARKS}
    persons = {bone: [f.name.split("__")[0] for f in found] for bone, found in files.items()}
    if not args.fibula_only:
        surfaces = {bone: leg_bone_surfaces(files[bone], bone, persons=persons[bone]) for bone in LEG_LANDMARKS}
        entries = run_ssm_build(args.out, surfaces, landmark_rules=LEG_LANDMARKS,
                                variation_rules={bone: leg_variation for bone in LEG_LANDMARKS},
                                progress=lambda f, m: print(f"\r{100 * f:5.1f}% {m[:70]:<70}", end="", flush=True))
        print()
        for bone, entry in entries.items():
            print(f"{bone}: {entry['n_shapes']} shapes, {entry['modes']} modes, "
                  f"leave-one-person-out {entry['generalisation_mm'][-1]:.2f} mm, "
                  f"+ free-form term {entry['free_form_generalisation_mm']:.2f} mm")
    add_fibula(Path(args.out), files["tibia"], persons["tibia"])


def add_fibula(folder: Path, tibia_files, persons):
    """The fibula model written into ``folder`` and its manifest."""
    model = build_fibula_model(fibula_surfaces(tibia_files, persons=persons))
    add_fibula_model(folder, model)
    print(f"fibula: {model.info['n_shapes']} shapes, {model.n_modes} modes, {len(model.mean)} vertices, "
          f"fit {max(model.info['fit_distance_mm']):.2f} mm at most")


if __name__ == "__main__":
    main()
