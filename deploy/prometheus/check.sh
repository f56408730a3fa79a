#!/bin/sh
# Checks the shipped monitoring config with Debian's promtool: the scrape config (with the rule
# files it loads), the rules, and the rules' unit tests. The suite runs it
# (`Deploy.PrometheusRulesCheckAndTestClean`); scripts/install-deps.sh installs promtool.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
if ! command -v promtool >/dev/null; then
  echo "check.sh: promtool not found (Debian's prometheus package; run scripts/install-deps.sh)" >&2
  exit 1
fi
cd "$here"
promtool check config prometheus.yml
promtool check rules rules/*.yml
promtool test rules tests/*.yml
