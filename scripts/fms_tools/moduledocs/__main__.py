"""`python -m fms_tools.moduledocs`: the same as `fms-moduledocs`."""

import sys

from .cli import main

sys.exit(main())
