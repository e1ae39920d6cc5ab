"""The modules' self-tests (the same functions XTest.runTest() runs inside Slicer), headless."""

import pytest
from BiplanarReconLib.selftests import SELF_TESTS as BIPLANAR_TESTS
from DepthReconLib.selftests import SELF_TESTS as DEPTH_TESTS


def _name(test):
    return f"{test.__module__.split('.')[0]}.{test.__name__}"


@pytest.mark.parametrize("selftest", BIPLANAR_TESTS + DEPTH_TESTS, ids=_name)
def test_module_selftest(selftest, context, tmp_path):
    selftest(context, tmp_path)
