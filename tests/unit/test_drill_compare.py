"""The DR drill's oracle (tests/lab/drill_compare.py): what the standby lacks, repeats or reorders."""

from __future__ import annotations

from lab.drill_compare import compare_at_cut

CUT = 1_000


def primary(*digests: str, start: int = 900, step: int = 10) -> list[tuple[int, str]]:
    return [(start + i * step, d) for i, d in enumerate(digests)]


def test_everything_before_the_cut_mirrored_in_order_loses_nothing() -> None:
    # records at 900..990 are before the cut, 1000 and later after it; DR's own records follow the mirror
    loss = compare_at_cut(primary(*"abcdefghijkl"), [*list("abcdefghij"), "own1", "own2"], CUT)
    assert (loss.at_cut, loss.mirrored, loss.lost_ts_ms) == (10, 10, [])
    assert loss.duplicated == 0 and loss.out_of_order == 0


def test_the_tail_not_mirrored_before_the_cut_is_the_rpo_loss() -> None:
    loss = compare_at_cut(primary(*"abcdefghij"), [*list("abcdefg"), "own1"], CUT)
    assert loss.mirrored == 7 and loss.lost_ts_ms == [970, 980, 990] and loss.out_of_order == 0


def test_deliberate_duplicates_are_not_counted_as_held_twice() -> None:
    # the collectors send exact duplicates on purpose: the primary holds "b" twice, so may DR
    loss = compare_at_cut(primary("a", "b", "b", "c"), ["a", "b", "b", "c"], CUT)
    assert loss.duplicated == 0 and loss.lost_ts_ms == []
    # a third copy on DR is one too many
    assert compare_at_cut(primary("a", "b", "b", "c"), ["a", "b", "b", "b"], CUT).duplicated == 1


def test_a_record_held_out_of_order_is_reported() -> None:
    loss = compare_at_cut(primary("a", "b", "c", "d"), ["a", "c", "b", "d"], CUT)
    assert loss.mirrored == 1 and loss.lost_ts_ms == [910, 920, 930] and loss.out_of_order == 3
