"""Shape models: quality of a model folder (default: the bundled models) and instance speed.

    python benchmarks/shape_models.py [--models DIR]

Quality figures are the ones measured when the folder was built (`bonerecon ssm build` or
Utilities/build_default_ssm.py) and stored in its manifest: leave-one-out generalisation is the
mean surface distance between each real surface and the best reconstruction of it by a model
built without it (fitting error included; with synthetic variation, the person is also left out
of the level that lends its modes). Columns: the model from the real shapes alone, the shipped
model (with synthetic variation where a level has few shapes), and the shipped model plus the
free-form refinement term (posterior mean: the floor registration can reach beyond the span).
Speed: a CMA-ES-sized population, 16 instances of each of the 5 levels with poses and landmarks
(and with a free-form field), timed here (best of 20).
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
from BoneReconLib.shape_refinement import SmoothDeformation  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", help="model folder (default: the bundled models)")
    parser.add_argument("--population", type=int, default=16)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    manifest = read_manifest(args.models)["models"]
    models = load_models(args.models)
    nan = float("nan")
    print("Leave-one-out generalisation, all modes (mm, mean surface distance) and specificity (mm)")
    print(f"{'level':6s}{'shapes':>7s}{'modes':>6s}{'vertices':>9s}{'fit':>7s}{'LOO real only':>15s}"
          f"{'LOO shipped':>13s}{'LOO + free-form':>17s}{'spec. real only':>17s}{'spec. shipped':>15s}  synthetic")
    for level, entry in manifest.items():
        shipped = (entry.get("generalisation_mm") or [nan])[-1]
        real = (entry.get("real_only_generalisation_mm") or [shipped])[-1]
        specificity = entry.get("specificity_mm") or nan
        synthetic = entry.get("synthetic_variation") or {}
        kinds = [kind for kind in ("regional", "transferred") if kind in synthetic]
        print(f"{level:6s}{entry['n_shapes']:7d}{entry['modes']:6d}{entry['vertices']:9d}"
              f"{np.mean(entry['fit_distance_mm']):7.3f}{real:15.3f}{shipped:13.3f}"
              f"{(entry.get('free_form_generalisation_mm') or nan):17.3f}"
              f"{(entry.get('real_only_specificity_mm') or specificity):17.3f}{specificity:15.3f}  "
              + (" + ".join(kinds) or "none"))
    free_form = next(iter(manifest.values())).get("free_form")
    if free_form:
        print(f"free-form term: Gaussian kernel sigma {free_form['sigma_mm']} mm, amplitude "
              f"{free_form['amplitude_mm']} mm, fitted with {free_form['noise_mm']} mm residual noise")
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
    start = time.perf_counter()
    deformations = {level: SmoothDeformation.on_points(model.mean) for level, model in models.items()}
    made = time.perf_counter() - start
    weights = {level: torch.as_tensor(rng.standard_normal((n, d.n_functions, 3))) for level, d in deformations.items()}

    def refined():
        for level, model in models.items():
            coefficients, poses = inputs[level]
            fields = deformations[level].displacements(weights[level])
            model.landmark_positions(model.instances(coefficients, poses=poses, displacements=fields))

    refined()
    best = min(_timed(refined) for _ in range(20))
    print(f"Same with a free-form field each ({', '.join(str(d.n_functions) for d in deformations.values())} "
          f"functions x 3 per level): {1000 * best:.2f} ms; making the 5 bases once: {made:.2f} s")


def _timed(function):
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
