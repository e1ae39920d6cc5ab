"""Shape models: quality of a model folder (default: the bundled models) and instance speed.

    python benchmarks/shape_models.py [--models DIR]

Quality figures are the ones measured when the folder was built (`bonerecon ssm build` or
Utilities/build_default_ssm.py) and stored in its manifest: leave-one-out generalisation is the
mean surface distance between each real surface and the best reconstruction of it by a model
built without it (fitting error included). Speed: a CMA-ES-sized population, 16 instances of each
of the 5 levels with poses and landmarks, timed here (best of 20).
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from BoneReconLib.shape_model_library import load_models, read_manifest  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", help="model folder (default: the bundled models)")
    parser.add_argument("--population", type=int, default=16)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    manifest = read_manifest(args.models)["models"]
    models = load_models(args.models)
    print(f"{'level':6s}{'shapes':>7s}{'modes':>6s}{'vertices':>9s}{'fit mm':>8s}{'LOO mm (all modes)':>20s}"
          f"{'LOO mm (3 modes)':>18s}{'specificity mm':>16s}")
    for level, entry in manifest.items():
        loo = entry.get("generalisation_mm") or []
        print(f"{level:6s}{entry['n_shapes']:7d}{entry['modes']:6d}{entry['vertices']:9d}"
              f"{np.mean(entry['fit_distance_mm']):8.3f}{(loo[-1] if loo else float('nan')):20.3f}"
              f"{(loo[min(2, len(loo) - 1)] if loo else float('nan')):18.3f}"
              f"{(entry.get('specificity_mm') or float('nan')):16.3f}")
    rng = np.random.default_rng(0)
    n = args.population
    inputs = {level: (torch.as_tensor(rng.standard_normal((n, model.n_modes))),
                      torch.as_tensor(np.repeat(np.eye(4)[None], n, axis=0)))
              for level, model in models.items()}

    def population():
        for level, model in models.items():
            coefficients, poses = inputs[level]
            points = model.instances(coefficients, poses=poses)
            model.landmark_positions(points)

    population()
    best = min(_timed(population) for _ in range(20))
    print(f"\nInstances + landmarks for {n} x {len(models)} vertebrae ({torch.get_num_threads()} threads, float64): "
          f"{1000 * best:.2f} ms (target < 10 ms)")


def _timed(function):
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
