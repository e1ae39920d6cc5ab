"""A training folder shared by every trainer (BiplanarRecon, DepthRecon, the leg detector).

``checkpoint.pt`` (model, optimiser, step, history) written atomically every so often and at the
end, so the same command resumes an interrupted run; a run with other settings in the folder is
refused rather than mixed in; ``best.pt`` (weights + configuration + its validation) kept at the
best validation score; ``history.json`` beside them; a cosine learning rate; progress with ETA.
Core module (torch), no MRML.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch

from .errors import InputError


def save_atomically(path: Path, state: dict) -> None:
    """torch.save through a partial file, so an interrupted write never leaves a damaged one."""
    partial = path.with_name(path.name + ".partial")
    torch.save(state, partial)
    partial.replace(path)


class TrainingRun:
    def __init__(self, out_dir, settings: dict, model: torch.nn.Module, optimiser: torch.optim.Optimizer, device):
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.model, self.optimiser, self.device = model, optimiser, device
        self.history = dict(settings=settings, train=[], validation=[], best=None)
        self.step = 0
        self._start, self._start_step = time.perf_counter(), 0

    @property
    def checkpoint_path(self) -> Path:
        return self.out / "checkpoint.pt"

    def resume(self) -> bool:
        """Load the folder's checkpoint if there is one (True); refuse one of other settings."""
        if not self.checkpoint_path.exists():
            return False
        state = torch.load(self.checkpoint_path, map_location=self.device, weights_only=False)
        settings = self.history["settings"]
        if state["history"]["settings"] != settings:
            raise InputError(f"{self.out} holds a run with other settings ({state['history']['settings']}); "
                             "choose a new folder or the same settings to resume.")
        self.model.load_state_dict(state["model"])
        self.optimiser.load_state_dict(state["optimiser"])
        self.step, self.history = state["step"], state["history"]
        return True

    def start(self) -> None:
        """Start the clock (after any resume): the ETA counts this session's steps only."""
        self._start, self._start_step = time.perf_counter(), self.step

    def set_learning_rate(self, learning_rate: float, steps: int) -> None:
        """Cosine from ``learning_rate`` down to 5 % of it at the last step."""
        for group in self.optimiser.param_groups:
            group["lr"] = learning_rate * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * self.step / steps)))

    def validated(self, result: dict, score: float) -> None:
        """Record a validation at the current step; keep the weights as best.pt if ``score`` is the lowest yet."""
        result = dict(step=self.step, **result)
        self.history["validation"].append(result)
        if self.history["best"] is None or score < self.history["best"]["score"]:
            self.history["best"] = dict(step=self.step, score=score)
            save_atomically(self.out / "best.pt", dict(model=self.model.state_dict(), config=self.model.config,
                                                       step=self.step, validation=result))

    def checkpoint(self) -> None:
        save_atomically(self.checkpoint_path, dict(model=self.model.state_dict(), optimiser=self.optimiser.state_dict(),
                                                   step=self.step, history=self.history))
        (self.out / "history.json").write_text(json.dumps(self.history, indent=1))

    def eta_minutes(self, steps: int) -> float:
        return (time.perf_counter() - self._start) / max(self.step - self._start_step, 1) * (steps - self.step) / 60.0

    def finish(self) -> dict:
        """Add this session's time and the device to the history, write the last checkpoint; the history."""
        self.history["seconds"] = self.history.get("seconds", 0.0) + time.perf_counter() - self._start
        self.history["device"] = str(self.device)
        self.checkpoint()
        return self.history
