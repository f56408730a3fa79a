#!/usr/bin/env bash
# Builds registry_bench (the registry's location database on SQLite and PostgreSQL, side by side)
# and runs it with the arguments given, e.g.
#   bash bench/registry_bench.sh                      # 10^7 locations, 10 s per phase
#   bash bench/registry_bench.sh --locations 1000000 --seconds 3
# Knobs (environment): BUILD_DIR (default build/release, configured with the release preset if
# missing), BUILD_JOBS (default 2). See registry_bench --help for the arguments.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"
build="${BUILD_DIR:-$repo/build/release}"
if [ ! -f "$build/build.ninja" ] && [ ! -f "$build/Makefile" ]; then
  if [ -z "${BUILD_DIR:-}" ]; then
    (cd "$repo" && cmake --preset release >/dev/null)
  else
    cmake -S "$repo" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
  fi
fi
cmake --build "$build" --target registry_bench -j "${BUILD_JOBS:-2}" >/dev/null
load="$(cut -d' ' -f1 /proc/loadavg)"
if awk -v l="$load" 'BEGIN { exit !(l > 0.5) }'; then
  echo "registry_bench.sh: load average $load: other work skews the figures (take figures for the record on an idle machine)" >&2
fi
exec "$build/bench/registry_bench" "$@"
