#!/bin/sh
# Every metric a daemon exports (a quoted "vodgrid_..." name in src/) is in docs/operations.md's
# metrics table (issue 14: every metric documented). Prints the missing ones; exit 1 if any.
root=${1:-$(dirname "$0")/..}
missing=0
for m in $(grep -rhoE '"vodgrid_[a-z0-9_]+"' "$root/src" | tr -d '"' | sort -u); do
  if ! grep -q "\`$m" "$root/docs/operations.md"; then
    echo "not documented in docs/operations.md: $m" >&2
    missing=1
  fi
done
exit $missing
