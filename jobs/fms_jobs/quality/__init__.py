"""Four-dimension data quality for FMS sensor readings.

* :mod:`.reasons`     reason codes, dimensions, dispositions (what dead-letters, what only flags)
* :mod:`.rulebook`    the versioned rules file (``quality_rules.yaml``), loaded and validated
* :mod:`.rules`       the rules as pure Python functions (the specification; unit-tested)
* :mod:`.reference`   the streaming job's stateful decisions modelled in plain Python
* :mod:`.spark_rules` the same rules as Spark column expressions (the hot path; no UDFs)

Conservation: every record read is exactly one of stored, dead-lettered
(reason != DUPLICATE) or a counted duplicate.
"""

from fms_jobs.quality.reasons import Dimension, Disposition, ReasonCode

__all__ = ["Dimension", "Disposition", "ReasonCode"]
