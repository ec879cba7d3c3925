#!/usr/bin/env bash
# Print the per-suite timing table of the last `make test` (lines written by timed.sh).
set -euo pipefail
dir="${FMS_TEST_TIMES_DIR:-build/test-times}"
compgen -G "$dir/*" >/dev/null || exit 0
echo
echo "== make test: wall-clock minutes per suite (the lab runs beside the offline suites) =="
sort -k4n "$dir"/* | awk '
  NR == 1 { first = $4 }
  { rows[NR] = $0; if ($5 > last) last = $5 }
  END {
    printf "%-18s %4s %8s %11s %12s\n", "suite", "rc", "minutes", "started at", "CPU minutes"
    for (i = 1; i <= NR; i++) {
      split(rows[i], f, " ")
      printf "%-18s %4s %8.1f %8.1f min %12.1f\n", f[1], f[2], f[3] / 60, (f[4] - first) / 60, f[6] / 60
    }
    printf "%-18s %4s %8.1f\n", "make test", "", (last - first) / 60
  }'
