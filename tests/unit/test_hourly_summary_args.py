"""Command line of the hourly summary: --hour overrides --closed-hours, --assume-closed (no Spark)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fms_jobs.batch.hourly_summary import parse_args, select_hours
from fms_jobs.lake import Hour

BASE = ["--processed", "/p", "--dlq", "/d", "--output", "/o", "--checkpoint", "/c"]
NOW = datetime(2026, 12, 1, 9, 7, tzinfo=UTC)
GRACE = timedelta(minutes=15)


def hours(*texts: str) -> list[Hour]:
    return [Hour.parse(t) for t in texts]


def test_closed_hours_alone_selects_the_newest_closed_hours() -> None:
    a = parse_args([*BASE, "--closed-hours", "3"])
    assert a.hour is None and a.closed_hours == 3 and not a.assume_closed
    # 09:07 - 15 min grace - 1 h = 07:52: 07:00 is the newest closed hour (08:00 closes at 09:15)
    assert select_hours(a.hour, a.closed_hours, NOW, GRACE) == hours(
        "2026-12-01T05", "2026-12-01T06", "2026-12-01T07"
    )


def test_hour_appended_to_the_timer_arguments_overrides_closed_hours() -> None:
    # the unit's @/etc/fms/hourly-summary.args expands to --closed-hours N; the operator appends --hour
    a = parse_args([*BASE, "--closed-hours", "3", "--hour", "2026-12-01T05"])
    assert a.closed_hours == 3
    assert select_hours(a.hour, a.closed_hours, NOW, GRACE) == hours("2026-12-01T05")


def test_hour_is_repeatable_and_keeps_the_given_order_without_repeats() -> None:
    a = parse_args(
        [*BASE, "--hour", "2026-12-01T05", "--hour", "2026-11-30T23:00Z", "--hour", "2026-12-01T05"]
    )
    assert select_hours(a.hour, None, NOW, GRACE) == hours("2026-12-01T05", "2026-11-30T23")


def test_assume_closed_with_hour() -> None:
    a = parse_args([*BASE, "--closed-hours", "3", "--hour", "2026-12-01T09", "--assume-closed"])
    assert a.assume_closed
    # the current hour: selected as given, run_hour(..., assume_closed=True) skips the clock test
    assert select_hours(a.hour, a.closed_hours, NOW, GRACE) == hours("2026-12-01T09")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "one of the arguments --hour --closed-hours is required"),
        (["--assume-closed"], "one of the arguments --hour --closed-hours is required"),
        (["--closed-hours", "2", "--assume-closed"], "--assume-closed needs --hour"),
        (["--hour", "yesterday"], "invalid hour value: 'yesterday'"),
        (["--closed-hours", "x"], "invalid int value"),
    ],
)
def test_argument_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        parse_args([*BASE, *argv])
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_help_says_hour_overrides_closed_hours(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "overrides --closed-hours" in out and "ignored when --hour is given" in out
    assert "files of uncommitted micro-batches are still refused" in out


def test_run_hour_assume_closed_skips_only_the_clock_test() -> None:
    """Step 1 of run_hour without Spark: the clock test, then the uncommitted-batch test (stubbed lake)."""
    from fms_jobs.batch.hourly_summary import HourlySummaryJob
    from fms_jobs.sparkutil.hadoopfs import FileInfo

    current = Hour.parse("2026-12-01T09")
    part_dir = f"/p/{current.partition()}"

    class Lake:
        def ls(self, directory: str) -> list[FileInfo]:
            assert directory == part_dir
            return [
                FileInfo(f"{part_dir}/part-000000000007-00000.snappy.parquet", 10, False, 0),
                FileInfo(f"{part_dir}/part-000000000008-00000.snappy.parquet", 10, False, 0),
            ]

    job = HourlySummaryJob.__new__(HourlySummaryJob)  # only the attributes step 1 reads
    job.grace = GRACE
    job.processed = "/p"
    job.fs_p = Lake()  # type: ignore[assignment]
    job.recover = lambda hour: None  # type: ignore[method-assign]
    job._last_batch = lambda: 7  # type: ignore[method-assign]

    by_clock = job.run_hour(current, NOW)
    assert by_clock.status == "not_closed" and by_clock.detail.startswith("closes at 2026-12-01T10:15")
    assumed = job.run_hour(current, NOW, assume_closed=True)
    assert assumed.status == "not_closed" and assumed.detail == "1 files of uncommitted batches"
