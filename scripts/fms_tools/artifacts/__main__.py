"""`python -m fms_tools.artifacts`: the same as `fms-artifacts`."""

import sys

from .cli import main

sys.exit(main())
