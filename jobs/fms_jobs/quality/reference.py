"""A single-threaded model of the streaming job's decisions.

The streaming job decides the fate of each record in micro-batches with Spark
(stateless rules as column expressions, duplicates through Spark's state store,
order through a per-device state). This module makes the same decisions in
plain Python, batch by batch, so tests can predict exactly what the job must
store, dead-letter and count as duplicates, and so the semantics are written
down in one readable place:

* stateless rules: :func:`fms_jobs.quality.rules.evaluate`;
* a record that passed every dead-letter rule is a *candidate*;
* a candidate whose event time is at or below the event-time watermark used for
  late rows in this batch is dead-lettered as LATE_EVENT ("behind watermark");
  the watermark of batch N is ``max(event time seen in batches < N) - delay``
  and Spark filters late rows of batch N with batch N-1's watermark;
* otherwise a candidate whose (device, event time) was already stored within
  the watermark, or appeared earlier in the same batch (Kafka order), is a
  DUPLICATE; the rest are stored;
* a stored record older than the newest stored record of its device is
  flagged OUT_OF_ORDER.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from fms_jobs.quality.reasons import Dimension, Disposition, ReasonCode
from fms_jobs.quality.rulebook import QualityRules
from fms_jobs.quality.rules import Evaluation, evaluate

WATERMARK_DETAIL = "behind the event-time watermark"


@dataclass(frozen=True)
class InputRecord:
    value: bytes
    arrival_ms: int
    partition: int = 0
    offset: int = 0


@dataclass
class Outcome:
    record: InputRecord
    evaluation: Evaluation
    disposition: Disposition
    reason: ReasonCode | None = None
    detail: str = ""
    flags: tuple[ReasonCode, ...] = ()
    dimensions: dict[Dimension, bool] = field(default_factory=dict)

    @property
    def stored(self) -> bool:
        return self.disposition in (Disposition.STORE, Disposition.FLAG)


@dataclass
class Totals:
    records_in: int = 0
    stored: int = 0
    dead_lettered: int = 0
    duplicates: int = 0
    by_reason: dict[ReasonCode, int] = field(default_factory=dict)

    def add(self, outcomes: Iterable[Outcome]) -> None:
        for o in outcomes:
            self.records_in += 1
            if o.stored:
                self.stored += 1
            elif o.disposition is Disposition.DUPLICATE:
                self.duplicates += 1
            else:
                self.dead_lettered += 1
                assert o.reason is not None
                self.by_reason[o.reason] = self.by_reason.get(o.reason, 0) + 1

    @property
    def conserved(self) -> bool:
        return self.records_in == self.stored + self.dead_lettered + self.duplicates


class ReferencePipeline:
    def __init__(self, rules: QualityRules) -> None:
        self.rules = rules
        self.delay_ms = rules.duplicate_watermark_seconds * 1000
        self.max_event_ms: int | None = None
        self.watermarks: list[int] = []  # watermark (ms) of every batch run so far
        self.seen: set[tuple[int, int]] = set()
        self.device_max_us: dict[int, int] = {}
        self.totals = Totals()

    def _next_watermark(self) -> int:
        prev = self.watermarks[-1] if self.watermarks else 0
        if self.max_event_ms is None:
            return prev
        return max(prev, self.max_event_ms - self.delay_ms)

    def run_batch(self, records: Sequence[InputRecord]) -> list[Outcome]:
        wm = self._next_watermark()
        late_wm = self.watermarks[-1] if self.watermarks else wm
        self.watermarks.append(wm)
        order = sorted(range(len(records)), key=lambda i: (records[i].partition, records[i].offset))
        out: list[Outcome | None] = [None] * len(records)
        batch_max: int | None = None
        for i in order:
            rec = records[i]
            ev = evaluate(rec.value, rec.arrival_ms, self.rules)
            dims = dict(ev.dimensions)
            if not ev.candidate:
                assert ev.primary is not None
                out[i] = Outcome(
                    rec, ev, Disposition.DEAD_LETTER, ev.primary.reason, ev.primary.detail, ev.flags, dims
                )
                continue
            assert ev.event_us is not None and ev.device_id is not None
            ev_ms = ev.event_us // 1000 if ev.event_us >= 0 else -((-ev.event_us) // 1000)
            batch_max = ev_ms if batch_max is None else max(batch_max, ev_ms)
            if ev.event_us <= late_wm * 1000:
                dims[Dimension.TIMELINESS] = False
                out[i] = Outcome(
                    rec, ev, Disposition.DEAD_LETTER, ReasonCode.LATE_EVENT, WATERMARK_DETAIL, ev.flags, dims
                )
                continue
            key = (ev.device_id, ev.event_us)
            if key in self.seen:
                dims[Dimension.CONSISTENCY] = False
                out[i] = Outcome(rec, ev, Disposition.DUPLICATE, ReasonCode.DUPLICATE, "", ev.flags, dims)
                continue
            self.seen.add(key)
            flags = ev.flags
            prev = self.device_max_us.get(ev.device_id)
            if prev is not None and ev.event_us < prev:
                flags = (*flags, ReasonCode.OUT_OF_ORDER)
                dims[Dimension.CONSISTENCY] = False
            self.device_max_us[ev.device_id] = ev.event_us if prev is None else max(prev, ev.event_us)
            disp = Disposition.FLAG if flags else Disposition.STORE
            out[i] = Outcome(rec, ev, disp, None, "", flags, dims)
        if batch_max is not None:
            self.max_event_ms = batch_max if self.max_event_ms is None else max(self.max_event_ms, batch_max)
        # state eviction at the end of the batch (Spark evicts keys at or below the batch watermark)
        self.seen = {k for k in self.seen if k[1] > wm * 1000}
        result = [o for o in out if o is not None]
        self.totals.add(result)
        return result
