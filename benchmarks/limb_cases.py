"""Single-view training cases per minute: real knees (femur + tibia), 256 x 256.

    python benchmarks/limb_cases.py [--cases 8] [--size 256]

Knees: the right legs of the five msk-STAPLE subjects in ../shared/data/meshes/leg_staple (CC BY-NC:
used as data, never copied into the repository). Meshes are reduced to 20000 triangles per bone;
each case is a new random view, the envelope is made once per subject, and a random realism
chain is applied. Prints cases per minute (generation into a temporary dataset folder, written
and hashed as a real run would). No hand set yet: the myo-sim hand bones each sit in their own
body frame, and assembling them needs joint offsets the data does not hold.
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
    sets = {
        "knee (5 subjects, femur + tibia)": {
            name: [Bone.from_file(leg / f"{name}__femur_r.stl"), Bone.from_file(leg / f"{name}__tibia_r.stl")]
            for name in ("ICL_MRI", "JIA_MRI", "LHDL_CT", "MC22", "TLEM2_MRI")},
    }
    print(f"device: cpu ({torch.get_num_threads()} threads), {args.size} x {args.size}, {args.cases} cases per subject")
    print(f"{'set':36s}{'cases':>7s}{'s/case':>9s}{'cases/min':>11s}")
    for label, subjects in sets.items():
        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            manifest = generate_limb_dataset(Path(folder) / "data", subjects, args.cases, seed=0,
                                             size=(args.size, args.size))
            elapsed = time.perf_counter() - start
        n = len(manifest["cases"])
        print(f"{label:36s}{n:7d}{elapsed / n:9.3f}{60.0 * n / elapsed:11.1f}")


if __name__ == "__main__":
    main()
