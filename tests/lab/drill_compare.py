"""The DR drill's record oracle: the primary's raw partition at the cut against the standby's copy.

Pure (lists of digests in, figures out), so its rules are tested in isolation
(tests/unit/test_drill_compare.py); tests/lab/test_lab_dr.py reads the records from both clusters.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass


@dataclass
class PartitionLoss:
    """One raw partition after the drill: what the primary held at the cut against what DR got."""

    at_cut: int  # primary records appended before the cut
    mirrored: int  # of those, the prefix DR holds in the same order
    lost_ts_ms: list[int]  # append times of the primary records DR never got
    duplicated: int  # copies DR holds of a primary record beyond the primary's own count of it
    out_of_order: int  # lost records that DR nonetheless holds elsewhere (order broken)


def compare_at_cut(primary: list[tuple[int, str]], standby: list[str], cut_ms: int) -> PartitionLoss:
    """The primary's records appended before `cut_ms` against the standby's first records."""
    want = [(ts, d) for ts, d in primary if ts < cut_ms]
    got = standby[: len(want)]
    mirrored = 0
    while mirrored < min(len(want), len(got)) and got[mirrored] == want[mirrored][1]:
        mirrored += 1
    lost = want[mirrored:]
    wanted = Counter(d for _, d in want)
    held = set(standby)
    return PartitionLoss(
        at_cut=len(want),
        mirrored=mirrored,
        lost_ts_ms=[ts for ts, _ in lost],
        # the collectors send exact duplicates on purpose (bad input): compare counts, not distinctness
        duplicated=sum(max(0, n - wanted[d]) for d, n in Counter(got).items() if d in wanted),
        out_of_order=sum(1 for _, d in lost if d in held),
    )
