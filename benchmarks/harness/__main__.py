"""``python -m benchmarks.harness``: the same as ``eventfold bench``."""

import sys

from ._cli import main

sys.exit(main())
