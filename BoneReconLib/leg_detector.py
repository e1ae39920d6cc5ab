"""The leg feature detector: one network finds the femur's and tibia's feature points in an AP or a
lateral long-leg radiograph.

A U-Net (:class:`.depth_network.UNet`) from the radiograph (resampled to the detector's
``leg_dataset.PIXEL_MM`` pixels, ``leg_dataset.SIZE``, each image standardised: any intensity
scale) and a constant channel saying which view it is (0 AP, 1 lateral) to one heatmap per point;
sub-pixel positions by soft-argmax, a confidence per point (the probability mass within 12 mm of
it). Trained on :mod:`.leg_dataset` cases with the BiplanarRecon network's heatmap losses
(cross-entropy to a sharp Gaussian + the decoded position's error), gain/offset/noise
augmentation and left-right flips, validation on held-out cases, checkpoints, resumable,
deterministic for a seed. Core module (torch), no MRML.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .biplanar_network import decode_landmarks
from .biplanar_training import choose_device, heatmap_losses
from .depth_network import UNet
from .errors import InputError
from .geometry import View
from .leg_dataset import PIXEL_MM, SIZE, detector_input
from .leg_outlines import EXTREMES, OUTLINES, box_from_extremes, ellipse_from_extremes, flipped_order, outline_names
from .progress import ProgressCallback, as_progress
from .training_run import TrainingRun

CONFIDENCE_RADIUS_MM = 12.0
WIDTHS = (16, 32, 64, 96)
FRAME_PROBABILITY = 0.3  # share of training views cut down to a knee or lower-leg framing
STRIDE = 2  # heatmaps at half the input's resolution (6 mm pixels; soft-argmax gives sub-pixel positions)


class LegDetector(nn.Module):
    def __init__(self, points: Sequence[str], widths: Sequence[int] = WIDTHS):
        super().__init__()
        self.points = list(points)
        self.config = dict(points=self.points, widths=list(widths), pixel_mm=PIXEL_MM, size=list(SIZE), stride=STRIDE)
        self.unet = UNet(2, widths)
        self.head = nn.Conv2d(widths[0], len(self.points), 1)

    def forward(self, image: torch.Tensor, lateral: torch.Tensor) -> torch.Tensor:
        """Heatmap logits (B, K, rows / STRIDE, columns / STRIDE) of standardised images (B, rows, columns), ``lateral`` (B,) 0/1."""
        flag = lateral.to(image.dtype)[:, None, None, None].expand(-1, 1, *image.shape[-2:])
        return self.head(self.unet(F.avg_pool2d(torch.cat([image[:, None], flag], dim=1), STRIDE)))


def standardised(images: torch.Tensor) -> torch.Tensor:
    """Each image (..., rows, columns) less its mean, over its standard deviation."""
    flat = images.flatten(-2)
    return ((flat - flat.mean(-1, keepdim=True)) / flat.std(-1, keepdim=True).clamp_min(1e-6)).reshape(images.shape)


def decode(heatmaps: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """(positions (..., K, 2) in input pixels, confidences (..., K)) of heatmap logits."""
    return decode_landmarks(heatmaps, stride=STRIDE, radius_mm=CONFIDENCE_RADIUS_MM, spacing_mm=PIXEL_MM)


def detect_points(model: LegDetector, radiograph: np.ndarray, view: View, lateral: bool) -> Tuple[np.ndarray, np.ndarray]:
    """(pixels (K, 2) in the radiograph's own pixels (i, j), confidences (K,)) of every point."""
    image, (scale, offset) = detector_input(radiograph, view)
    with torch.no_grad():
        heatmaps = model(standardised(torch.as_tensor(image)[None]), torch.tensor([float(lateral)]))
        positions, confidence = decode(heatmaps)
    return positions[0].numpy() * scale + offset, confidence[0].numpy()


def points_json(model: LegDetector, radiographs, views, lateral: Optional[Sequence[bool]] = None) -> list:
    """Per view the feature point list ``leg_pipeline`` reads ({"bone", "name", "i", "j", "confidence"});
    ``lateral``: which views are lateral (default: the second of two). Outline points (a newer
    detector's boxes and ellipses) are left out: :func:`points_and_features` gives those too."""
    return points_and_features(model, radiographs, views, lateral)[0]


def points_and_features(model: LegDetector, radiographs, views, lateral: Optional[Sequence[bool]] = None):
    """(feature points per view as :func:`points_json`, {view name: boxes and ellipses as
    :func:`features_json`}) from one run of the network per view."""
    points, features = [], {}
    lateral = [v == 1 for v in range(len(views))] if lateral is None else list(lateral)
    outline = _outline_index(model)
    for v, (image, view) in enumerate(zip(radiographs, views)):
        pixels, confidence = detect_points(model, image, view, lateral=lateral[v])
        points.append([dict(bone=name.split(": ")[0], name=name.split(": ", 1)[1], i=float(p[0]), j=float(p[1]),
                            confidence=float(c)) for k, (name, p, c) in enumerate(zip(model.points, pixels, confidence))
                       if k not in outline])
        features[view.name] = _features(outline, pixels, confidence)
    return points, features


def _outline_index(model: LegDetector) -> dict:
    """{point index: (bone, outline, extreme)} of the model's outline points (none in older detectors)."""
    wanted = {name: outline for name, outline in zip(outline_names(), ((b, n, e) for b, n in OUTLINES for e in EXTREMES))}
    return {k: wanted[name] for k, name in enumerate(model.points) if name in wanted}


def features_json(model: LegDetector, radiograph, view: View, lateral: bool) -> dict:
    """The boxes and ellipses found in one view: {"boxes": {bone: {"box": [i min, j min, i max,
    j max], "confidence"}}, "ellipses": {feature: {"centre": [i, j], "axes": [major, minor]
    (semi-axes, pixels), "angle_deg", "confidence"}}}, in the radiograph's own pixels; confidence
    = the lowest of its four extremes'. Empty for a detector without outlines."""
    return points_and_features(model, [radiograph], [view], [lateral])[1][view.name]


def _features(index: dict, pixels: np.ndarray, confidence: np.ndarray) -> dict:
    """Boxes and ellipses from the outline points (``index``: :func:`_outline_index`) of one view."""
    grouped: Dict[tuple, dict] = {}
    for k, (bone, name, end) in index.items():
        grouped.setdefault((bone, name), {})[end] = (pixels[k], float(confidence[k]))
    found = {"boxes": {}, "ellipses": {}}
    for (bone, name), ends in grouped.items():
        if set(ends) != set(EXTREMES):
            continue
        extremes = np.array([ends[e][0] for e in EXTREMES])
        sure = round(min(ends[e][1] for e in EXTREMES), 3)
        if name.endswith(" box"):
            found["boxes"][bone] = dict(box=[round(float(x), 2) for x in box_from_extremes(extremes)], confidence=sure)
        else:
            centre, axes, angle = ellipse_from_extremes(extremes)
            found["ellipses"][name] = dict(bone=bone, centre=[round(float(x), 2) for x in centre],
                                           axes=[round(float(x), 2) for x in axes], angle_deg=round(angle, 1),
                                           confidence=sure)
    return found


def framed(image: torch.Tensor, points: torch.Tensor, seen: torch.Tensor, rng: np.random.Generator):
    """A long-leg image cut down as other radiographs are framed: only a window of rows kept (a
    knee, a lower leg: 300-720 mm; nothing outside, as ``detector_input`` pads) and, on some, the
    columns beyond a collimated field bright (an unexposed border); points outside become unseen."""
    rows, cols = image.shape
    image, seen = image.clone(), seen.clone()
    height = int(rng.integers(100, 241))
    top = int(rng.integers(0, max(rows - height, 0) + 1))
    image[:top], image[top + height:] = 0.0, 0.0
    seen *= ((points[:, 1] >= top) & (points[:, 1] <= top + height - 1)).to(seen.dtype)
    if rng.random() < 0.5:
        left, right = sorted(int(c) for c in rng.integers(0, cols, 2))
        if right - left > cols // 3:
            bright = float(image.max()) * float(rng.uniform(1.0, 1.5))
            image[top:top + height, :left], image[top:top + height, right + 1:] = bright, bright
            seen *= ((points[:, 0] >= left) & (points[:, 0] <= right)).to(seen.dtype)
    return image, seen


def _batch(dataset, indices, rng: Optional[np.random.Generator], flip_order=None, frame_probability: float = 0.0):
    """(images (B, rows, cols) standardised, lateral (B,), points (B, K, 2), visible (B, K)): one
    view of each case (random with ``rng``, which also augments; else both views in turn).
    ``flip_order``: the points' order in a mirrored image (:func:`.leg_outlines.flipped_order`);
    ``frame_probability``: how often a view is cut down (:func:`framed`)."""
    images, lateral, points, visible = [], [], [], []
    for index in indices:
        case = dataset[int(index)]
        views = [int(rng.integers(2))] if rng is not None else [0, 1]
        for v in views:
            image, p, seen = case["image"][v].float(), case["points"][v].float().clone(), case["visible"][v].float()
            if rng is not None:
                image = image * float(rng.uniform(0.6, 1.6)) + float(rng.normal(0.0, 0.3))
                image = image + torch.as_tensor(rng.normal(0.0, float(rng.uniform(0.0, 0.05)) * float(image.std()),
                                                           image.shape), dtype=image.dtype)
                if rng.random() < 0.5:  # a mirrored leg
                    image = image.flip(-1)
                    p[:, 0] = image.shape[-1] - 1 - p[:, 0]
                    if flip_order is not None:  # the leftmost point of an outline is now its rightmost
                        p, seen = p[flip_order], seen[flip_order]
                if rng.random() < frame_probability:
                    image, seen = framed(image, p, seen, rng)
            images.append(image)
            lateral.append(float(v))
            points.append(p)
            visible.append(seen)
    return standardised(torch.stack(images)), torch.tensor(lateral), torch.stack(points), torch.stack(visible)


def evaluate(model: LegDetector, dataset, device) -> dict:
    """Mean and median point error (mm at the detector) and the share within 3 / 6 mm, per view."""
    model.eval()
    errors = {0: [], 1: []}
    with torch.no_grad():
        for index in range(len(dataset)):
            images, lateral, points, visible = _batch(dataset, [index], None)
            found, _ = decode(model(images.to(device), lateral.to(device)))
            for v in range(2):
                seen = visible[v] > 0
                errors[v] += ((found[v].cpu() - points[v]).norm(dim=-1)[seen] * PIXEL_MM).tolist()
    model.train()
    result = {}
    for v, name in ((0, "AP"), (1, "LAT")):
        e = np.array(errors[v])
        result[name] = dict(mean_mm=float(e.mean()), median_mm=float(np.median(e)), within_3mm=float((e <= 3).mean()),
                            within_6mm=float((e <= 6).mean()))
    result["mean_mm"] = float(np.mean(errors[0] + errors[1]))
    return result


def train_leg_detector(data_dir, out_dir, steps: int = 3000, batch_size: int = 8, learning_rate: float = 2e-3,
                       seed: int = 0, device: str = "auto", validate_every: int = 500, checkpoint_every: int = 100,
                       init=None, progress: Optional[ProgressCallback] = None) -> dict:
    """Train (or resume) into ``out_dir``: checkpoint.pt, best.pt (best validation mean error), history.json.
    ``init``: weights to start from (an earlier run's best.pt or the bundled detector, for the same
    points: training goes on from there with a fresh learning-rate schedule)."""
    from .dataset_store import CaseDataset, read_manifest

    report = as_progress(progress)
    if steps < 1 or batch_size < 1 or not learning_rate > 0:
        raise InputError("Steps and batch size must be at least 1 and the learning rate positive.")
    manifest = read_manifest(data_dir)
    if manifest.get("kind") != "leg-biplanar":
        raise InputError(f"{data_dir} is not a leg dataset (bonerecon dataset leg); it is '{manifest.get('kind')}'.")
    points = manifest["description"]["points"]
    flip_order = flipped_order(points)
    train_set, validation = CaseDataset(data_dir, "train"), CaseDataset(data_dir, "validation")
    if not len(train_set) or not len(validation):
        raise InputError(f"{data_dir} needs cases in both its train and validation splits.")
    device = choose_device(device)
    torch.manual_seed(seed)
    model = LegDetector(points).to(device)
    if init is not None:
        initial = load_leg_detector(init, device)
        if initial.config != model.config:
            raise InputError(f"The starting weights {init} find other points or work on another input "
                             f"({initial.config}); this dataset needs {model.config}.")
        model.load_state_dict(initial.state_dict())
    optimiser = torch.optim.Adam(model.parameters(), lr=learning_rate)
    settings = dict(data=str(Path(data_dir).resolve()), steps=steps, batch_size=batch_size,
                    learning_rate=learning_rate, seed=seed, config=model.config)
    if init is not None:
        settings["init"] = str(Path(init).resolve())
    run = TrainingRun(out_dir, settings, model, optimiser, device)
    run.resume()
    model.train()
    run.start()
    while run.step < steps:
        rng = np.random.default_rng([seed, run.step])
        indices = rng.choice(len(train_set), size=min(batch_size, len(train_set)), replace=False)
        images, lateral, target, visible = _batch(train_set, indices, rng, flip_order, FRAME_PROBABILITY)
        run.set_learning_rate(learning_rate, steps)
        heatmaps = model(images.to(device), lateral.to(device))
        cross_entropy, position = heatmap_losses(heatmaps, target.to(device), visible.to(device), stride=STRIDE)
        loss = cross_entropy + 0.05 * position
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        run.step += 1
        step = run.step
        run.history["train"].append(dict(step=step, loss=round(float(loss.detach()), 5),
                                         position_mm=round(float(position.detach()) * PIXEL_MM, 3)))
        if step % validate_every == 0 or step == steps:
            result = evaluate(model, validation, device)
            run.validated(result, result["mean_mm"])
        if step % checkpoint_every == 0 or step == steps:
            run.checkpoint()
        report(step / steps, f"step {step}/{steps}: loss {float(loss.detach()):.3f}, points "
               f"{float(position.detach()) * PIXEL_MM:.1f} mm; ETA {run.eta_minutes(steps):.1f} min")
    return run.finish()


def load_leg_detector(path, device="cpu") -> LegDetector:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"The leg detector weights {path} do not exist.")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
        model = LegDetector(state["config"]["points"], state["config"]["widths"])
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError, ValueError, EOFError, pickle.UnpicklingError) as exc:
        raise InputError(f"{path} is not leg detector weights: {exc}.") from exc
    if state["config"] != model.config:
        raise InputError(f"{path} was made for another input ({state['config']}); this code needs {model.config}.")
    return model.to(device).eval()
