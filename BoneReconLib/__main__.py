"""`python -m BoneReconLib ...` is the same as the `bonerecon` console script."""

import sys

from .cli import main

sys.exit(main())
