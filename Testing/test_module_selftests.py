"""The modules' self-tests (the same functions XTest.runTest() runs inside Slicer), headless."""

import pytest
from BiplanarReconLib.selftests import SELF_TESTS as BIPLANAR_TESTS
from DepthReconLib.selftests import SELF_TESTS as DEPTH_TESTS


@pytest.mark.parametrize("selftest", BIPLANAR_TESTS + DEPTH_TESTS, ids=lambda t: f"{t.__module__.split('.')[0]}.{t.__name__}")
def test_module_selftest(selftest, context, tmp_path):
    selftest(context, tmp_path)
