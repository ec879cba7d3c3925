"""Reason codes, quality dimensions and dispositions.

Every rule failure has exactly one :class:`ReasonCode`. A code belongs to one of
the four quality dimensions of the seeds and has a disposition:

========================  ============  ==========================================
reason                    dimension     disposition
========================  ============  ==========================================
OVERSIZED                 completeness  dead letter (fixed)
NOT_UTF8                  completeness  dead letter (fixed)
MALFORMED_JSON            completeness  dead letter (fixed)
MISSING_FIELD             completeness  dead letter (fixed)
WRONG_TYPE                accuracy      dead letter (fixed)
BAD_TIMESTAMP             accuracy      dead letter (fixed)
NOT_FINITE                accuracy      dead letter (fixed)
OUT_OF_RANGE              accuracy      dead letter or flag (config)
UNKNOWN_DEVICE            consistency   dead letter or flag (config)
IMPLAUSIBLE_STATE         consistency   flag or dead letter (config)
OUT_OF_ORDER              consistency   flag (fixed; stateful, decided after dedup)
DUPLICATE                 consistency   counted duplicate (fixed)
FUTURE_EVENT              timeliness    dead letter (fixed)
LATE_EVENT                timeliness    dead letter (fixed)
UNWRITABLE                accuracy      dead letter (fixed; decided at write time)
========================  ============  ==========================================

Why the fixed ones are fixed: a record that failed a structural or type rule
cannot be written with the processed schema; a future event would push the
event-time watermark forward and make good records look late; a late event is
older than the duplicate horizon, so storing it could store a duplicate.
LATE_EVENT is also used, with a detail naming the watermark, for the rare record
that passed the timeliness rule but is older than the streaming job's event-time
watermark (it cannot be checked for duplicates any more).

The *primary* reason of a record is the first failing rule in :data:`PRECEDENCE`
order; it decides the record's fate. Flags are every failing flag-only rule.

UNWRITABLE is no quality rule: it is a :class:`WriteReason`, not a
:class:`ReasonCode` (whose members are exactly the rules' verdicts and
DUPLICATE). The streaming job gives it to a record that passed or failed the
rules but whose row one of the batch's outputs (processed Parquet, dead-letter
Parquet, dead-letter topic) refuses - a poison pill that would otherwise fail
the batch on every retry. It replaces the record's earlier reason; the dead
letter keeps the original bytes, the detail names the output and the error.
Its dimension is accuracy: the record holds a value the lake cannot represent
(e.g. a timestamp the Parquet writer rejects), like a wrong type.
"""

from __future__ import annotations

from enum import StrEnum


class Dimension(StrEnum):
    COMPLETENESS = "completeness"
    ACCURACY = "accuracy"
    CONSISTENCY = "consistency"
    TIMELINESS = "timeliness"


class Disposition(StrEnum):
    STORE = "store"
    FLAG = "flag"
    DEAD_LETTER = "dead_letter"
    DUPLICATE = "duplicate"


class ReasonCode(StrEnum):
    OVERSIZED = "OVERSIZED"
    NOT_UTF8 = "NOT_UTF8"
    MALFORMED_JSON = "MALFORMED_JSON"
    MISSING_FIELD = "MISSING_FIELD"
    WRONG_TYPE = "WRONG_TYPE"
    BAD_TIMESTAMP = "BAD_TIMESTAMP"
    NOT_FINITE = "NOT_FINITE"
    OUT_OF_RANGE = "OUT_OF_RANGE"
    UNKNOWN_DEVICE = "UNKNOWN_DEVICE"
    FUTURE_EVENT = "FUTURE_EVENT"
    LATE_EVENT = "LATE_EVENT"
    IMPLAUSIBLE_STATE = "IMPLAUSIBLE_STATE"
    OUT_OF_ORDER = "OUT_OF_ORDER"
    DUPLICATE = "DUPLICATE"

    @property
    def dimension(self) -> Dimension:
        return DIMENSION_OF[self]


class WriteReason(StrEnum):
    """Dead-letter reasons decided when a batch's outputs are written (not by a rule)."""

    UNWRITABLE = "UNWRITABLE"

    @property
    def dimension(self) -> Dimension:
        return Dimension.ACCURACY

    @property
    def disposition(self) -> Disposition:
        return Disposition.DEAD_LETTER


DIMENSION_OF: dict[ReasonCode, Dimension] = {
    ReasonCode.OVERSIZED: Dimension.COMPLETENESS,
    ReasonCode.NOT_UTF8: Dimension.COMPLETENESS,
    ReasonCode.MALFORMED_JSON: Dimension.COMPLETENESS,
    ReasonCode.MISSING_FIELD: Dimension.COMPLETENESS,
    ReasonCode.WRONG_TYPE: Dimension.ACCURACY,
    ReasonCode.BAD_TIMESTAMP: Dimension.ACCURACY,
    ReasonCode.NOT_FINITE: Dimension.ACCURACY,
    ReasonCode.OUT_OF_RANGE: Dimension.ACCURACY,
    ReasonCode.UNKNOWN_DEVICE: Dimension.CONSISTENCY,
    ReasonCode.IMPLAUSIBLE_STATE: Dimension.CONSISTENCY,
    ReasonCode.OUT_OF_ORDER: Dimension.CONSISTENCY,
    ReasonCode.DUPLICATE: Dimension.CONSISTENCY,
    ReasonCode.FUTURE_EVENT: Dimension.TIMELINESS,
    ReasonCode.LATE_EVENT: Dimension.TIMELINESS,
}

# Order in which stateless rules decide the primary reason. Stateful
# consistency rules (OUT_OF_ORDER, DUPLICATE) are applied afterwards, only to
# records that survived every dead-letter rule above.
PRECEDENCE: tuple[ReasonCode, ...] = (
    ReasonCode.OVERSIZED,
    ReasonCode.NOT_UTF8,
    ReasonCode.MALFORMED_JSON,
    ReasonCode.MISSING_FIELD,
    ReasonCode.WRONG_TYPE,
    ReasonCode.BAD_TIMESTAMP,
    ReasonCode.NOT_FINITE,
    ReasonCode.OUT_OF_RANGE,
    ReasonCode.UNKNOWN_DEVICE,
    ReasonCode.FUTURE_EVENT,
    ReasonCode.LATE_EVENT,
    ReasonCode.IMPLAUSIBLE_STATE,
    ReasonCode.OUT_OF_ORDER,
)

FIXED_DISPOSITIONS: dict[ReasonCode, Disposition] = {
    ReasonCode.OVERSIZED: Disposition.DEAD_LETTER,
    ReasonCode.NOT_UTF8: Disposition.DEAD_LETTER,
    ReasonCode.MALFORMED_JSON: Disposition.DEAD_LETTER,
    ReasonCode.MISSING_FIELD: Disposition.DEAD_LETTER,
    ReasonCode.WRONG_TYPE: Disposition.DEAD_LETTER,
    ReasonCode.BAD_TIMESTAMP: Disposition.DEAD_LETTER,
    ReasonCode.NOT_FINITE: Disposition.DEAD_LETTER,
    ReasonCode.FUTURE_EVENT: Disposition.DEAD_LETTER,
    ReasonCode.LATE_EVENT: Disposition.DEAD_LETTER,
    ReasonCode.OUT_OF_ORDER: Disposition.FLAG,
    ReasonCode.DUPLICATE: Disposition.DUPLICATE,
}

CONFIGURABLE: frozenset[ReasonCode] = frozenset(
    {ReasonCode.OUT_OF_RANGE, ReasonCode.UNKNOWN_DEVICE, ReasonCode.IMPLAUSIBLE_STATE}
)

DEFAULT_DISPOSITIONS: dict[ReasonCode, Disposition] = {
    ReasonCode.OUT_OF_RANGE: Disposition.DEAD_LETTER,
    ReasonCode.UNKNOWN_DEVICE: Disposition.DEAD_LETTER,
    ReasonCode.IMPLAUSIBLE_STATE: Disposition.FLAG,
}

# Stateless reasons: decided from one record and its arrival time alone.
STATELESS: tuple[ReasonCode, ...] = tuple(r for r in PRECEDENCE if r is not ReasonCode.OUT_OF_ORDER)

# Every reason a dead letter can carry (the ``reason`` column of the dead-letter table and topic)
# and its dimension (the ``dimension`` column).
DEAD_LETTER_DIMENSIONS: dict[str, Dimension] = {r.value: r.dimension for r in (*ReasonCode, *WriteReason)}
