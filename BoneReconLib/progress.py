"""Progress reporting and cooperative cancellation for long work.

Logic functions accept an optional ``progress`` callable ``progress(fraction, message)``. It is
called with a fraction in [0, 1]; raising :class:`Cancelled` from it (or calling
:meth:`Progress.cancel` from another thread/GUI handler) stops the work at the next step, and the
logic removes what it had created so far.
"""

from __future__ import annotations

import logging
from typing import Callable, Optional

ProgressCallback = Callable[[float, str], None]


class Cancelled(Exception):
    """The user cancelled the operation."""


class Progress:
    """Reports steps to an optional callback and checks a cancel flag between steps."""

    def __init__(self, callback: Optional[ProgressCallback] = None):
        self._callback = callback
        self._cancelled = False

    def cancel(self) -> None:
        self._cancelled = True

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def __call__(self, fraction: float, message: str) -> None:
        """Report progress; raise Cancelled if cancellation was requested."""
        if self._cancelled:
            raise Cancelled("Cancelled by the user.")
        fraction = min(max(float(fraction), 0.0), 1.0)
        logging.getLogger("BoneRecon").debug("%3.0f%% %s", 100 * fraction, message)
        if self._callback is not None:
            self._callback(fraction, message)
        if self._cancelled:  # the callback may have requested it
            raise Cancelled("Cancelled by the user.")


def as_progress(progress: "Progress | ProgressCallback | None") -> Progress:
    """Accept a Progress, a bare callback or None."""
    if isinstance(progress, Progress):
        return progress
    return Progress(progress)
