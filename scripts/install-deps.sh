#!/usr/bin/env bash
# Installs the Debian packages vodgrid builds, tests and benchmarks with. Idempotent: it asks apt
# only for what is missing, so a second run costs a dpkg query.
set -euo pipefail

pkgs=(
  build-essential cmake ninja-build ccache lld pkg-config clang-format clang-14 libclang-rt-14-dev
  libboost1.81-dev libboost-json1.81-dev libboost-url1.81-dev
  libssl-dev libsodium-dev libsqlite3-dev libpq-dev postgresql libcurl4-openssl-dev
  libavformat-dev libavcodec-dev libavutil-dev libavfilter-dev libswscale-dev libswresample-dev
  libspdlog-dev libfmt-dev libcli11-dev libtomlplusplus-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  ffmpeg curl openssl python3 procps util-linux
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  glib-networking
  systemd file iso-codes
  chromium libnss3-tools
  prometheus
  iproute2
  patroni python3-etcd etcd-server etcd-client
)
# patroni, python3-etcd (its etcd client), etcd-server, etcd-client: the highly available registry
# database of registry_ha_test and bench/registry_ha (tests/support/patroni.h starts its own cluster
# as the user postgres in temporary folders; the packages' system services, where systemd starts
# them, are neither used nor touched).
# lld: the linker of both builds (CMakeLists.txt): it links a test binary in a quarter of GNU ld's time.
# openssl: the command tls_test makes its CA and certificates with (libssl-dev does not bring it).
# iproute2: ip and tc, the hosts and shaped links of the multi-host tests (tests/support/netns.h)
# and scripts/netns-grid.
# glib-networking: GLib's TLS, which GStreamer's rtspsrc needs for rtsps:// (tests/rtsps_test.cc;
# today also pulled in by gstreamer1.0-plugins-good through libsoup, but the test needs it itself).
# libnss3-tools: certutil, which puts a test CA in a temporary NSS database that the browser test's
# Chromium trusts (tests/browser/lib.mjs, the hls.js test over HTTPS).
# prometheus: promtool checks deploy/prometheus/ and prometheus_test runs its own server (free port,
# storage in a temporary folder). Where systemd runs, the package also starts a system service on
# :9090; the tests neither use nor disturb it.
# node and npm: Debian's, unless a node with its npm is already there (NodeSource's nodejs carries
# npm and conflicts with Debian's npm package).
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  pkgs+=(nodejs npm)
fi
if [ "${1:-}" = "--bench" ]; then
  pkgs+=(nginx wrk iperf3 util-linux)
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -q
  "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# The npm packages, at the versions their package-lock.json pins: hls.js for the watch page (web/,
# served by the directors) and puppeteer-core for the browser test (tests/browser/). npm ci runs
# only when node_modules is older than the lock file (npm writes node_modules/.package-lock.json).
root="$(cd "$(dirname "$0")/.." && pwd)"
for dir in "$root/web" "$root/tests/browser"; do
  if [ ! "$dir/node_modules/.package-lock.json" -nt "$dir/package-lock.json" ]; then
    echo "npm ci in ${dir#"$root"/}"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  fi
done
