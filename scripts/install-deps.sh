#!/usr/bin/env bash
# Installs the Debian packages vodgrid builds, tests and benchmarks with. Idempotent: it asks apt
# only for what is missing, so a second run costs a dpkg query.
set -euo pipefail

pkgs=(
  build-essential cmake ninja-build ccache pkg-config clang-format clang-14 libclang-rt-14-dev
  libboost1.81-dev libboost-json1.81-dev libboost-url1.81-dev
  libssl-dev libsodium-dev libsqlite3-dev libpq-dev postgresql libcurl4-openssl-dev
  libavformat-dev libavcodec-dev libavutil-dev libavfilter-dev libswscale-dev libswresample-dev
  libspdlog-dev libfmt-dev libcli11-dev libtomlplusplus-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  ffmpeg curl python3 procps util-linux
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  systemd file
)
if [ "${1:-}" = "--bench" ]; then
  pkgs+=(nginx wrk iperf3 util-linux)
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing: ${missing[*]}"
sudo_cmd=()
[ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -q
"${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
