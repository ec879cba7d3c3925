#!/usr/bin/env bash
# timed.sh SUITE CMD...: run one test suite, record "SUITE rc seconds start end" in build/test-times/
# so `make test` can print where its minutes went (a summary table at the end; tables.sh).
set -uo pipefail
suite="$1"; shift
dir="${FMS_TEST_TIMES_DIR:-build/test-times}"
mkdir -p "$dir"
start=$(date +%s)
"$@"
rc=$?
end=$(date +%s)
echo "$suite $rc $((end - start)) $start $end" > "$dir/$suite"
exit $rc
