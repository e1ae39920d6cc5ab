"""Train the BiplanarRecon network on a lumbar dataset folder: resumable, deterministic, with ETA.

Each step draws its batch and augmentation from ``numpy.random.default_rng([seed, step])``, so a
run gives the same weights whether or not it was interrupted and resumed (from
``checkpoint.pt``, written atomically every ``checkpoint_every`` steps and at the end, with the
optimiser state and the history). Loss: decomposition L1 (x ``DECOMPOSITION_WEIGHT``) + each
vertebra image's relative mass error |sum(predicted) - sum(true)| / sum(true) (x ``MASS_WEIGHT``;
L1 alone is minimised by the per-pixel median, and where a level's position is uncertain that is
zero: biplanar-1.0.0 learned empty L3-L5 images that way) + per
landmark inside the field the cross-entropy of its heatmap's softmax against a Gaussian of
``HEATMAP_SIGMA_PX`` heatmap pixels (sharp, single peaks: meaningful confidences) + the
soft-argmax position error in input pixels (x ``POSITION_WEIGHT``; it pulls the sub-pixel
position of the coarse heatmaps into place). Adam with a cosine learning-rate decay. Validation on
the dataset's validation split (no augmentation) reports the mean landmark error in mm at the
detector per view and the decomposition MAE; the best weights so far go to ``best.pt``. Core
module (torch), no MRML.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .biplanar_network import HEATMAP_SIGMA_PX, INPUT_SIZE, BiplanarNet, decode_landmarks, landmark_positions
from .biplanar_samples import BiplanarSamples
from .errors import InputError
from .landmark_refinement import training_crops
from .training_run import TrainingRun
from .progress import ProgressCallback, as_progress

DECOMPOSITION_WEIGHT = 10.0
MASS_WEIGHT = 1.0
MIN_MASS = 1.0  # a level whose true image holds less (scaled units) is not in the field: no mass term
POSITION_WEIGHT = 0.1


def choose_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for, but torch sees no CUDA device.")
    return torch.device(name)


def collate(items) -> dict:
    return {key: torch.stack([item[key] for item in items]) for key in items[0]}


class StepBatches(torch.utils.data.Dataset):
    """Batch ``k`` is step ``first + k``'s batch, drawn from ``numpy.random.default_rng([seed, step])``
    (synthetic samples, then ``real_per_batch`` real ones), so loader workers can prepare the
    steps ahead in any process and a run gives the same weights with or without them."""

    def __init__(self, train_set, real_train, batch_size: int, real_per_batch: int, seed: int, first: int,
                 steps: int):
        self.train_set, self.real_train, self.seed, self.first, self.steps = train_set, real_train, seed, first, steps
        self.batch_size, self.real_per_batch = batch_size, real_per_batch if real_train is not None else 0

    def __len__(self) -> int:
        return max(self.steps - self.first, 0)

    def draw(self, rng: np.random.Generator) -> tuple:
        """(synthetic sample indices, real sample indices) of a step, from its generator."""
        synthetic = self.batch_size - self.real_per_batch
        indices = rng.choice(len(self.train_set), size=min(synthetic, len(self.train_set)), replace=False)
        real = []
        if self.real_train is not None:
            if self.real_per_batch == 1:  # as drawn before real_per_batch existed: those runs resume unchanged
                real = [int(rng.integers(len(self.real_train)))]
            else:
                real = rng.choice(len(self.real_train), size=min(self.real_per_batch, len(self.real_train)),
                                  replace=False)
        return indices, real

    def __getitem__(self, k: int) -> dict:
        step = self.first + k
        indices, real = self.draw(np.random.default_rng([self.seed, step]))
        self.train_set.epoch = step
        items = [self.train_set[int(i)] for i in indices]
        if self.real_train is not None:
            self.real_train.epoch = step
            items.extend(self.real_train[int(i)] for i in real)
        return collate(items)


def heatmap_losses(heatmaps: torch.Tensor, landmarks: torch.Tensor, weight: torch.Tensor, stride: int):
    """(cross-entropy, soft-argmax position error in input pixels) of heatmap logits (B, K, h, w)
    made at 1/``stride`` of the input against ``landmarks`` (B, K, 2) input pixels, weighted (B, K)."""
    b, k, h, w = heatmaps.shape
    log_p = torch.log_softmax(heatmaps.reshape(b, k, h * w), dim=-1)
    rows = torch.arange(h, dtype=log_p.dtype, device=log_p.device)
    cols = torch.arange(w, dtype=log_p.dtype, device=log_p.device)
    target = (landmarks - (stride - 1) / 2) / stride  # input pixels -> heatmap pixels
    gauss_i = torch.exp(-(cols - target[..., 0:1]) ** 2 / (2 * HEATMAP_SIGMA_PX ** 2))  # (B, K, W)
    gauss_j = torch.exp(-(rows - target[..., 1:2]) ** 2 / (2 * HEATMAP_SIGMA_PX ** 2))  # (B, K, H)
    # The target is separable (rows x columns), so its cross-entropy needs no (B, K, H, W) target map.
    mass = (gauss_j.sum(dim=-1) * gauss_i.sum(dim=-1)).clamp_min(1e-12)
    expected_log_p = torch.einsum("bkr,bkrc,bkc->bk", gauss_j, log_p.reshape(b, k, h, w), gauss_i) / mass
    count = weight.sum().clamp_min(1.0)
    cross_entropy = (-expected_log_p * weight).sum() / count
    decoded, _ = decode_landmarks(heatmaps, stride)
    position = ((decoded - landmarks).norm(dim=-1) * weight).sum() / count
    return cross_entropy, position


def refiner_losses(model: BiplanarNet, batch: dict, rng: np.random.Generator) -> dict:
    """The refiner's loss terms on crops about the (moved) true centres of a batch's levels."""
    crops = training_crops(model.refiner, batch, model.levels, rng)
    output = model.refiner(crops["crops"], crops["view"])
    stride = model.refiner.stride
    cross_entropy, position = heatmap_losses(output["heatmaps"], crops["landmarks"], crops["weight"], stride)
    terms = dict(total=cross_entropy + POSITION_WEIGHT * position, cross_entropy=cross_entropy, position_px=position)
    if "decomposition" in output:
        decomposition, mass_error = decomposition_losses(output["decomposition"], crops["decomposition"],
                                                         crops["decomposition_weight"], stride ** 2)
        terms["total"] = terms["total"] + DECOMPOSITION_WEIGHT * decomposition + MASS_WEIGHT * mass_error
        terms.update(decomposition=decomposition, mass_error=mass_error)
    return terms


def decomposition_losses(predicted: torch.Tensor, true: torch.Tensor, weight: torch.Tensor, pixel_area: float = 1.0):
    """(mean absolute error, relative mass error) of vertebra images (B, L, H, W) weighted per sample
    (B,); a level whose true mass (sum x ``pixel_area``: network pixels) is below ``MIN_MASS`` is
    not in the field and has no mass term."""
    per_sample = (predicted - true).abs().mean(dim=(1, 2, 3))
    decomposition = (per_sample * weight).sum() / weight.sum().clamp_min(1.0)
    true_mass = true.sum(dim=(2, 3)) * pixel_area  # (B, L)
    counted = (true_mass >= MIN_MASS).float() * weight[:, None]
    relative = (predicted.sum(dim=(2, 3)) * pixel_area - true_mass).abs() / true_mass.clamp_min(MIN_MASS)
    return decomposition, (relative * counted).sum() / counted.sum().clamp_min(1.0)


def losses(output: dict, batch: dict) -> dict:
    """The loss terms of one batch (see the module notes)."""
    weight = batch.get("decomposition_weight", torch.ones(len(batch["decomposition"]),
                                                          device=batch["decomposition"].device))
    decomposition, mass_error = decomposition_losses(output["decomposition"], batch["decomposition"], weight)
    stride = batch["image"].shape[-1] // output["heatmaps"].shape[-1]
    cross_entropy, position = heatmap_losses(output["heatmaps"], batch["landmarks"], batch["weight"], stride)
    total = DECOMPOSITION_WEIGHT * decomposition + MASS_WEIGHT * mass_error + cross_entropy + POSITION_WEIGHT * position
    return dict(total=total, decomposition=decomposition, mass_error=mass_error, cross_entropy=cross_entropy,
                position_px=position)


@torch.no_grad()
def _landmark_errors(model: BiplanarNet, samples, device, batch_size: int = 8, workers: int = 0):
    """Per sample: (view, landmark errors in mm over the weighted landmarks, decomposition MAE)."""
    for batch in torch.utils.data.DataLoader(samples, batch_size=batch_size, num_workers=workers, collate_fn=collate):
        batch = {key: value.to(device) for key, value in batch.items()}
        output = model(batch["image"], batch["view"], batch["valid"])  # as at inference: see ``refine``
        decoded, _ = landmark_positions(model, output)
        error_mm = (decoded - batch["landmarks"]).norm(dim=-1) * batch["spacing_mm"][:, None]
        mae = (output["decomposition"] - batch["decomposition"]).abs().mean(dim=(1, 2, 3))
        for row in range(len(error_mm)):
            keep = batch["weight"][row] > 0
            yield int(batch["view"][row]), error_mm[row][keep].cpu().tolist(), float(mae[row])


def evaluate(model: BiplanarNet, samples: BiplanarSamples, device, real=None, workers: int = 0) -> dict:
    """Mean landmark error (mm at the detector) per view over landmarks in the field, decomposition
    MAE, and with ``real`` (``RealAPSamples``) the mean L1-L5 corner error on real AP radiographs;
    ``workers`` processes read the samples."""
    model.eval()
    errors, mae = {0: [], 1: []}, []
    for view, error, sample_mae in _landmark_errors(model, samples, device, workers=workers):
        errors[view].extend(error)
        mae.append(sample_mae)
    mean = lambda values: float(np.mean(values)) if values else float("nan")  # noqa: E731
    result = dict(landmark_mm_AP=mean(errors[0]), landmark_mm_LAT=mean(errors[1]), decomposition_mae=mean(mae))
    if real is not None:
        result["corner_mm_real_AP"] = mean([e for _, error, _ in _landmark_errors(model, real, device, workers=workers)
                                            for e in error])
    model.train()
    return result


def body_landmarks() -> list:
    """Indices (within one level) of the bundled shape models' vertebral-body landmarks: the
    refiner's crops are centred on them."""
    from .shape_model_library import load_models

    model = next(iter(load_models(levels=["L1"]).values()))
    return [k for k, landmark in enumerate(model.landmarks) if landmark.region == "body"]


def train_biplanar(data_dir, out_dir, steps: int = 20000, batch_size: int = 8, learning_rate: float = 1e-3,
                   seed: int = 0, device: str = "auto", validate_every: int = 500, checkpoint_every: int = 100,
                   size: int = INPUT_SIZE, init=None, real_ap=None, real_per_batch: int = 1, refiner: bool = False,
                   workers: int = 0, progress: Optional[ProgressCallback] = None) -> dict:
    """Train (or resume) into ``out_dir``; returns the history (losses, validations, timings).

    ``init``: weights to start from (fine-tuning). ``real_ap``: an annotated real AP folder
    (:mod:`.real_ap_corners`); then ``real_per_batch`` samples of every batch are real radiographs
    of its "train" rows (corner landmarks only), its "validation" rows are validated on too, and
    its "report" rows are never touched. ``refiner``: train only a landmark refiner
    (:mod:`.landmark_refinement`) on top of the network in ``init`` (kept fixed); the result is that
    network with its refiner. ``workers``: processes that prepare batches ahead (0: in this
    one); the weights are the same for any number."""
    report = as_progress(progress)
    if refiner and init is None:
        raise InputError("Training a refiner needs the network it refines (--init WEIGHTS).")
    if steps < 1 or batch_size < 1 or not learning_rate > 0:
        raise InputError("Steps and batch size must be at least 1 and the learning rate positive.")
    if size % 16:
        raise InputError("The network's input size must be a multiple of 16.")
    if workers < 0:
        raise InputError("The number of loader workers cannot be negative.")
    device = choose_device(device)
    train_set = BiplanarSamples(data_dir, "train", augment=True, seed=seed, size=size)
    validation = BiplanarSamples(data_dir, "validation", augment=False, seed=seed, size=size)
    real_train = real_validation = None
    if real_ap is not None:
        from .real_ap_corners import RealAPSamples, body_width_mm

        if batch_size < 2:
            raise InputError("Training with real radiographs needs a batch of at least 2.")
        if not 1 <= real_per_batch < batch_size:
            raise InputError(f"The real radiographs per batch must be from 1 to {batch_size - 1} (the batch less "
                             "one synthetic case).")
        cases = [train_set.cases[i] for i in range(min(50, len(train_set.cases)))]
        names = cases[0]["meta"]["landmark_names"]
        width = body_width_mm(cases, names)
        real_train = RealAPSamples(real_ap, "train", names, width, augment=True, seed=seed, size=size)
        real_validation = RealAPSamples(real_ap, "validation", names, width, size=size)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    start_model = None
    if init is not None:
        from .biplanar_network import load_network

        start_model = load_network(init, device)
    refiner_config = None
    if refiner:  # a refiner already on the starting weights keeps its layout, gains the decomposition
        # head and crops centred on all of a level's landmarks
        refiner_config = dict(start_model.refiner.config if start_model.refiner is not None else
                              dict(centre_landmarks=body_landmarks()), decomposition=True, centre="landmarks")
    model = BiplanarNet(refiner=refiner_config).to(device)
    trained = model.refiner if refiner else model
    optimiser = torch.optim.Adam(trained.parameters(), lr=learning_rate)
    settings = dict(data=str(Path(data_dir).resolve()), steps=steps, batch_size=batch_size,
                    learning_rate=learning_rate, seed=seed, size=size, config=model.config,
                    init=None if init is None else str(Path(init).resolve()),
                    real_ap=None if real_ap is None else str(Path(real_ap).resolve()))
    if real_ap is not None and real_per_batch != 1:  # absent from the settings of runs before it could be chosen
        settings["real_per_batch"] = real_per_batch
    run = TrainingRun(out, settings, model, optimiser, device)
    if not run.resume() and start_model is not None:
        if start_model.base_config() != model.base_config() or (not refiner and start_model.refiner is not None):
            raise InputError(f"The starting weights {init} are of another network ({start_model.config}).")
        # Every starting weight is used; only a refiner's new parts (all of a new refiner, or the
        # decomposition head of one that had none) start fresh.
        missing, unexpected = model.load_state_dict(start_model.state_dict(), strict=False)
        if unexpected or any(not key.startswith("refiner.") for key in missing):
            raise InputError(f"The starting weights {init} do not fit: missing {missing}, unexpected {unexpected}.")

    model.train()
    run.start()
    batches = StepBatches(train_set, real_train, batch_size, real_per_batch, seed, run.step, steps)
    loader = iter(torch.utils.data.DataLoader(batches, batch_size=None, num_workers=workers,
                                              pin_memory=device.type == "cuda",
                                              prefetch_factor=4 if workers else None))
    while run.step < steps:
        rng = np.random.default_rng([seed, run.step])
        batches.draw(rng)  # the same draws as the loader's, so the refiner's crops follow them
        batch = {key: value.to(device, non_blocking=True) for key, value in next(loader).items()}
        run.set_learning_rate(learning_rate, steps)
        if refiner:
            terms = refiner_losses(model, batch, rng)
        else:
            terms = losses(model(batch["image"], batch["view"]), batch)
        optimiser.zero_grad()
        terms["total"].backward()
        optimiser.step()
        run.step += 1
        step = run.step
        run.history["train"].append(dict(step=step, **{k: round(float(v.detach()), 5) for k, v in terms.items()}))
        if step % validate_every == 0 or step == steps:
            result = evaluate(model, validation, device, real_validation, workers)
            run.validated(result, result["landmark_mm_AP"] + result["landmark_mm_LAT"]
                          + result.get("corner_mm_real_AP", 0.0))
        if step % checkpoint_every == 0 or step == steps:
            run.checkpoint()
        report(step / steps, f"step {step}/{steps}: loss {float(terms['total'].detach()):.3f}, landmarks "
               f"{float(terms['position_px'].detach()):.2f} px; ETA {run.eta_minutes(steps):.1f} min")
    return run.finish()
