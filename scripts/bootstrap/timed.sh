#!/usr/bin/env bash
# timed.sh SUITE CMD...: run one test suite, record "SUITE rc seconds start end cpu_seconds" in
# build/test-times/ so `make test` can print where its minutes went (test_times.sh).
# FMS_TEST_NICE=N runs the suite at that niceness: the offline suites yield the CPU to the lab's
# critical path (site.yml, the lab's JVMs) and use what it leaves while the lab waits.
set -uo pipefail
suite="$1"; shift
dir="${FMS_TEST_TIMES_DIR:-build/test-times}"
mkdir -p "$dir"
start=$(date +%s)
if [ -n "${FMS_TEST_NICE:-}" ]; then
  nice -n "$FMS_TEST_NICE" "$@"
else
  "$@"
fi
rc=$?
end=$(date +%s)
# CPU of every process the suite waited for (user + system), from the shell's `times`
# (redirected, not piped: a pipe would run it in a subshell that has no children).
times > "$dir/.$suite.times"
cpu=$(sed -n 2p "$dir/.$suite.times" | awk '{
  s = 0
  for (i = 1; i <= 2; i++) { split($i, p, "m"); sub("s", "", p[2]); s += p[1] * 60 + p[2] }
  printf "%.0f", s }')
rm -f "$dir/.$suite.times"
echo "$suite $rc $((end - start)) $start $end $cpu" > "$dir/$suite"
exit $rc
