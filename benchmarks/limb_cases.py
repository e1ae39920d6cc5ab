"""Single-view training cases per minute: real knees, posed fingers and wrists, 256 x 256.

    python benchmarks/limb_cases.py [--cases 8] [--size 256]

Knees: the right legs of the five msk-STAPLE subjects in ../shared/data/meshes/leg_staple (CC BY-NC:
used as data, never copied into the repository); each case is a new random view, the envelope
is made once per subject. Fingers: the four OpenHands mean fingers (CC BY-SA), PIP and DIP
flexed at random for every case (the envelope is grown around each pose), views up to 90 deg
from PA. Wrists: the two ManskeLab subjects with a radius (GPL: used as data only; the cut
radius and ulna shafts capped), carpus flexed and deviated at random for every case. Meshes are
reduced to 20000 triangles per bone and a random realism chain is applied. Prints cases per
minute (generation into a temporary dataset folder, written and hashed as a real run would).
The myo-sim hand bones are not used: each sits in its own body frame, and assembling them
needs joint offsets the data does not hold.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from BoneReconLib.limb_dataset import generate_limb_dataset  # noqa: E402
from BoneReconLib.limb_posing import finger_from_file, finger_joints, wrist_joints  # noqa: E402
from BoneReconLib.limb_radiograph import Bone  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "meshes"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=8, help="cases per subject (default 8)")
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"needs {DATA} (the shared data folder)")
    torch.set_grad_enabled(False)
    leg = DATA / "leg_staple"
    knees = {name: [Bone.from_file(leg / f"{name}__femur_r.stl"), Bone.from_file(leg / f"{name}__tibia_r.stl")]
             for name in ("ICL_MRI", "JIA_MRI", "LHDL_CT", "MC22", "TLEM2_MRI")}
    fingers = {name: finger_from_file(DATA / "openhands_fingers" / f"mean_{name}.stl")
               for name in ("Index", "Middle", "Ring", "Little")}
    wrists = {}
    for name in ("ControlSample1_R", "ControlSample2_L"):
        wrists[name] = [Bone.from_file(path, fill_holes=True, name=path.stem.split("_")[2].lower())
                        for path in sorted((DATA / "wrist_manske").glob(f"{name}_*_Mesh.vtk"))]
    sets = [
        ("knee (5 subjects, femur + tibia)", knees, {}, 30.0),
        ("finger (4, PIP/DIP posed)", fingers, {k: finger_joints(b) for k, b in fingers.items()}, 90.0),
        ("wrist (2, carpus posed)", wrists, {k: wrist_joints(b) for k, b in wrists.items()}, 30.0),
    ]
    print(f"device: cpu ({torch.get_num_threads()} threads), {args.size} x {args.size}, {args.cases} cases per subject")
    print(f"{'set':36s}{'cases':>7s}{'s/case':>9s}{'cases/min':>11s}")
    for label, subjects, articulations, rotation in sets:
        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            manifest = generate_limb_dataset(Path(folder) / "data", subjects, args.cases, seed=0,
                                             size=(args.size, args.size), articulations=articulations,
                                             rotation_deg=rotation)
            elapsed = time.perf_counter() - start
        n = len(manifest["cases"])
        print(f"{label:36s}{n:7d}{elapsed / n:9.3f}{60.0 * n / elapsed:11.1f}")


if __name__ == "__main__":
    main()
