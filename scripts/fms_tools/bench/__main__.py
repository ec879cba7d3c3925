"""`python -m fms_tools.bench`: the same as `fms-bench`."""

import sys

from .cli import run

sys.exit(run())
