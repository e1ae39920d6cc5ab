"""The one sample case shipped with BoneRecon (see Resources/SampleData/README.md for source/licence)."""

from pathlib import Path

SAMPLE_DATA_DIR = Path(__file__).resolve().parent / "Resources" / "SampleData"
SAMPLE_CT = SAMPLE_DATA_DIR / "ct.nii.gz"
SAMPLE_VERTEBRA_LABELS = SAMPLE_DATA_DIR / "spine_labels.nii.gz"
SAMPLE_LABEL_TABLE = "totalsegmentator"
