"""Device simulator: realistic FMS readings, injectable bad records, a fake FMS HTTP API.

Run the fake API on loopback (for the collector's polling path)::

    python -m fms_jobs.simulator --devices 100 --interval 10 --port 8080 --bad-share 0.02
"""

from fms_jobs.simulator.faults import ALL_KINDS, GOOD, BadKind
from fms_jobs.simulator.fleet import FleetSimulator, SimRecord, SimulatorConfig

__all__ = ["ALL_KINDS", "GOOD", "BadKind", "FleetSimulator", "SimRecord", "SimulatorConfig"]
