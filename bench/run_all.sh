#!/usr/bin/env bash
# Runs every benchmark in bench/ (what `make bench` calls): the loopback ceiling first, then the
# engine against nginx, the director against nginx and the push streams against iperf3 -u, and
# prints the summary lines together at the end. Takes about (2 cases x 2 servers + 2) x
# BENCH_ROUNDS x BENCH_SECONDS, about 4 minutes with the defaults, and 8-10 minutes for the push
# streams (BENCH_SKIP_PUSH=1 leaves them out). Knobs: see bench/lib.sh and bench/push_streams.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

echo "== vodgrid benchmarks, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo
loop="$(bash "$here/loopback_ceiling")"
echo "$loop"
export LOOPBACK_GBPS
LOOPBACK_GBPS="$(sed -n 's/^loopback ceiling (sendfile[^:]*: \([0-9.]*\) Gbit\/s.*/\1/p' <<<"$loop")"
echo
engine="$(bash "$here/engine_vs_nginx")"
echo "$engine"
echo
director="$(bash "$here/director_vs_nginx")"
echo "$director"
push=""
if [ -z "${BENCH_SKIP_PUSH:-}" ]; then
  echo
  push="$(bash "$here/push_streams")"
  echo "$push"
fi
echo
echo "== summary (goal: every ratio >= 1.0; push streams: >= 0.7 of iperf3 -u, p99 jitter < 2 ms)"
grep '^loopback ceiling' <<<"$loop"
grep '^ratio ' <<<"$engine"
grep '^ratio ' <<<"$director"
[ -n "$push" ] && grep '^sessions held at zero loss' <<<"$push"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
