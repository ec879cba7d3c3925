#!/usr/bin/env python3
"""Lab artifact mirror: build Apache-layout archives from reachable registries and serve them.

python3 scripts/artifacts.py build [kafka|hadoop|spark|maven|jmx|prometheus|all] [--mirror DIR]
python3 scripts/artifacts.py serve --bind ADDR --port 8585
python3 scripts/artifacts.py path kafka
python3 scripts/artifacts.py verify
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from artifacts.cli import main

if __name__ == "__main__":
    sys.exit(main())
