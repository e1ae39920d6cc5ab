"""Level-consistent landmark decoding: the levels' heatmaps read as one chain of vertebrae, one
below the other, instead of each map on its own.

Why: on a real radiograph a level's heatmaps often peak on its neighbour as well (the network has
learnt what a lumbar vertebra looks like better than which one it is). Decoded map by map, two
levels can land on one vertebra and leave the next one empty, or half of a level's landmarks can
sit on the vertebra above. Here each level's maps vote for where that level's centre is (every
landmark's map shifted by the landmark's offset from its level's centre, the offsets being the
median over the levels of this image, so no shape is assumed); the candidates are the peaks of
all the levels' votes together; dynamic programming picks one candidate per level, top to bottom,
about one vertebra apart (``PITCH_MM``), holding the most vote. A landmark decoded further than
``STRAY_MM`` from where its level's chosen centre puts it is decoded again about the highest pixel
of its own map near that place. Where every map already agrees with the chain (the synthetic
cases, mostly) nothing changes. Core module (torch, numpy), no MRML.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .biplanar_network import INPUT_SPACING_MM, decode_landmarks

PITCH_MM = 52.0  # centre distance of neighbouring lumbar levels in the network input (real AP median: 50-54 mm)
PITCH_SPREAD = 0.3  # log-normal spread of that distance (the synthetic cases span 40-75 mm)
MIN_PITCH = 0.4  # two levels closer than this x PITCH_MM would share one vertebra
VOTE_RADIUS_MM = 12.0  # a candidate's vote for a level: that level's vote mass within this distance
CANDIDATES = 8  # strongest peaks of all the levels' votes, besides each level's own best place
STRAY_MM = 20.0  # a landmark this far from its place in the chain is decoded again ...
SEARCH_MM = 15.0  # ... about its map's highest pixel within this distance of that place


def vote_maps(probabilities: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """(B, L, h, w) votes for each level's centre: the mean over its K landmark maps
    ``probabilities`` (B, L, K, h, w), each moved by minus its ``offsets`` (B, K, 2) heatmap pixels
    (column, row) from the centre, so that map K's mass at x + offset counts at x."""
    b, levels, k, h, w = probabilities.shape
    rows, cols = torch.meshgrid(torch.arange(h, dtype=probabilities.dtype), torch.arange(w, dtype=probabilities.dtype),
                                indexing="ij")
    at_i = cols[None] + offsets[..., 0].reshape(b * k, 1, 1)
    at_j = rows[None] + offsets[..., 1].reshape(b * k, 1, 1)
    grid = torch.stack([2 * at_i / max(w - 1, 1) - 1, 2 * at_j / max(h - 1, 1) - 1], dim=-1)
    maps = probabilities.transpose(1, 2).reshape(b * k, levels, h, w)
    moved = F.grid_sample(maps, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return moved.reshape(b, k, levels, h, w).mean(dim=1)


def disc_mass(maps: torch.Tensor, centres: np.ndarray, radius_px: float) -> np.ndarray:
    """(L, N) mass of each map (L, h, w) within ``radius_px`` of each of N centres (N, 2)."""
    h, w = maps.shape[-2:]
    rows, cols = np.mgrid[0:h, 0:w]
    inside = ((cols[None] - centres[:, 0, None, None]) ** 2 + (rows[None] - centres[:, 1, None, None]) ** 2
              <= radius_px ** 2).astype(np.float64)  # (N, h, w)
    return np.einsum("lhw,nhw->ln", maps.double().numpy(), inside)


def choose_chain(votes: torch.Tensor, pixel_mm: float) -> Tuple[np.ndarray, np.ndarray]:
    """Chosen centres (L, 2) heatmap pixels and their vote (L,) for one image's ``votes`` (L, h, w):
    the chain of candidates, one per level, each below the one before and about ``PITCH_MM`` from
    it, with the least total of -log(vote) + the pitch penalty."""
    levels, h, w = votes.shape
    total = votes.sum(dim=0)
    peaks = (total == F.max_pool2d(total[None, None], 3, stride=1, padding=1)[0, 0]) & (total > 0)
    index = torch.nonzero(peaks)
    strongest = index[torch.argsort(total[peaks], descending=True)[:CANDIDATES]]
    own = [divmod(int(votes[level].argmax()), w) for level in range(levels)]
    rows_cols = {(int(r), int(c)) for r, c in strongest} | set(own)
    candidates = np.array(sorted((c, r) for r, c in rows_cols), dtype=np.float64)  # (N, 2) column, row
    vote = disc_mass(votes, candidates, VOTE_RADIUS_MM / pixel_mm)  # (L, N)
    unary = -np.log(vote + 1e-3)
    step = candidates[None, :, :] - candidates[:, None, :]  # (from, to, 2)
    distance = np.linalg.norm(step, axis=-1) * pixel_mm
    with np.errstate(divide="ignore"):
        pairwise = 0.5 * (np.log(distance / PITCH_MM) / PITCH_SPREAD) ** 2
    pairwise[(step[..., 1] <= 0) | (distance < MIN_PITCH * PITCH_MM)] = np.inf
    cost, back = unary[0].copy(), []
    for level in range(1, levels):
        through = cost[:, None] + pairwise  # (from, to)
        back.append(np.argmin(through, axis=0))
        cost = through[back[-1], np.arange(len(candidates))] + unary[level]
    if not np.isfinite(cost.min()):  # no chain fits (a tiny field): each level on its own best place
        chosen = [int(np.argmax(vote[level])) for level in range(levels)]
    else:
        chosen = [int(np.argmin(cost))]
        for pointers in reversed(back):
            chosen.insert(0, int(pointers[chosen[0]]))
    return candidates[chosen], vote[np.arange(levels), chosen]


def nearest_peaks(heatmaps: torch.Tensor, places: torch.Tensor, radius_px: float) -> torch.Tensor:
    """(..., 2) the highest pixel (column, row) of each map (..., h, w) within ``radius_px`` of its
    place (..., 2); the nearest pixel to the place when none lies that close."""
    h, w = heatmaps.shape[-2:]
    rows, cols = torch.meshgrid(torch.arange(h, dtype=places.dtype), torch.arange(w, dtype=places.dtype),
                                indexing="ij")
    squared = (cols - places[..., 0, None, None]) ** 2 + (rows - places[..., 1, None, None]) ** 2
    near = squared <= max(radius_px, 0.5) ** 2
    masked = torch.where(near, heatmaps.to(places.dtype), torch.full_like(squared, -torch.inf))
    masked = torch.where(near.flatten(-2).any(-1)[..., None, None], masked, -squared)
    best = masked.flatten(-2).argmax(dim=-1)
    return torch.stack([(best % w).to(places.dtype), torch.div(best, w, rounding_mode="floor").to(places.dtype)], -1)


def chain_decode(heatmaps: torch.Tensor, levels: int, stride: int, window_mm: float,
                 spacing_mm: float = INPUT_SPACING_MM) -> Tuple[torch.Tensor, torch.Tensor]:
    """Positions (B, L*K, 2) in input pixels and confidences (B, L*K) of heatmap logits
    (B, L*K, h, w): ``decode_landmarks`` with its ``window_mm``, then every landmark that strays
    from its level's place in the chain (``choose_chain``) decoded again near that place. The
    confidences are ``decode_landmarks``'s (the found rule's measure). The chain is chosen on the
    CPU (a small dynamic programme); the maps may lie on any device."""
    b, count, h, w = heatmaps.shape
    k = count // levels
    positions, confidence = decode_landmarks(heatmaps, stride, spacing_mm=spacing_mm, window_mm=window_mm)
    pixel_mm = stride * spacing_mm
    with torch.no_grad():
        maps = heatmaps.detach().float().cpu()
        decoded = ((positions.detach().float().cpu() - (stride - 1) / 2) / stride).reshape(b, levels, k, 2)
        probabilities = torch.softmax(maps.reshape(b, count, h * w), dim=-1)
        probabilities = probabilities.reshape(b, levels, k, h, w)
        centres = decoded.quantile(0.5, dim=2)  # (B, L, 2)
        offsets = (decoded - centres[:, :, None]).quantile(0.5, dim=1)  # (B, K, 2)
        votes = vote_maps(probabilities, offsets)
        chosen = torch.as_tensor(np.stack([choose_chain(votes[n], pixel_mm)[0] for n in range(b)]),
                                 dtype=decoded.dtype)
        places = chosen[:, :, None] + offsets[:, None]  # (B, L, K, 2)
        stray = (decoded - places).norm(dim=-1) > STRAY_MM / pixel_mm
        if not bool(stray.any()):
            return positions, confidence
        peaks = nearest_peaks(maps.reshape(b, levels, k, h, w), places, SEARCH_MM / pixel_mm)
    again, _ = decode_landmarks(heatmaps, stride, spacing_mm=spacing_mm, window_mm=window_mm,
                                peaks=peaks.reshape(b, count, 2).to(heatmaps.device))
    return torch.where(stray.reshape(b, count, 1).to(heatmaps.device), again, positions), confidence
