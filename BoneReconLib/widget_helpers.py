"""Apply / Cancel / progress handling shared by the module widgets (GUI layer, inside Slicer only).

Long work runs in the logic with a Progress callback that updates the progress bar and lets Qt
process events, so Slicer stays responsive and the Cancel button works; on cancel or error the
logic has already removed what it added. Imports no Qt module directly (uses ``slicer.app``).
"""

import logging

from .errors import InputError
from .progress import Cancelled, Progress


class ApplyWithProgressMixin:
    """Needs ``self.ui`` with applyButton, cancelButton, progressBar, statusLabel, and ``_checkCanApply()``."""

    _running = None  # Progress of the operation in flight

    def isRunning(self) -> bool:
        return self._running is not None

    def onCancelButton(self):
        if self._running is not None:
            self._running.cancel()

    def _onProgress(self, fraction, message):
        import slicer

        self.ui.progressBar.value = int(round(100 * fraction))
        self.ui.statusLabel.text = message
        slicer.app.processEvents()

    def runWithProgress(self, work, failureMessage: str):
        """Call ``work(progress)``; returns its result, or None when cancelled or failed (user told)."""
        import slicer

        self._running = Progress(self._onProgress)
        self.ui.cancelButton.enabled = True
        self.ui.progressBar.visible = True
        self._checkCanApply()
        try:
            return work(self._running)
        except Cancelled:
            self.ui.statusLabel.text = "Cancelled; nothing was added to the scene."
        except InputError as exc:
            self.ui.statusLabel.text = str(exc)
            slicer.util.errorDisplay(str(exc))
        except Exception as exc:  # noqa: BLE001 - shown to the user, traceback in the log
            logging.exception(failureMessage)
            self.ui.statusLabel.text = failureMessage
            slicer.util.errorDisplay(f"{failureMessage} {exc}")
        finally:
            self._running = None
            self.ui.cancelButton.enabled = False
            self.ui.progressBar.visible = False
            self._checkCanApply()
        return None
