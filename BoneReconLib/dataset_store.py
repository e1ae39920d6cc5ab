"""Training-data folders: one compressed array file per case, a manifest, a split by subject.

Layout::

    DATASET/
      manifest.json          format, kind, description (generator settings, seed), cases, splits
      cases/<case>.npz       the case's arrays + its JSON metadata (read without pickle)

Every case belongs to a subject (the person or shape it was made from); the split into train /
validation / test is drawn over subjects, never over images, so no subject's anatomy is seen in
training and again in validation or test. Cases are written atomically (``.partial`` then
renamed) and the manifest last: a folder without a manifest is an unfinished generation, which
``DatasetWriter`` can resume (cases already written are kept and skipped) and ``CaseDataset``
refuses. Core module: numpy/torch only, no MRML.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence

import numpy as np
import torch

from .errors import InputError
from .shape_model import file_sha256

FORMAT = "bonerecon-dataset/1"
SPLITS = ("train", "validation", "test")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def split_by_subject(subjects: Iterable[str], fractions: Sequence[float] = (0.8, 0.1, 0.1),
                     seed: int = 0, assigned: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """{subject: split}: subjects shuffled by ``seed`` and cut by the (train, validation, test)
    fractions; each split with a non-zero fraction gets at least one subject when there are enough.
    ``assigned`` fixes some subjects' splits (e.g. a real subject kept for the test); the others
    are cut as above."""
    subjects, assigned = list(subjects), dict(assigned or {})
    for subject, split in assigned.items():
        if split not in SPLITS:
            raise InputError(f"Subject '{subject}': unknown split '{split}' (one of {', '.join(SPLITS)}).")
    unknown = set(assigned) - set(subjects)
    if unknown:
        raise InputError(f"Split given for subject(s) not in the dataset: {', '.join(sorted(unknown))}.")
    unique = sorted(set(subjects) - set(assigned))
    if len(fractions) != len(SPLITS) or min(fractions) < 0 or sum(fractions) <= 0:
        raise InputError("Split fractions must be three non-negative numbers (train, validation, test).")
    order = np.random.default_rng(seed).permutation(len(unique))
    wanted = [f > 0 for f in fractions]
    counts = np.floor(np.asarray(fractions, float) / sum(fractions) * len(unique)).astype(int)
    for n in range(len(SPLITS)):  # a split asked for gets one subject if any are left over
        if wanted[n] and counts[n] == 0 and counts.sum() < len(unique):
            counts[n] = 1
    counts[int(np.argmax(fractions))] += len(unique) - counts.sum()
    assignment, start = dict(assigned), 0
    for split, count in zip(SPLITS, counts):
        for index in order[start:start + count]:
            assignment[unique[index]] = split
        start += count
    return assignment


class DatasetWriter:
    """Writes cases into a dataset folder, then its manifest (``finish``).

    ``kind`` names what the cases are (e.g. "lumbar-biplanar"); ``description`` records how they
    were made (settings, seed) and goes into the manifest.
    """

    def __init__(self, folder, kind: str, description: Optional[Mapping] = None):
        self.folder = Path(folder)
        self.kind = kind
        self.description = dict(description or {})
        if (self.folder / "manifest.json").exists():
            raise InputError(f"{self.folder} already holds a finished dataset; choose a new folder.")
        self.cases_dir = self.folder / "cases"
        try:
            self.cases_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"Cannot create the dataset folder {self.folder}: {exc}.") from exc
        self._subjects: Dict[str, str] = {}
        for path in sorted(self.cases_dir.glob("*.npz")):  # resume: keep what an earlier run finished
            self._subjects[path.stem] = str(_read_meta(path).get("subject"))
        for partial in self.cases_dir.glob("*.partial"):
            partial.unlink()

    def has(self, case_id: str) -> bool:
        return case_id in self._subjects

    def add(self, case_id: str, subject: str, arrays: Mapping[str, np.ndarray], meta: Optional[Mapping] = None):
        """Write one case: named arrays (numeric or bool) and JSON-serialisable metadata."""
        if not _NAME.match(case_id) or not _NAME.match(str(subject)):
            raise InputError(f"Case and subject names must be letters, digits, '_', '.', '-': got "
                             f"'{case_id}', '{subject}'.")
        if case_id in self._subjects:
            raise InputError(f"Case '{case_id}' is already in the dataset.")
        for key, value in arrays.items():
            if key == "meta" or not _NAME.match(key):
                raise InputError(f"'{key}' cannot name a case array.")
            if np.asarray(value).dtype.kind not in "biuf":
                raise InputError(f"Array '{key}' of case '{case_id}' is not numeric.")
        record = dict(meta or {}, case=case_id, subject=str(subject))
        path = self.cases_dir / f"{case_id}.npz"
        partial = path.with_name(path.name + ".partial")
        with open(partial, "wb") as handle:
            np.savez_compressed(handle, meta=np.array(json.dumps(record)),
                                **{key: np.asarray(value) for key, value in arrays.items()})
        partial.replace(path)
        self._subjects[case_id] = str(subject)

    def finish(self, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0,
               assigned: Optional[Mapping[str, str]] = None) -> dict:
        """Split by subject (``assigned``: fixed splits of some subjects) and write the manifest
        (file hashes included); returns it."""
        if not self._subjects:
            raise InputError("The dataset has no cases.")
        splits = split_by_subject(self._subjects.values(), fractions, seed, assigned)
        cases = [dict(id=case_id, subject=subject, split=splits[subject], file=f"cases/{case_id}.npz",
                      sha256=file_sha256(self.cases_dir / f"{case_id}.npz"))
                 for case_id, subject in sorted(self._subjects.items())]
        split = dict(fractions=list(fractions), seed=seed, by="subject")
        if assigned:
            split["assigned"] = dict(sorted(assigned.items()))
        manifest = dict(format=FORMAT, kind=self.kind, description=self.description, split=split, cases=cases)
        partial = self.folder / "manifest.json.partial"
        partial.write_text(json.dumps(manifest, indent=1))
        partial.replace(self.folder / "manifest.json")
        return manifest


def read_manifest(folder) -> dict:
    path = Path(folder) / "manifest.json"
    if not path.is_file():
        raise InputError(f"{folder} is not a finished dataset (no manifest.json; was its generation interrupted?).")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise InputError(f"{folder} is not a BoneRecon dataset ({FORMAT}).")
    return manifest


def _read_meta(path: Path) -> dict:
    try:
        with np.load(path, allow_pickle=False) as data:
            return json.loads(str(data["meta"]))
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"Could not read the case file {path}: {exc}.") from exc


class CaseDataset(torch.utils.data.Dataset):
    """The cases of one split as dicts of tensors (plus ``"meta"``: the case's metadata).

    ``keys`` limits the arrays read; ``verify`` checks each file against the manifest's sha256.
    """

    def __init__(self, folder, split: Optional[str] = "train", keys: Optional[Sequence[str]] = None,
                 verify: bool = False):
        if split is not None and split not in SPLITS:
            raise InputError(f"Unknown split '{split}' (one of {', '.join(SPLITS)}).")
        self.folder = Path(folder)
        self.manifest = read_manifest(folder)
        self.cases: List[dict] = [c for c in self.manifest["cases"] if split is None or c["split"] == split]
        self.keys = list(keys) if keys is not None else None
        self.verify = verify

    def __len__(self) -> int:
        return len(self.cases)

    def __getitem__(self, index: int) -> dict:
        case = self.cases[index]
        path = self.folder / case["file"]
        if self.verify and file_sha256(path) != case["sha256"]:
            raise InputError(f"The case file {path} does not match the manifest (changed or damaged).")
        try:
            with np.load(path, allow_pickle=False) as data:
                keys = self.keys if self.keys is not None else [k for k in data.files if k != "meta"]
                missing = [k for k in keys if k not in data.files]
                if missing:
                    raise InputError(f"Case '{case['id']}' has no array(s) {', '.join(missing)}.")
                item = {key: torch.from_numpy(np.array(data[key])) for key in keys}
                item["meta"] = json.loads(str(data["meta"]))
        except (OSError, ValueError) as exc:
            raise InputError(f"Could not read the case file {path}: {exc}.") from exc
        return item
