"""Failure prediction jobs: ``python -m fms_jobs.prediction {eval,train,generate} --help``.

* ``eval`` - the offline evaluation behind ``make predict-eval`` (its last line is JSON);
* ``train`` - train on processed Parquet (the lake, or a generated fleet) and write a
  versioned model with its validation report to a Hadoop path (HDFS on the cluster);
* ``generate`` - write a simulated fleet as processed Parquet.
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m fms_jobs.prediction", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("eval", help="train, evaluate on held-out fleets, benchmark, report")
    e.add_argument("--out", default="build/predict-eval")
    e.add_argument("--scale", default="full", choices=["full", "small"])
    e.add_argument("--master", default="local[1]")
    e.add_argument("--docs", default=None, help="markdown report path (a PNG is written beside it)")
    e.add_argument("--no-benchmark", action="store_true")
    t = sub.add_parser("train", help="train on processed Parquet, write <out>/<version>/")
    t.add_argument("--processed", required=True, nargs="+", help="processed Parquet path(s)")
    t.add_argument("--out", required=True, help="model directory (any Hadoop path)")
    t.add_argument("--master", default=None)
    t.add_argument("--horizon-min", type=float, default=30.0)
    t.add_argument("--target-precision", type=float, default=0.95)
    g = sub.add_parser("generate", help="write a simulated fleet as processed Parquet")
    g.add_argument("--out", required=True)
    g.add_argument("--name", default="fleet")
    g.add_argument("--devices", type=int, default=10)
    g.add_argument("--days", type=float, default=1.0)
    g.add_argument("--seed", type=int, default=42)
    g.add_argument("--failure-rate", type=float, default=0.5)
    g.add_argument("--noise", type=float, default=1.0)
    a = p.parse_args(argv)

    if a.cmd == "eval":
        from fms_jobs.prediction.drill import run

        report = run(a.out, a.scale, a.master, a.docs, benchmark=not a.no_benchmark)
        print(json.dumps(report["summary"]), flush=True)
        return 0
    if a.cmd == "train":
        from fms_jobs.prediction.features import min_std_from_rules
        from fms_jobs.prediction.train import TrainParams, save, train
        from fms_jobs.quality.rulebook import load_rules
        from fms_jobs.sparkutil.session import build_session

        spark = build_session("fms-predict-train", a.master)
        try:
            params = TrainParams(horizon_min=a.horizon_min, target_precision=a.target_precision)
            model = train(
                spark,
                spark.read.parquet(*a.processed),
                params,
                min_std=min_std_from_rules(load_rules()),
                log=lambda m: print(m, file=sys.stderr, flush=True),
            )
            path = save(model, spark, a.out)
        finally:
            spark.stop()
        print(json.dumps({"version": model.version, "path": path, "threshold": model.threshold.to_json()}))
        return 0
    from fms_jobs.prediction.fleet import FleetSpec, write_fleet

    spec = FleetSpec(
        a.name, a.devices, a.days, a.seed, failure_rate_per_day=a.failure_rate, noise_scale=a.noise
    )
    print(write_fleet(spec, a.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
