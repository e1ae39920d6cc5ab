"""New limb shapes from a few real ones: a random size and proportion for the whole limb, and a smooth
random bend of every bone's surface.

DepthRecon's training data has only a handful of real subjects per anatomy (three wrists, one
generic hand); a network that sees only those shapes learns them by heart. Each case's bones are
therefore changed anew: the whole set is scaled along three random perpendicular axes (log-normal,
``scale_sd``, so the bones keep their places relative to each other), then each bone is bent by
a displacement field made of ``WARP_CENTRES`` Gaussian bumps centred on its surface, of width half
the bone's size and ``warp_mm`` typical amplitude. The bumps are smooth and small against the
bone, so surfaces stay closed and do not fold (the largest displacement gradient is checked and
the field scaled down where it would approach folding). Core module (numpy), no MRML.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import List, Sequence

import numpy as np

from .limb_radiograph import Bone

WARP_CENTRES = 6
MAX_GRADIENT = 0.3  # largest allowed displacement gradient (folding starts at 1)


@dataclass(frozen=True)
class LimbVariation:
    scale_sd: float = 0.06
    warp_mm: float = 1.0

    def to_dict(self) -> dict:
        return asdict(self)


def _bend(points: np.ndarray, rng: np.random.Generator, warp_mm: float) -> np.ndarray:
    size = float(np.ptp(points, axis=0).max())
    width = 0.5 * size
    centres = points[rng.choice(len(points), size=min(WARP_CENTRES, len(points)), replace=False)]
    amplitudes = rng.normal(0.0, warp_mm, (len(centres), 3))
    # A Gaussian bump of amplitude a and width w is steepest at |a| / w * exp(-1/2): the sum bounds the field's.
    steepest = np.linalg.norm(amplitudes, axis=1).sum() / width * np.exp(-0.5)
    if steepest > MAX_GRADIENT:
        amplitudes *= MAX_GRADIENT / steepest
    squared = ((points[:, None, :] - centres[None]) ** 2).sum(axis=-1)
    return points + np.exp(-squared / (2 * width ** 2)) @ amplitudes


def vary_limb(bones: Sequence[Bone], variation: LimbVariation, rng: np.random.Generator) -> List[Bone]:
    """The bones with a new size, proportions and bent surfaces (see the module notes)."""
    centre = np.concatenate([b.points for b in bones]).mean(axis=0)
    axes = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    stretch = axes @ np.diag(np.exp(rng.normal(0.0, variation.scale_sd, 3))) @ axes.T
    varied = []
    for bone in bones:
        points = (bone.points - centre) @ stretch.T + centre
        if variation.warp_mm > 0:
            points = _bend(points, rng, variation.warp_mm)
        varied.append(Bone(bone.name, points, bone.triangles))
    return varied
