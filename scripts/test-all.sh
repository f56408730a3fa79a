#!/usr/bin/env bash
# `make test` after the format check: the release suite, the ASan+UBSan suite, the fuzz targets,
# each failing the run. The release build must be there (make's `build`).
#   scripts/test-all.sh JOBS FUZZ_SECONDS
#
# The release tests mostly wait on real time (the tests holding the `realtime` lock run one at a
# time, and that chain is the suite's length), so the ASan build runs beside them at nice 19: it gets
# only the CPU they leave idle, and the realtime tests keep theirs. The fuzz build likewise runs
# beside the ASan tests. A build's output is in build/<name>-build.log, shown when it fails.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs="${1:-$(nproc)}"
fuzz_seconds="${2:-10}"

mkdir -p build
bg_pid=""
stop_background() {
  if [ -n "$bg_pid" ]; then
    kill -- "-$bg_pid" 2>/dev/null || true
    wait "$bg_pid" 2>/dev/null || true
    bg_pid=""
  fi
}
trap stop_background EXIT

# Starts "$@" at nice 19 in its own process group (so that it can be stopped whole), output to LOG.
start_background() {
  local log="$1"
  shift
  set -m
  nice -n 19 "$@" >"$log" 2>&1 &
  bg_pid=$!
  set +m
}

# Waits for the background build; on failure shows its output and fails.
finish_background() {
  local name="$1" log="$2" rc=0
  wait "$bg_pid" || rc=$?
  bg_pid=""
  if [ "$rc" -ne 0 ]; then
    cat "$log" >&2
    echo "make test: the $name build failed (exit $rc; its output above, in $log)" >&2
    exit 1
  fi
}

cmake --preset asan >/dev/null
start_background build/asan-build.log cmake --build --preset asan -j "$jobs"
ctest --preset release
finish_background asan build/asan-build.log

start_background build/fuzz-build.log env BUILD_JOBS="$jobs" bash fuzz/run.sh --build-only
ctest --preset asan
finish_background fuzz build/fuzz-build.log

BUILD_JOBS="$jobs" bash fuzz/run.sh "$fuzz_seconds"
echo "make test: release, asan and fuzz suites passed"
