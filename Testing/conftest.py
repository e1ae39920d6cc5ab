"""Shared fixtures. Tests build real MRML scenes headless through the slicer-core wheel (no mocks)."""

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# Run against the working tree (the module Lib folders are packaged from their module folders).
for path in (REPO, REPO / "BiplanarRecon", REPO / "DepthRecon"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))


@pytest.fixture
def context():
    """A fresh headless scene with all MRML logics attached; released after the test."""
    from BoneReconLib.app_context import new_headless_context

    ctx = new_headless_context()
    yield ctx
    ctx.close()


@pytest.fixture
def shared_data():
    """../shared/data (training/test data; on CI, not on a user's machine)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"needs the shared anatomy data at {SHARED_DATA} (present on CI, not in a user's clone)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def spine_background():
    """The sample CT as a lumbar background (its L1-L5 labelled)."""
    from BoneReconLib.lumbar_radiograph import SpineCT
    from BoneReconLib.sample_data import SAMPLE_CT, SAMPLE_VERTEBRA_LABELS

    return SpineCT.from_files(SAMPLE_CT, SAMPLE_VERTEBRA_LABELS)


@pytest.fixture(scope="session")
def bundled_models():
    """The bundled L1-L5 shape models."""
    from BoneReconLib.shape_model_library import load_models

    return load_models()


@pytest.fixture(scope="session")
def tiny_lumbar(tmp_path_factory, spine_background, bundled_models):
    """Ten small (96 x 96) synthetic lumbar cases, for the network tests."""
    from BoneReconLib.lumbar_dataset import generate_lumbar_dataset

    folder = tmp_path_factory.mktemp("tiny") / "lumbar"
    generate_lumbar_dataset(folder, [spine_background], bundled_models, 10, seed=2, size=(96, 96))
    return folder
