"""What a benchmark environment provides (loopback or lab), and the load generators' arguments."""

from __future__ import annotations

import re
from typing import Any

from fms_tools.bench.metrics import Snapshot, scrape
from fms_tools.fmsops.platform_contract import load as load_platform

# The pipeline's topics and the producer ceiling's scratch topic: platform.yml `topics`.
RAW, DLQ, CEILING = (load_platform().topic(key).name for key in ("raw", "dlq", "bench_ceiling"))


class Environment:
    bootstrap: str
    metrics_url: str
    exact_lag = False  # the stream read the topic from its first offset (lag = offsets - records in)

    def snapshot(self) -> Snapshot:
        """The streaming driver's metrics now."""
        return scrape(self.metrics_url)

    def end_offsets(self) -> int:
        raise NotImplementedError

    def start_generators(
        self, rate: float, n: int, devices: int, first_id: int, seconds: float, seed: int
    ) -> list[Any]:
        raise NotImplementedError

    def stop_generators(self, procs: list[Any], timeout: float) -> None:
        raise NotImplementedError

    def kafka_ceiling(self, records: int, record_size: int, partitions: int) -> tuple[float | None, str]:
        raise NotImplementedError

    def close(self) -> None:
        pass


def collector_args(
    bootstrap: str, rate: float, devices: int, first: int, seconds: float, seed: int
) -> list[str]:
    return [
        "--source",
        "simulator",
        "--bootstrap-servers",
        bootstrap,
        "--devices",
        str(devices),
        "--rate",
        f"{rate:.3f}",
        "--duration",
        f"{seconds:.1f}",
        "--seed",
        str(seed),
        "--metrics-port",
        "0",
        "--first-device-id",
        str(first),
        "--log-level",
        "WARNING",
    ]


def generator_slices(rate: float, n: int, devices: int, first_id: int) -> list[tuple[float, int, int]]:
    """(rate, devices, first device id) per generator: the fleet split into n contiguous slices."""
    n = max(1, min(n, devices))
    base, extra = divmod(devices, n)
    out, first = [], first_id
    for i in range(n):
        count = base + (1 if i < extra else 0)
        out.append((rate * count / devices, count, first))
        first += count
    return out


# the collector's producer settings (fms_jobs/collector/config.py KafkaConfig defaults)
PERF_PROPS = "acks=all enable.idempotence=true compression.type=zstd linger.ms=20 batch.size=1000000"


def parse_perf(output: str) -> float | None:
    """records/sec of kafka-producer-perf-test's final summary line (the one with percentiles).

    The tool prints interval lines ("N records sent, R records/sec (...), A ms avg latency, M ms max
    latency.") every 5 s and one summary line that adds "... 50th, ... 95th, ..."; an interrupted
    run has no summary line -> None.
    """
    best = None
    for line in output.splitlines():
        if "records sent" in line and "records/sec" in line and "50th" in line:
            try:
                best = float(line.split(",")[1].strip().split()[0])
            except (IndexError, ValueError):
                continue
    return best


def parse_offsets(output: str, topic: str) -> int | None:
    """Sum of `topic:partition:offset` lines (kafka-get-offsets.sh, the lab probe); None if none."""
    total, seen = 0, False
    for line in output.splitlines():
        m = re.fullmatch(rf"{re.escape(topic)}:(\d+):(\d+)", line.strip())
        if m:
            total += int(m.group(2))
            seen = True
    return total if seen else None
