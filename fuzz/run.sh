#!/usr/bin/env bash
# Builds the libFuzzer targets with clang into build/fuzz and runs each for SECONDS (default 60).
# The seed corpora in fuzz/corpus/<target> are read, never written: new inputs go to
# build/fuzz/corpus/<target>, crashes to build/fuzz/artifacts/. Exits non-zero on the first crash.
# --build-only builds and runs nothing (`make test` builds beside the ASan tests).
#   fuzz/run.sh [SECONDS] [TARGET...]
#   fuzz/run.sh --build-only
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(fuzz_http_request fuzz_range fuzz_token fuzz_hls fuzz_api_json fuzz_rtsp_request)
cxx="${FUZZ_CXX:-$(command -v clang++-14 || command -v clang++)}"

cmake -S fuzz -B build/fuzz -G Ninja -DCMAKE_CXX_COMPILER="$cxx" >/dev/null
if [ "$seconds" = "--build-only" ]; then
  exec cmake --build build/fuzz -j "${BUILD_JOBS:-$(nproc)}"
fi
cmake --build build/fuzz -j "${BUILD_JOBS:-$(nproc)}" >/dev/null

mkdir -p build/fuzz/artifacts
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
for t in "${targets[@]}"; do
  mkdir -p "build/fuzz/corpus/$t"
  echo "fuzz: $t for ${seconds}s"
  if ! "build/fuzz/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -max_len=16384 -print_final_stats=0 -artifact_prefix="build/fuzz/artifacts/$t-" \
      "build/fuzz/corpus/$t" "fuzz/corpus/$t" >"build/fuzz/$t.log" 2>&1; then
    tail -n 60 "build/fuzz/$t.log" >&2
    echo "fuzz: $t found a crash; reproduce with build/fuzz/$t build/fuzz/artifacts/$t-*" >&2
    exit 1
  fi
  grep -E "DONE" "build/fuzz/$t.log" | tail -n 1 || true
done
echo "fuzz: ${#targets[@]} targets, ${seconds}s each, no crash"
