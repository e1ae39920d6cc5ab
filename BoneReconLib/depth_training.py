"""Train DepthRecon's network on a limb dataset folder: resumable, deterministic, with ETA.

Loss per batch: each bone's mask by binary cross-entropy plus soft Dice (stage 1; overlapping
bones are separate channels), and on the pixels each bone covers, the L1 error of its front and
back depth (object-plane pixels, :mod:`.depth_reference`) plus the L1 error of their
pixel-to-pixel differences where both pixels are on the bone (``EDGE_WEIGHT``: keeps the
surface's slope, which the depth's own error does not). Back >= front holds by construction
(:mod:`.depth_network`). The run is laid out as the biplanar one (:mod:`.biplanar_training`):
batches and augmentation from ``numpy.random.default_rng([seed, step])``, ``checkpoint.pt``
(atomic, with the optimiser state and history) to resume, ``best.pt`` by the validation depth
error, Adam with a cosine decay. Core module (torch), no MRML.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from .biplanar_training import choose_device, collate
from .depth_network import DepthNet
from .depth_samples import DepthSamples, dataset_bones
from .errors import InputError
from .progress import ProgressCallback, as_progress
from .training_run import TrainingRun

DICE_WEIGHT = 1.0
DEPTH_WEIGHT = 0.1  # per object-plane pixel of depth error
EDGE_WEIGHT = 0.1
DEFAULT_ANATOMY = "wrist"  # the bundled networks are named "depth-<anatomy>" in the network manifest
VALIDATION_CASES = 64  # enough for choosing weights, quick; spread over the split (every subject)


def _masked_mean(values: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return (values * weight).sum() / weight.sum().clamp_min(1.0)


def losses(output: dict, batch: dict) -> dict:
    """The loss terms of one batch (see the module notes); depth errors in object-plane pixels."""
    hit = batch["hit"]
    on = (hit > 0.5).float()
    bce = F.binary_cross_entropy_with_logits(output["logits"], hit)
    probability = torch.sigmoid(output["logits"])
    overlap = (probability * hit).sum(dim=(2, 3))
    dice = 1 - ((2 * overlap + 1) / (probability.sum(dim=(2, 3)) + hit.sum(dim=(2, 3)) + 1)).mean()
    front, back = output["front"], output["front"] + output["extent"]
    depth = _masked_mean((front - batch["front"]).abs() + (back - batch["back"]).abs(), on) / 2
    edge_terms = []
    for dim in (2, 3):
        both = on.narrow(dim, 1, on.shape[dim] - 1) * on.narrow(dim, 0, on.shape[dim] - 1)
        for predicted, true in ((front, batch["front"]), (back, batch["back"])):
            difference = predicted.diff(dim=dim) - true.diff(dim=dim)
            edge_terms.append(_masked_mean(difference.abs(), both))
    edge = torch.stack(edge_terms).mean()
    total = bce + DICE_WEIGHT * dice + DEPTH_WEIGHT * depth + EDGE_WEIGHT * edge
    return dict(total=total, bce=bce, dice=dice, depth_px=depth, edge_px=edge)


@torch.no_grad()
def evaluate(model: DepthNet, samples, device, batch_size: int = 8) -> dict:
    """Mask Dice per bone (present in the split), the front/back depth MAE in mm over each bone's
    true pixels, and over pixels where that bone is the only one on the ray."""
    model.eval()
    count = len(model.bones)
    inter, sums = torch.zeros(count), torch.zeros(count)
    error, pixels = torch.zeros(count), torch.zeros(count)
    single_error, single_pixels = torch.zeros(count), torch.zeros(count)
    for start in range(0, len(samples), batch_size):
        batch = collate([samples[i] for i in range(start, min(start + batch_size, len(samples)))])
        batch = {key: value.to(device) for key, value in batch.items()}
        output = model(batch["image"])
        predicted = (torch.sigmoid(output["logits"]) > 0.5).float()
        on = (batch["hit"] > 0.5).float()
        inter += (predicted * on).sum(dim=(0, 2, 3)).cpu()
        sums += (predicted.sum(dim=(0, 2, 3)) + on.sum(dim=(0, 2, 3))).cpu()
        mm = batch["object_pixel_mm"][:, None, None, None]
        both = ((output["front"] - batch["front"]).abs() + (output["front"] + output["extent"] - batch["back"]).abs())
        both = both / 2 * mm
        single = on * (on.sum(dim=1, keepdim=True) == 1).float()
        error += (both * on).sum(dim=(0, 2, 3)).cpu()
        pixels += on.sum(dim=(0, 2, 3)).cpu()
        single_error += (both * single).sum(dim=(0, 2, 3)).cpu()
        single_pixels += single.sum(dim=(0, 2, 3)).cpu()
    model.train()
    present = sums > 0
    dice = {name: float(2 * inter[b] / sums[b]) for b, name in enumerate(model.bones) if present[b]}
    depth = {name: float(error[b] / pixels[b]) for b, name in enumerate(model.bones) if pixels[b] > 0}
    single = {name: float(single_error[b] / single_pixels[b]) for b, name in enumerate(model.bones)
              if single_pixels[b] > 0}
    mean = lambda values: float(np.mean(list(values))) if values else float("nan")  # noqa: E731
    return dict(dice=mean(dice.values()), depth_mm=mean(depth.values()), single_depth_mm=mean(single.values()),
                dice_per_bone=dice, depth_mm_per_bone=depth, single_depth_mm_per_bone=single)


def object_pixel_median(samples: DepthSamples, count: int = 50) -> float:
    """The network pixel's median width at the object plane over the first cases (inference resamples to it)."""
    return float(np.median([float(samples[i]["object_pixel_mm"]) for i in range(min(count, len(samples)))]))


def validation_indices(count: int, wanted: int = VALIDATION_CASES) -> list:
    """``wanted`` case indices spread evenly over a split of ``count`` (cases are stored subject by
    subject, so the first ones would all be one subject's)."""
    return np.linspace(0, count - 1, min(wanted, count)).round().astype(int).tolist()


def train_depth(data_dir, out_dir, steps: int = 20000, batch_size: int = 8, learning_rate: float = 1e-3,
                seed: int = 0, device: str = "auto", validate_every: int = 500, checkpoint_every: int = 100,
                size: int = 256, init=None, progress: Optional[ProgressCallback] = None) -> dict:
    """Train (or resume) into ``out_dir``; returns the history (losses, validations, timings).
    ``init``: weights to start from (a bundled network or an earlier run's best.pt: training goes
    on from there), of the same bones, size and layout; its object-plane pixel is kept."""
    report = as_progress(progress)
    if steps < 1 or batch_size < 1 or not learning_rate > 0:
        raise InputError("Steps and batch size must be at least 1 and the learning rate positive.")
    if size % 16:
        raise InputError("The network's input size must be a multiple of 16.")
    device = choose_device(device)
    bones = dataset_bones(data_dir)
    train_set = DepthSamples(data_dir, bones, "train", augment=True, seed=seed, size=size)
    validation = DepthSamples(data_dir, bones, "validation", augment=False, seed=seed, size=size)
    if not len(train_set) or not len(validation):
        raise InputError(f"{data_dir} needs cases in both its train and validation splits.")
    validation = torch.utils.data.Subset(validation, validation_indices(len(validation)))
    torch.manual_seed(seed)
    initial = load_depth_network(init, device) if init is not None else None
    if initial is not None and (initial.bones != bones or int(initial.config["size"]) != size):
        raise InputError(f"The starting weights {init} are for bones {', '.join(initial.bones)} at "
                         f"{initial.config['size']} px; this dataset has {', '.join(bones)} at {size} px.")
    pixel_mm = float(initial.config["object_pixel_mm"]) if initial is not None else object_pixel_median(validation)
    model = DepthNet(bones, size=size, object_pixel_mm=pixel_mm).to(device)
    if initial is not None:
        if initial.config != model.config:
            raise InputError(f"The starting weights {init} are of another network ({initial.config}).")
        model.load_state_dict(initial.state_dict())
    optimiser = torch.optim.Adam(model.parameters(), lr=learning_rate)
    settings = dict(data=str(Path(data_dir).resolve()), steps=steps, batch_size=batch_size,
                    learning_rate=learning_rate, seed=seed, size=size, config=model.config)
    if init is not None:
        settings["init"] = str(Path(init).resolve())
    run = TrainingRun(out_dir, settings, model, optimiser, device)
    run.resume()
    model.train()
    run.start()
    while run.step < steps:
        rng = np.random.default_rng([seed, run.step])
        train_set.epoch = run.step
        indices = rng.choice(len(train_set), size=min(batch_size, len(train_set)), replace=False)
        batch = {key: value.to(device) for key, value in collate([train_set[int(i)] for i in indices]).items()}
        run.set_learning_rate(learning_rate, steps)
        terms = losses(model(batch["image"]), batch)
        optimiser.zero_grad()
        terms["total"].backward()
        optimiser.step()
        run.step += 1
        step = run.step
        run.history["train"].append(dict(step=step, **{k: round(float(v.detach()), 5) for k, v in terms.items()}))
        if step % validate_every == 0 or step == steps:
            result = evaluate(model, validation, device)
            run.validated(result, result["depth_mm"] + 10.0 * (1.0 - result["dice"]))  # 0.1 of Dice ~ 1 mm of depth
        if step % checkpoint_every == 0 or step == steps:
            run.checkpoint()
        report(step / steps, f"step {step}/{steps}: loss {float(terms['total'].detach()):.3f}, dice loss "
               f"{float(terms['dice'].detach()):.3f}, depth {float(terms['depth_px'].detach()):.2f} px; "
               f"ETA {run.eta_minutes(steps):.1f} min")
    return run.finish()


def load_depth_network(path, device="cpu") -> DepthNet:
    """A DepthNet from a training folder's ``best.pt`` (or a bundled file of the same layout)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"The network weights {path} do not exist.")
    state = torch.load(path, map_location=device, weights_only=True)
    if not isinstance(state, dict) or "config" not in state or "model" not in state:
        raise InputError(f"{path} is not a DepthRecon network (no config and weights).")
    model = DepthNet(**state["config"])
    model.load_state_dict(state["model"])
    return model.to(device).eval()


def bundled_depth_weights(anatomy: str = DEFAULT_ANATOMY, folder=None) -> Path:
    """The hash-checked file of the bundled DepthRecon network for ``anatomy`` (manifest name ``depth-<anatomy>``)."""
    from .network_library import bundled_weights

    return bundled_weights(f"depth-{anatomy}", folder)
