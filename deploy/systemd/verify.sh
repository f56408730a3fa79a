#!/bin/sh
# Checks every unit here with `systemd-analyze verify`, the vodgrid they start being BINARY (the
# units name /usr/bin/vodgrid, which a build tree does not have). Any complaint fails: verify
# itself exits 0 on settings it ignores.
# usage: verify.sh BINARY
set -eu
binary=$1
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for unit in "$here"/*.service; do
  name=$(basename "$unit")
  # A template is checked as an instance of it.
  case $name in *@.service) name=$(echo "$name" | sed 's/@\.service$/@home.service/') ;; esac
  sed "s#/usr/bin/vodgrid#$binary#" "$unit" > "$work/$name"
done
if ! out=$(cd "$work" && systemd-analyze verify ./*.service 2>&1) || [ -n "$out" ]; then
  echo "$out" >&2
  echo "systemd-analyze verify: the units above are not clean" >&2
  exit 1
fi
echo "verified: $(cd "$work" && ls ./*.service | tr '\n' ' ')"
