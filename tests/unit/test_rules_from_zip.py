"""The packaged quality rules load when fms_jobs is imported from a zip.

spark-submit --py-files puts the package zip ahead of the venv on the driver's path (the
deployed streaming job hit exactly this: a path inside the zip is not a file).
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import fms_jobs

PACKAGE = Path(fms_jobs.__file__).parent


def test_packaged_rules_load_from_a_zip(tmp_path: Path) -> None:
    archive = tmp_path / "fms_jobs.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in PACKAGE.rglob("*"):
            if f.is_file() and "__pycache__" not in f.parts:
                z.write(f, f.relative_to(PACKAGE.parent))
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import fms_jobs, fms_jobs.quality.rulebook as c; "
        "assert '.zip' in fms_jobs.__file__, fms_jobs.__file__; "
        "r = c.load_rules(); print(type(r).__name__, len(c.load_rules_text()))"
    )
    res = subprocess.run(
        [sys.executable, "-c", code, str(archive)], capture_output=True, text=True, check=False
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip()
