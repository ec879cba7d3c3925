"""`python -m fms_tools.lab`: the same as `fms-lab`."""

import sys

from .cli import main

sys.exit(main())
