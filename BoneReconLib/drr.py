"""Digitally reconstructed radiographs (DRRs): line integrals of attenuation through a CT, in torch.

Method: Joseph's ray-driven projector. For each (pose, view) the ray direction's dominant voxel
axis is chosen; every ray crosses each voxel slice along that axis once, where the volume is
sampled bilinearly within the slice (zero outside it). The sum over slices times the ray length
between slices is the line integral; along the slice axis each slice stands for one voxel
thickness, so a linear attenuation field is integrated exactly. Slice-wise 2D sampling reads
memory coherently, which is what makes it fast on CPU; on CUDA the same code runs unchanged.

- Batched: N volume poses x V views in one call (a whole CMA-ES population).
- Differentiable with respect to the poses (autograd through the sampling positions); the fast
  path is ``torch.no_grad()``.
- Work scales with what the rays cross: the volume can be cropped to its non-air part or to a
  region of interest, and only the detector pixels whose rays can reach that box are computed.

Core module: numpy/torch only, no MRML.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Sequence, Tuple

import numpy as np
import torch

from .errors import InputError
from .geometry import View

# --- HU -> linear attenuation -------------------------------------------------------------------

# Mass attenuation coefficients mu/rho (cm^2/g), NIST XCOM: water and ICRU cortical bone (1.92 g/cm^3).
_ENERGIES_KEV = np.array([40.0, 50.0, 60.0, 80.0, 100.0])
_WATER_MU_RHO = np.array([0.2683, 0.2269, 0.2059, 0.1837, 0.1707])
_BONE_MU_RHO = np.array([0.6655, 0.4242, 0.3148, 0.2229, 0.1855])
BONE_DENSITY = 1.92  # g/cm^3
BONE_HU = 1900.0  # HU of cortical bone on a typical 120 kVp CT


def attenuation_coefficients(energy_kev: float) -> Tuple[float, float]:
    """(mu_water, mu_cortical_bone) in 1/mm at an effective X-ray energy (40-100 keV, log-log interpolation)."""
    if not _ENERGIES_KEV[0] <= energy_kev <= _ENERGIES_KEV[-1]:
        raise InputError(f"Effective energy must be within 40-100 keV, got {energy_kev}.")
    log_e = math.log(energy_kev)
    water = math.exp(np.interp(log_e, np.log(_ENERGIES_KEV), np.log(_WATER_MU_RHO))) / 10.0
    bone = BONE_DENSITY * math.exp(np.interp(log_e, np.log(_ENERGIES_KEV), np.log(_BONE_MU_RHO))) / 10.0
    return water, bone


def hu_to_mu(hu, energy_kev: float = 60.0):
    """Linear attenuation (1/mm) of CT numbers at the radiograph's effective energy.

    Below 0 HU voxels are mixtures of air and water: mu = mu_water * (1 + HU/1000). Above 0 HU
    they are mixtures of water and cortical bone, reaching bone at ``BONE_HU``: bone's extra
    (photoelectric) attenuation at low energy makes bone relatively brighter in a radiograph
    than its CT number alone says. Works on numpy arrays and torch tensors; never negative.
    """
    water, bone = attenuation_coefficients(energy_kev)
    lib = torch if isinstance(hu, torch.Tensor) else np
    soft = water * (1.0 + hu / 1000.0)
    hard = water + (bone - water) * hu / BONE_HU
    return lib.clip(lib.where(hu <= 0, soft, hard), 0.0, None)


# --- volumes ------------------------------------------------------------------------------------


@dataclass
class Volume:
    """A scalar volume (attenuation, 1/mm) as a torch tensor indexed [k, j, i], with its IJK-to-RAS."""

    data: torch.Tensor
    ijk_to_ras: np.ndarray  # 4x4
    _slices: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self):
        if self.data.ndim != 3 or min(self.data.shape) < 1:
            raise InputError(f"A volume must be 3D, got shape {tuple(self.data.shape)}.")
        self.ijk_to_ras = np.asarray(self.ijk_to_ras, dtype=np.float64)
        linear = self.ijk_to_ras[:3, :3]
        if self.ijk_to_ras.shape != (4, 4) or not np.all(np.isfinite(self.ijk_to_ras)):
            raise InputError("The volume's IJK-to-RAS matrix must be a finite 4x4 matrix.")
        spacing = np.linalg.norm(linear, axis=0)
        if np.any(spacing <= 1e-9) or abs(np.linalg.det(linear)) <= 1e-12:
            raise InputError(f"The volume has no valid voxel spacing (spacing {spacing.tolist()}).")

    @classmethod
    def from_numpy(cls, array_kji, ijk_to_ras, device=None, dtype=torch.float32) -> "Volume":
        return cls(torch.as_tensor(np.ascontiguousarray(array_kji), dtype=dtype, device=device), ijk_to_ras)

    def slices(self, axis: int) -> torch.Tensor:
        """The volume as a stack of 2D slices across ``axis`` (0=i, 1=j, 2=k): (n, 1, rows, cols), cached."""
        if axis not in self._slices:
            if axis == 2:  # k slices: rows j, cols i
                stack = self.data[:, None]
            elif axis == 1:  # j slices: rows k, cols i
                stack = self.data.permute(1, 0, 2)[:, None].contiguous()
            else:  # i slices: rows k, cols j
                stack = self.data.permute(2, 0, 1)[:, None].contiguous()
            self._slices[axis] = stack
        return self._slices[axis]

    def corners_ras(self) -> np.ndarray:
        """World positions (8, 3) of the corners of the box where the interpolated volume can be non-zero
        (one voxel beyond the outer voxel centres)."""
        k, j, i = self.data.shape
        corners = np.array([[a, b, c, 1.0] for a in (-1.0, i) for b in (-1.0, j) for c in (-1.0, k)])
        return (corners @ self.ijk_to_ras.T)[:, :3]

    @property
    def spacing(self) -> np.ndarray:
        return np.linalg.norm(self.ijk_to_ras[:3, :3], axis=0)

    def crop(self, lower_ijk: Sequence[int], upper_ijk: Sequence[int]) -> "Volume":
        """The sub-volume of voxels lower..upper-1 (i, j, k), same world placement."""
        (i0, j0, k0), (i1, j1, k1) = lower_ijk, upper_ijk
        shifted = self.ijk_to_ras.copy()
        shifted[:3, 3] = self.ijk_to_ras[:3, :3] @ np.array([i0, j0, k0], float) + self.ijk_to_ras[:3, 3]
        return Volume(self.data[k0:k1, j0:j1, i0:i1], shifted)

    def crop_to_content(self, threshold: float = 0.0, margin: int = 1) -> "Volume":
        """Crop away slabs where every voxel is <= threshold (air): rays then skip them."""
        inside = self.data > threshold
        if not bool(inside.any()):
            return self
        bounds = []
        for axis in (2, 1, 0):  # i, j, k
            other = tuple(a for a in range(3) if a != axis)
            nonzero = torch.nonzero(inside.any(dim=other[1]).any(dim=other[0])).flatten()
            lo = max(int(nonzero[0]) - margin, 0)
            hi = min(int(nonzero[-1]) + 1 + margin, self.data.shape[axis])
            bounds.append((lo, hi))
        return self.crop([b[0] for b in bounds], [b[1] for b in bounds])


# --- rendering ----------------------------------------------------------------------------------


def as_poses(poses, device, dtype) -> torch.Tensor:
    """Poses as an (N, 4, 4) tensor (None = identity); InputError for non-finite or singular ones."""
    if poses is None:
        return torch.eye(4, device=device, dtype=dtype)[None]
    poses = torch.as_tensor(poses, device=device, dtype=dtype)
    if poses.ndim == 2:
        poses = poses[None]
    if poses.ndim != 3 or poses.shape[-2:] != (4, 4):
        raise InputError(f"Poses must be 4x4 matrices, got shape {tuple(poses.shape)}.")
    determinants = torch.linalg.det(poses.detach()[:, :3, :3])
    bad = ~torch.isfinite(poses.detach()).all(dim=(1, 2)) | (determinants.abs() < 1e-9)
    if bool(bad.any()):
        raise InputError(f"Pose {int(torch.nonzero(bad)[0])} is not a finite, invertible 4x4 transform.")
    return poses


def render_attenuation(
    volume: Volume,
    views: Sequence[View],
    poses=None,
    max_samples_per_chunk: int = 1 << 20,
) -> torch.Tensor:
    """Line integrals of ``volume`` along every detector ray: tensor (N poses, V views, nv, nu).

    ``poses`` (N, 4, 4) move the volume in world space (x_world = pose @ x_volume_world); None =
    the volume where its IJK-to-RAS puts it. All views must share one detector size. Pixels whose
    rays miss the volume are exactly 0. ``max_samples_per_chunk`` bounds the samples taken in one
    step: about 1M keeps each step's sampling grid and samples in the CPU caches (2.7x faster
    than 8M on the benchmark CT, where fresh memory dominated).
    """
    views = list(views)
    if not views:
        raise InputError("At least one view is needed to render.")
    if len({v.size for v in views}) != 1:
        raise InputError("All views of one render call must have the same detector size.")
    data = volume.data
    device, dtype = data.device, data.dtype
    poses = as_poses(poses, device, dtype)
    nu, nv = views[0].size
    n_poses, n_views = poses.shape[0], len(views)

    # Pixels and sources in world coordinates (float64 on the host, then to the device).
    targets = torch.as_tensor(np.stack([v.pixel_to_world(*np.meshgrid(np.arange(nu), np.arange(nv)))
                                        for v in views]), device=device, dtype=dtype)  # (V, nv, nu, 3)
    sources = torch.as_tensor(np.stack([v.source for v in views]), device=device, dtype=dtype)  # (V, 3)

    # World -> IJK for every pose: A = inverse(ijk_to_ras) @ inverse(pose)
    ras_to_ijk = torch.as_tensor(np.linalg.inv(volume.ijk_to_ras), device=device, dtype=dtype)
    to_ijk = ras_to_ijk @ torch.linalg.inv(poses)  # (N, 4, 4)
    rot, shift = to_ijk[:, None, :3, :3], to_ijk[:, None, :3, 3]
    src = (rot @ sources[None, :, :, None])[..., 0] + shift  # (N, V, 3)
    tgt = torch.einsum("nvab,vyxb->nvyxa", rot, targets) + shift[:, :, None, None, :]  # (N, V, nv, nu, 3)
    direction = tgt - src[:, :, None, None, :]
    world_length = (targets - sources[:, None, None, :]).norm(dim=-1)  # (V, nv, nu): source->pixel in mm

    out = torch.zeros((n_poses, n_views, nv, nu), device=device, dtype=dtype)
    corners = volume.corners_ras()
    poses_np = poses.detach().cpu().double().numpy()
    for n in range(n_poses):
        moved = corners @ poses_np[n, :3, :3].T + poses_np[n, :3, 3]
        for v, view in enumerate(views):
            window = detector_window(view, moved)
            if window is None:
                continue
            (j0, j1), (i0, i1) = window
            d = direction[n, v, j0:j1, i0:i1]
            axis = int(torch.argmax(d.detach().abs().mean(dim=(0, 1))))
            out[n, v, j0:j1, i0:i1] = _joseph(volume, src[n, v], d, world_length[v, j0:j1, i0:i1], axis,
                                              max_samples_per_chunk)
    return out


def detector_window(view: View, corners: np.ndarray):
    """Pixel window ((j0, j1), (i0, i1)) that rays through a box can reach; None if it misses the detector."""
    nu, nv = view.size
    ij, _ = view.project(corners)
    if np.any(~np.isfinite(ij)):  # part of the box is level with or behind the source: all pixels
        return (0, nv), (0, nu)
    i0, j0 = np.floor(ij.min(axis=0)).astype(int) - 1
    i1, j1 = np.ceil(ij.max(axis=0)).astype(int) + 2
    i0, i1, j0, j1 = max(i0, 0), min(i1, nu), max(j0, 0), min(j1, nv)
    if i0 >= i1 or j0 >= j1:
        return None
    return (j0, j1), (i0, i1)


def _joseph(volume, src, d, length_mm, axis, max_samples):
    """Line integrals for one (pose, view): src (3,) and d (nv, nu, 3) = source -> pixel, both in IJK."""
    data = volume.data
    shape_ijk = (data.shape[2], data.shape[1], data.shape[0])
    nv, nu, _ = d.shape
    cols_axis, rows_axis = [a for a in range(3) if a != axis]  # axis 2: (i, j); 1: (i, k); 0: (j, k)
    slices = volume.slices(axis)
    n_slices = shape_ijk[axis]
    d = d.reshape(-1, 3)
    da = d[:, axis]
    da = torch.where(da.abs() < 1e-12, torch.full_like(da, 1e-12), da)
    # The ray meets slice s at t = (s - src_a) / d_a; there its in-plane position is affine in s:
    # position = src + t d. In grid_sample's normalised coordinates: g = offset + s * slope.
    scale = torch.tensor([2.0 / max(shape_ijk[cols_axis] - 1, 1), 2.0 / max(shape_ijk[rows_axis] - 1, 1)],
                         device=data.device, dtype=data.dtype)
    in_plane = torch.stack([d[:, cols_axis], d[:, rows_axis]], dim=-1) / da[:, None]  # (R, 2) per unit s
    start = torch.stack([src[cols_axis], src[rows_axis]]) - src[axis] * in_plane  # position at s = 0
    offset = start * scale - 1.0
    slope = in_plane * scale
    # Slices between the source and the detector only (t in (0, 1)); usually all of them.
    behind = bool(((src[axis] - 0.5) < n_slices) and (src[axis] + 0.5 > 0)) or bool(
        torch.any(((src[axis] + da - 0.5) < n_slices) & ((src[axis] + da + 0.5) > 0)))
    total = torch.zeros(d.shape[0], device=data.device, dtype=data.dtype)
    chunk = max(1, min(n_slices, max_samples // max(d.shape[0], 1)))
    for s0 in range(0, n_slices, chunk):
        s = torch.arange(s0, min(s0 + chunk, n_slices), device=data.device, dtype=data.dtype)
        grid = torch.addcmul(offset.expand(len(s), -1, -1), s[:, None, None], slope)  # (S, R, 2)
        samples = torch.nn.functional.grid_sample(
            slices[s0:s0 + len(s)], grid[:, :, None, :], mode="bilinear", padding_mode="zeros", align_corners=True
        )[:, 0, :, 0]
        if behind:
            t = (s[:, None] - src[axis]) / da[None, :]
            samples = samples * ((t > 0) & (t < 1))
        total = total + samples.sum(dim=0)
    step = length_mm.reshape(-1) / da.abs()  # world length of the ray between two slices
    return (total * step).reshape(nv, nu)


def radiograph_from_attenuation(attenuation: torch.Tensor, window: Optional[float] = None, gamma: float = 1.0,
                                photons: Optional[float] = None,
                                generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """A processed, bone-bright radiograph in [0, 1] from line integrals (..., nv, nu).

    Like a digital detector's log processing: the image is -log(transmitted fraction), which is the
    line integral itself without noise, divided by ``window`` (the line integral shown as white;
    default: each image's largest one), then raised to ``gamma``. ``photons``: mean detected
    photons per pixel without attenuation, for Poisson quantum noise (None = no noise).
    """
    log_image = attenuation
    if photons is not None:
        if photons <= 0:
            raise InputError("The photon count must be positive.")
        counts = torch.poisson(torch.exp(-attenuation) * photons, generator=generator)
        log_image = -torch.log(counts.clamp(min=0.5) / photons)  # half a photon where none arrived
    if window is None:
        window = attenuation.detach().flatten(-2).amax(dim=-1).clamp(min=1e-12)[..., None, None]
    elif window <= 0:
        raise InputError("The display window must be positive.")
    image = (log_image / window).clamp(0.0, 1.0)
    return image if gamma == 1.0 else image ** gamma


def render_labels(
    volume: Volume,
    labels_kji,
    values: Sequence[int],
    views: Sequence[View],
    poses=None,
    margin: int = 1,
) -> torch.Tensor:
    """Each label's own DRR (its voxels' attenuation, everything else removed): (L, N, V, nv, nu).

    ``labels_kji`` is an integer array on the volume's grid. Each label is rendered from the
    volume cropped to the label's bounding box (plus ``margin`` voxels), so the cost scales with
    the label's size. The projector is linear: the images of labels that partition the volume sum
    to the DRR of the whole volume.
    """
    labels = torch.as_tensor(np.asarray(labels_kji), device=volume.data.device)
    if tuple(labels.shape) != tuple(volume.data.shape):
        raise InputError(f"The label map has shape {tuple(labels.shape)} but the volume {tuple(volume.data.shape)}.")
    images = []
    for value in values:
        inside = labels == int(value)
        where = torch.nonzero(inside)
        if where.numel() == 0:
            raise InputError(f"Label {value} is absent from the label map.")
        lower = (where.min(dim=0).values - margin).clamp(min=0)
        upper = torch.minimum(where.max(dim=0).values + 1 + margin, torch.tensor(labels.shape, device=labels.device))
        (k0, j0, i0), (k1, j1, i1) = lower.tolist(), upper.tolist()
        box = volume.crop((i0, j0, k0), (i1, j1, k1))
        masked = Volume(box.data * inside[k0:k1, j0:j1, i0:i1], box.ijk_to_ras)
        images.append(render_attenuation(masked, views, poses))
    return torch.stack(images)
