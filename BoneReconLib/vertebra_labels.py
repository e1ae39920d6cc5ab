"""Vertebra label tables: which integer in a label map is which vertebra.

Collections use different conventions, so the table is always chosen explicitly:

- ``totalsegmentator``: TotalSegmentator v2 ids (26 = S1, 27 = L5 ... 31 = L1, 32 = T12 ... 50 = C1);
- ``verse``: VerSe ids (1-7 = C1-C7, 8-19 = T1-T12, 20-24 = L1-L5, 25 = L6, 26 = sacrum, 28 = T13);
- a file: CSV with ``value,name`` rows (header optional) or JSON ``{"value": "name", ...}``.

Core module: no MRML.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Dict, Iterable, Mapping

from .errors import InputError

LUMBAR_LEVELS = ("L1", "L2", "L3", "L4", "L5")

# Display colours (RGB 0..1) per level, distinct and readable on Slicer's blue 3D background.
LEVEL_COLORS = {
    "L1": (0.90, 0.49, 0.13),
    "L2": (0.95, 0.84, 0.27),
    "L3": (0.45, 0.75, 0.36),
    "L4": (0.30, 0.62, 0.85),
    "L5": (0.67, 0.47, 0.80),
}


def _totalsegmentator() -> Dict[int, str]:
    names = ["S1"] + [f"L{i}" for i in range(5, 0, -1)] + [f"T{i}" for i in range(12, 0, -1)]
    names += [f"C{i}" for i in range(7, 0, -1)]
    return {26 + k: name for k, name in enumerate(names)}


def _verse() -> Dict[int, str]:
    table = {i: f"C{i}" for i in range(1, 8)}
    table.update({7 + i: f"T{i}" for i in range(1, 13)})
    table.update({19 + i: f"L{i}" for i in range(1, 6)})
    table.update({25: "L6", 26: "S1", 28: "T13"})
    return table


BUILTIN_TABLES = {"totalsegmentator": _totalsegmentator(), "verse": _verse()}


def load_label_table(spec: str) -> Dict[int, str]:
    """A built-in table by name, or a CSV/JSON file mapping label value -> vertebra name."""
    key = str(spec).strip().lower()
    if key in BUILTIN_TABLES:
        return dict(BUILTIN_TABLES[key])
    path = Path(spec)
    if not path.is_file():
        raise InputError(
            f"Unknown label table '{spec}': use one of {', '.join(sorted(BUILTIN_TABLES))} "
            "or the path of a CSV/JSON file."
        )
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".json":
            raw = json.loads(text)
            rows = list(raw.items()) if isinstance(raw, dict) else None
        else:
            rows = [r for r in csv.reader(text.splitlines()) if r and not r[0].startswith("#")]
        table = {}
        for row in rows or []:
            value, name = row[0], row[1]
            if not str(value).strip().lstrip("-").isdigit():
                continue  # header row
            table[int(value)] = str(name).strip()
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, IndexError, TypeError) as exc:
        raise InputError(f"Could not read label table {path}: {exc}.") from exc
    if not table:
        raise InputError(f"Label table {path} has no 'value,name' entries.")
    return table


def select_levels(
    present_values: Iterable[int], table: Mapping[int, str], levels: Iterable[str] = LUMBAR_LEVELS
) -> Dict[int, str]:
    """The wanted levels that the label map really contains, as {label value: level name}.

    Raises InputError naming what was found when none of the wanted levels is present.
    """
    levels = list(levels)
    present = sorted(int(v) for v in present_values if int(v) != 0)
    chosen = {v: table[v] for v in present if v in table and table[v] in levels}
    if not chosen:
        found = ", ".join(str(v) for v in present[:12]) or "none"
        raise InputError(
            f"The label map has no {'/'.join(levels)} vertebra labels under this label table "
            f"(non-zero values found: {found}); choose the matching label table."
        )
    return dict(sorted(chosen.items(), key=lambda item: levels.index(item[1])))
