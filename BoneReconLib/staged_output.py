"""All-or-nothing output folders: results appear only when every file was written.

Files are written into a hidden staging folder inside the output folder and moved into place at
the end. On any error (or cancel) the staging folder is removed, and so is the output folder if
this run created it; results of an earlier successful run are left untouched.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from .errors import InputError


class StagedOutput:
    """``with StagedOutput(out_dir) as out: write to out.path("scene.mrb") ...``"""

    def __init__(self, out_dir):
        self.out_dir = Path(out_dir)
        self._created_dir = False
        self._stage: Path | None = None
        self._names: list[str] = []

    def __enter__(self) -> "StagedOutput":
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise InputError(f"The output path {self.out_dir} exists and is not a folder.")
        try:
            if not self.out_dir.exists():
                self.out_dir.mkdir(parents=True)
                self._created_dir = True
            self._stage = Path(tempfile.mkdtemp(prefix=".bonerecon-partial-", dir=self.out_dir))
        except OSError as exc:
            raise InputError(f"Cannot write to the output folder {self.out_dir} ({exc.strerror}).") from exc
        return self

    def path(self, name: str) -> Path:
        """Where to write the output file ``name`` for now (moved into the folder on success)."""
        if self._stage is None:
            raise RuntimeError("StagedOutput.path() used outside its 'with' block.")
        self._names.append(name)
        return self._stage / name

    def __exit__(self, exc_type, exc, tb) -> bool:
        succeeded = False
        try:
            if exc_type is None:
                missing = [n for n in self._names if not (self._stage / n).exists()]
                if missing:
                    raise RuntimeError(f"Output files were not written: {', '.join(missing)}.")
                for name in self._names:
                    os.replace(self._stage / name, self.out_dir / name)
                succeeded = True
        finally:
            shutil.rmtree(self._stage, ignore_errors=True)
            if not succeeded and self._created_dir:
                shutil.rmtree(self.out_dir, ignore_errors=True)
        return False
