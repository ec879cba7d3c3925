"""Stateful consistency (duplicates, order, watermark) and conservation, on the reference model."""

from __future__ import annotations

from collections import Counter

from fms_jobs.quality.reasons import Dimension, Disposition, ReasonCode
from fms_jobs.quality.reference import WATERMARK_DETAIL, InputRecord, ReferencePipeline
from fms_jobs.quality.rulebook import QualityRules
from fms_jobs.simulator import ALL_KINDS, GOOD, FleetSimulator, SimulatorConfig
from fms_jobs.simulator.devices import format_time
from pipeline_testlib import T0_MS, good, raw


def rec(t_ms: int, device: int = 1, offset: int = 0, arrival: int | None = None, **kw: object) -> InputRecord:
    value = raw(good(time=format_time(t_ms), DeviceId=device, **kw))
    return InputRecord(value, arrival if arrival is not None else t_ms + 1000, partition=0, offset=offset)


def test_duplicate_within_a_batch_keeps_the_first(rules: QualityRules) -> None:
    p = ReferencePipeline(rules)
    out = p.run_batch([rec(T0_MS, offset=5), rec(T0_MS, offset=3), rec(T0_MS + 10_000, offset=4)])
    assert [o.disposition for o in out] == [Disposition.DUPLICATE, Disposition.STORE, Disposition.STORE]
    assert out[0].reason is ReasonCode.DUPLICATE and not out[0].dimensions[Dimension.CONSISTENCY]


def test_duplicate_across_batches(rules: QualityRules) -> None:
    p = ReferencePipeline(rules)
    p.run_batch([rec(T0_MS, offset=0)])
    out = p.run_batch([rec(T0_MS, offset=1, arrival=T0_MS + 300_000)])
    assert out[0].disposition is Disposition.DUPLICATE


def test_same_time_other_device_is_not_duplicate(rules: QualityRules) -> None:
    p = ReferencePipeline(rules)
    out = p.run_batch([rec(T0_MS, device=1, offset=0), rec(T0_MS, device=2, offset=1)])
    assert all(o.disposition is Disposition.STORE for o in out)


def test_equivalent_time_spellings_are_duplicates(rules: QualityRules) -> None:
    p = ReferencePipeline(rules)
    a = InputRecord(raw(good(time="2024-01-15T14:30:00Z")), T0_MS + 1000, 0, 0)
    b = InputRecord(raw(good(time="2024-01-15T23:30:00.000+09:00")), T0_MS + 1000, 0, 1)
    assert [o.disposition for o in p.run_batch([a, b])] == [Disposition.STORE, Disposition.DUPLICATE]


def test_rejected_record_does_not_claim_its_key(rules: QualityRules) -> None:
    p = ReferencePipeline(rules)
    bad = rec(T0_MS, offset=0, sensor2=150.0)
    ok = rec(T0_MS, offset=1)
    out = p.run_batch([bad, ok])
    assert out[0].reason is ReasonCode.OUT_OF_RANGE
    assert out[1].disposition is Disposition.STORE


def test_out_of_order_is_flagged_and_stored(rules: QualityRules) -> None:
    p = ReferencePipeline(rules)
    p.run_batch([rec(T0_MS + 20_000, offset=0)])
    out = p.run_batch(
        [rec(T0_MS + 10_000, offset=1), rec(T0_MS + 30_000, offset=2), rec(T0_MS + 25_000, offset=3)]
    )
    assert [o.disposition for o in out] == [Disposition.FLAG, Disposition.STORE, Disposition.FLAG]
    assert out[0].flags == (ReasonCode.OUT_OF_ORDER,) and not out[0].dimensions[Dimension.CONSISTENCY]
    assert out[1].dimensions[Dimension.CONSISTENCY]


def test_in_order_records_are_not_flagged(rules: QualityRules) -> None:
    p = ReferencePipeline(rules)
    out = p.run_batch([rec(T0_MS + i * 10_000, offset=i) for i in range(10)])
    assert all(o.disposition is Disposition.STORE and not o.flags for o in out)


def test_record_behind_the_watermark_is_dead_lettered_not_lost(rules: QualityRules) -> None:
    p = ReferencePipeline(rules)
    delay = rules.duplicate_watermark_seconds * 1000
    p.run_batch([rec(T0_MS + 2 * delay, offset=0)])  # advances max event time
    p.run_batch([])  # batch 1: watermark = max - delay
    p.run_batch([])  # batch 2: late rows are filtered with batch 1's watermark
    # arrives in time by the timeliness rule (its own arrival is close) but is behind the watermark
    out = p.run_batch([rec(T0_MS + delay - 1, offset=1)])
    assert out[0].disposition is Disposition.DEAD_LETTER
    assert out[0].reason is ReasonCode.LATE_EVENT and out[0].detail == WATERMARK_DETAIL
    assert p.totals.conserved


def test_duplicate_keys_expire_behind_the_watermark(rules: QualityRules) -> None:
    p = ReferencePipeline(rules)
    p.run_batch([rec(T0_MS, offset=0)])
    assert (1, T0_MS * 1000) in p.seen
    delay = rules.duplicate_watermark_seconds * 1000
    p.run_batch([rec(T0_MS + delay + 5000, offset=1)])
    p.run_batch([])
    assert (1, T0_MS * 1000) not in p.seen


def test_conservation_over_a_simulated_mix(rules: QualityRules) -> None:
    sim = FleetSimulator(
        SimulatorConfig(devices=25, interval_s=1.0, bad_share=0.3, start_ms=T0_MS, seed=3), rules
    )
    records = list(sim.records(6000))
    p = ReferencePipeline(rules)
    by_kind: dict[str, Counter[str]] = {}
    for start in range(0, len(records), 500):
        chunk = records[start : start + 500]
        inputs = [InputRecord(r.value, r.created_ms, 0, r.seq) for r in chunk]
        for r, o in zip(chunk, p.run_batch(inputs), strict=True):
            fate = (
                o.reason.value
                if o.reason
                else ("flag:" + ",".join(f.value for f in o.flags) if o.flags else "ok")
            )
            by_kind.setdefault(r.kind, Counter())[fate] += 1
    t = p.totals
    assert t.records_in == 6000 and t.conserved
    assert set(by_kind) == {GOOD, *(k.value for k in ALL_KINDS)}
    assert by_kind[GOOD] == Counter({"ok": by_kind[GOOD]["ok"]})
    assert set(by_kind["duplicate"]) == {"DUPLICATE"}
    assert set(by_kind["out_of_order"]) == {"flag:OUT_OF_ORDER"}
    assert set(by_kind["implausible_state"]) == {"flag:IMPLAUSIBLE_STATE"}
    for k in ALL_KINDS:
        if k.value not in ("duplicate", "out_of_order", "implausible_state"):
            assert set(by_kind[k.value]) == {k.reason.value}, k
    assert t.duplicates == sum(by_kind["duplicate"].values())
