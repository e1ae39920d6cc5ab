"""Training samples for DepthRecon's network from a limb dataset folder (:mod:`.limb_dataset`).

Each case's per-bone depth maps are turned into the network's targets on the case's own pixels
(:mod:`.depth_reference`: object-plane pixels relative to the object plane), then the image and
targets are resampled together onto the network grid, with augmentation when training: a turn
(+-10 deg), a zoom (0.9-1.1, which scales the depth targets with the pixels), a shift (+-16 px),
a mirror (left and right limbs) and the biplanar network's contrast, gamma and noise. The bones
are put in the order of the network's bone list: a bone the case lacks is absent everywhere (its
mask is zero), a bone of the case that the list lacks is refused. Masks and depths are resampled
as hit-weighted averages so the silhouette's zeros do not leak into the depths.
Core module (numpy/torch), no MRML.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from .biplanar_samples import augment_intensity, network_transform, normalise, resample_covered
from .dataset_store import CaseDataset
from .depth_reference import encode_depth, object_distance, object_pixel_mm
from .errors import InputError
from .geometry import View

KEYS = ("image", "front", "back")


def dataset_bones(folder) -> list:
    """Every bone name of a limb dataset's subjects, in first-seen order."""
    from .dataset_store import read_manifest

    manifest = read_manifest(folder)
    subjects = manifest.get("description", {}).get("subjects")
    if not subjects:
        raise InputError(f"{folder} is not a limb dataset (its manifest names no subjects' bones).")
    names = []
    for bones in subjects.values():
        names.extend(b for b in bones if b not in names)
    return names


def case_targets(item: dict, bones: Sequence[str]):
    """(image (1, nv, nu), hit (B, nv, nu), front z, back z, view, object pixel mm) of one dataset
    case in ``bones`` order; z in object-plane pixels (:mod:`.depth_reference`)."""
    meta = item["meta"]
    view = View.from_dict(meta["geometry"]["views"][0])
    distance, assumed = object_distance(view)
    if assumed:
        raise InputError(f"Case {meta.get('id', '')} has no source_to_object in its view: regenerate the dataset.")
    names = list(meta["bones"])
    unknown = [n for n in names if n not in bones]
    if unknown:
        raise InputError(f"The case's bones {unknown} are not among the network's ({', '.join(bones)}).")
    shape = (len(bones),) + view.shape
    hit = torch.zeros(shape)
    front, back = torch.zeros(shape, dtype=torch.float64), torch.zeros(shape, dtype=torch.float64)
    for k, name in enumerate(names):
        b = bones.index(name)
        bone_front, bone_back = item["front"][k, 0].double(), item["back"][k, 0].double()
        on = bone_back > 0
        hit[b] = on.float()
        front[b] = torch.where(on, encode_depth(bone_front, view, distance), 0.0)
        back[b] = torch.where(on, encode_depth(bone_back, view, distance), 0.0)
    return item["image"][0:1].float(), hit, front.float(), back.float(), view, object_pixel_mm(view, distance)


class DepthSamples(torch.utils.data.Dataset):
    """Network samples of one split. Items: ``image`` (1, S, S) normalised, ``hit`` (B, S, S) in
    [0, 1], ``front``/``back`` (B, S, S) object-plane pixels of the network grid (0 off the bone),
    ``object_pixel_mm`` (the network pixel's width at the object plane). Augmentation draws from
    ``numpy.random.default_rng([seed, epoch, index])``: reproducible and resumable."""

    def __init__(self, folder, bones: Sequence[str], split: Optional[str] = "train", augment: bool = False,
                 seed: int = 0, size: int = 256):
        self.cases = CaseDataset(folder, split, keys=KEYS)
        self.bones, self.augment, self.seed, self.size, self.epoch = list(bones), augment, seed, size, 0

    def __len__(self) -> int:
        return len(self.cases)

    def __getitem__(self, index: int) -> dict:
        image, hit, front, back, view, pixel_mm = case_targets(self.cases[index], self.bones)
        rows, cols = view.shape
        turn, zoom, shift, mirror = 0.0, 1.0, (0.0, 0.0), False
        rng = np.random.default_rng([self.seed, self.epoch, index])
        if self.augment:
            turn, zoom, shift, mirror = rng.uniform(-10, 10), rng.uniform(0.9, 1.1), rng.uniform(-16, 16, 2), \
                rng.random() < 0.5
        # the network grid spans the case's field at ``size`` pixels (a plain resampling without augmentation)
        scale = max(rows, cols) / self.size
        transform = network_transform((rows, cols), (1.0, 1.0), self.size, spacing_mm=scale, turn_deg=turn,
                                      zoom=zoom, shift_px=shift)
        if mirror:
            flip = np.array([[-1.0, 0.0, self.size - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
            transform = transform @ flip
        sampled, valid = resample_covered(torch.cat([image, hit, hit * front, hit * back]), transform, self.size)
        count = len(self.bones)
        picture, weight = sampled[:1], sampled[1:1 + count]
        safe = weight.clamp_min(1e-6)
        network_zoom = zoom / scale  # network pixels per case pixel
        front = torch.where(weight > 0.5, sampled[1 + count:1 + 2 * count] / safe * network_zoom, 0.0)
        back = torch.where(weight > 0.5, sampled[1 + 2 * count:] / safe * network_zoom, 0.0)
        if self.augment:
            picture = augment_intensity(picture, rng)
        return dict(image=normalise(picture, valid), hit=weight.clamp(0, 1), front=front, back=back,
                    object_pixel_mm=torch.tensor(pixel_mm / network_zoom))
