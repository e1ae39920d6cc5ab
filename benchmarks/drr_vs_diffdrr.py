"""BoneRecon's DRR renderer against DiffDRR 0.6.1 on the same CT, detector and pose.

Installs nothing. To run the comparison, add DiffDRR to the environment (its rendering path
needs neither torchvision nor timm):

    pip install --no-deps diffdrr==0.6.1
    pip install fastcore einops torchio pandas
    python benchmarks/drr_vs_diffdrr.py [--shared-data ../shared/data] [--threads 2] [--device cpu|cuda]

Both renderers get DiffDRR's own volume (its HU -> density conversion), its affine and the exact
source and pixel positions of its detector, so the images must agree; the script prints ms per DRR,
the speed ratio and the relative mean absolute difference. Then a batched case (16 poses x 2
views, BoneRecon only; DiffDRR's per-DRR time is the reference) and a per-vertebra
region-of-interest case (the volume cropped to L1's bounding box).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from BoneReconLib.drr import Volume, render_attenuation  # noqa: E402
from BoneReconLib.geometry import View  # noqa: E402


def timed(fn, repeats):
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def view_from_diffdrr(source, target, height, width, name="AP") -> View:
    """Our View with exactly DiffDRR's source and pixel centres (target rows are h * width + w)."""
    s = source.reshape(-1, 3)[0].double().cpu().numpy()
    t = target.reshape(height, width, 3).double().cpu().numpy()
    du, dv = t[0, 1] - t[0, 0], t[1, 0] - t[0, 0]
    return View(name, source=s, detector_center=(t[0, 0] + t[-1, -1]) / 2, detector_u=du / np.linalg.norm(du),
                detector_v=dv / np.linalg.norm(dv), pixel_spacing=[np.linalg.norm(du), np.linalg.norm(dv)],
                size=[width, height])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared-data", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        from diffdrr.data import read
        from diffdrr.drr import DRR
    except ImportError:
        print("DiffDRR is not installed; see the instructions at the top of this file.")
        return 2
    data = Path(args.shared_data) / "ct" / "diffdrr_chest"
    device = torch.device(args.device)
    height = width = 256
    subject = read(data / "cxr.nii.gz", data / "mask.nii.gz", orientation="AP")
    rotations = torch.tensor([[0.0, 0.0, 0.0]], device=device)
    translations = torch.tensor([[0.0, 850.0, 0.0]], device=device)
    pose_kwargs = dict(parameterization="euler_angles", convention="ZXY")

    print(f"device: {device} ({torch.get_num_threads()} CPU threads), torch {torch.__version__}")
    print(f"CT: {data / 'cxr.nii.gz'} {tuple(subject.volume.shape[1:])}, detector {width}x{height} at 1.5 mm, "
          "source-detector 1020 mm, AP")

    results = {}
    for renderer in ("trilinear", "siddon"):
        drr = DRR(subject, sdd=1020.0, height=height, delx=1.5, renderer=renderer).to(device)
        with torch.no_grad():
            drr(rotations, translations, **pose_kwargs)  # warm-up
            repeats = args.repeats if renderer == "trilinear" else 1
            seconds, image = timed(lambda: drr(rotations, translations, **pose_kwargs), repeats)
        results[renderer] = (seconds, image[0, 0].double().cpu())
    drr = DRR(subject, sdd=1020.0, height=height, delx=1.5, renderer="trilinear").to(device)
    from diffdrr.pose import convert

    pose = convert(rotations, translations, **pose_kwargs)
    source, target = drr.detector(pose, None)
    view = view_from_diffdrr(source, target, height, width)
    volume = Volume(drr.density.permute(2, 1, 0).contiguous().to(device), drr._affine[0].double().cpu().numpy())
    with torch.no_grad():
        render_attenuation(volume, [view])  # warm-up (builds the slice stacks once)
        ours_s, ours = timed(lambda: render_attenuation(volume, [view]), max(args.repeats, 5))
    ours = ours[0, 0].double().cpu()
    cropped = volume.crop_to_content()  # drop all-air slabs: rays only sample what they can hit
    with torch.no_grad():
        render_attenuation(cropped, [view])
        cropped_s, cropped_image = timed(lambda: render_attenuation(cropped, [view]), max(args.repeats, 5))
    cropped_image = cropped_image[0, 0].double().cpu()

    reference = results["trilinear"][0]
    print("\nSingle DRR (speed ratio = DiffDRR trilinear time / row time; rel. MAD = mean |row - BoneRecon| / "
          "mean |row|)")
    print(f"{'renderer':<24}{'ms/DRR':>10}{'speed ratio':>14}{'rel. MAD':>12}")
    print(f"{'BoneRecon (Joseph)':<24}{1000 * ours_s:>10.1f}{reference / ours_s:>14.2f}{0.0:>12.4%}")
    mad = float((cropped_image - ours).abs().mean() / ours.abs().mean())
    print(f"{'BoneRecon, air cropped':<24}{1000 * cropped_s:>10.1f}{reference / cropped_s:>14.2f}{mad:>12.4%}"
          f"   ({tuple(cropped.data.shape)} of {tuple(volume.data.shape)} voxels)")
    for renderer, (seconds, image) in results.items():
        mad = float((image - ours).abs().mean() / image.abs().mean())
        print(f"{'DiffDRR ' + renderer:<24}{1000 * seconds:>10.1f}{reference / seconds:>14.2f}{mad:>12.4%}")

    # Batched: a CMA-ES-like population of 16 poses x 2 views (AP + the same detector turned 90 deg).
    turn = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    lateral = View("LAT", source=turn @ view.source, detector_center=turn @ view.detector_center,
                   detector_u=turn @ view.detector_u, detector_v=turn @ view.detector_v,
                   pixel_spacing=view.pixel_spacing, size=view.size)
    rng = np.random.default_rng(0)
    poses = np.repeat(np.eye(4)[None], 16, axis=0)
    for n in range(16):
        a = np.radians(rng.uniform(-5, 5))
        poses[n, :3, :3] = [[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]]
        poses[n, :3, 3] = rng.uniform(-10, 10, size=3)
    with torch.no_grad():
        batch_s, batch = timed(lambda: render_attenuation(volume, [view, lateral], poses=poses), 1)
    shape = volume.data.shape
    samples = 16 * height * width * (shape[1] + shape[2])  # AP crosses j slices, LAT crosses i slices
    per_drr = batch_s / 32
    print("\nBatched: 16 poses x 2 views in one call")
    print(f"{'renderer':<24}{'ms/DRR':>10}{'speed ratio':>14}{'Msamples/s':>12}")
    rate = samples / batch_s / 1e6
    print(f"{'BoneRecon (Joseph)':<24}{1000 * per_drr:>10.1f}{reference / per_drr:>14.2f}{rate:>12.1f}")
    print(f"{'DiffDRR trilinear (1)':<24}{1000 * reference:>10.1f}{1.0:>14.2f}{'':>12}")
    print("(1) DiffDRR's single-DRR time; a 32-DRR trilinear batch does not fit its memory-hungry sampling here.")
    # What bounds the batched rate on this machine: torch's bilinear sampling kernel alone (same slice
    # stack, precomputed coherent positions, cache-sized steps) and reading the volume from memory.
    slices = volume.slices(1)
    rows = torch.linspace(-0.9, 0.9, height, device=device)
    grid_y, grid_x = torch.meshgrid(rows, rows, indexing="ij")
    grid = torch.stack([grid_x.flatten(), grid_y.flatten()], dim=-1)[None, :, None, :].expand(16, -1, -1, -1)
    grid = grid.contiguous()

    def kernel_only():
        for s0 in range(0, slices.shape[0] - 15, 16):
            torch.nn.functional.grid_sample(slices[s0:s0 + 16], grid, align_corners=True).sum(dim=0)

    with torch.no_grad():
        kernel_s, _ = timed(kernel_only, 1)
        read_s, _ = timed(lambda: volume.data.sum(), 3)
    kernel_rate = (slices.shape[0] // 16) * 16 * height * width / kernel_s / 1e6
    bandwidth = volume.data.numel() * volume.data.element_size() / read_s / 1e9
    print(f"Limits here: the bilinear sampling kernel alone {kernel_rate:.1f} Msamples/s; memory read "
          f"{bandwidth:.1f} GB/s (the batched DRRs read the volume at "
          f"{32 * volume.data.numel() * volume.data.element_size() / batch_s / 1e9:.2f} GB/s: compute-bound)")
    assert batch.shape == (16, 2, height, width)

    # Region of interest: L1 only (TotalSegmentator id 31 in the mask), crop with a 3-voxel margin.
    mask = subject.mask.data[0].permute(2, 1, 0)  # [k, j, i] like our volume
    where = torch.nonzero(mask == 31)
    lower = (where.min(dim=0).values - 3).clamp(min=0).tolist()
    upper = (where.max(dim=0).values + 4).tolist()
    roi = volume.crop(lower[::-1], upper[::-1])
    with torch.no_grad():
        render_attenuation(roi, [view])
        roi_s, _ = timed(lambda: render_attenuation(roi, [view]), max(args.repeats, 5))
    print(f"\nRegion of interest: L1 box {tuple(roi.data.shape)} voxels of {tuple(volume.data.shape)}")
    print(f"{'renderer':<24}{'ms/DRR':>10}{'speed ratio':>14}")
    print(f"{'BoneRecon ROI':<24}{1000 * roi_s:>10.1f}{reference / roi_s:>14.2f}")
    print(f"{'BoneRecon full volume':<24}{1000 * ours_s:>10.1f}{reference / ours_s:>14.2f}")
    print(f"{'DiffDRR trilinear full':<24}{1000 * reference:>10.1f}{1.0:>14.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
