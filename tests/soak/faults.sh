#!/usr/bin/env bash
# Soak under faults (issue 10): the embedded grid of `vodgrid up` (each station under its
# `vodgrid station` supervisor), a program ingested (remuxed, one rendition), real-time viewers at the edge
# for MINUTES, and a fault injected every 15 s, in turn:
#   SIGKILL of an edge engine · SIGSTOP of an edge engine (SIGCONT 5 s later) · SIGKILL of the edge
#   director · SIGSTOP of the registry (SIGCONT 5 s later) · SIGKILL of a home engine · SIGSTOP of
#   the edge director (SIGCONT 5 s later)
# The engines and directors are the supervisors' to restart. At the end it prints the viewers'
# failed segments (goal 0), stalls and the longest stall, the faults, and the supervisors'
# restarts; it exits 1 if any segment failed.
#
#   tests/soak/faults.sh [--minutes 10] [--viewers 200] [--every 15] [--vodgrid PATH]
#
# By hand: the 10-minute, 200-viewer run (docs/operations.md quotes it). CI runs a 2-minute version
# (tests/CMakeLists.txt, release build only). KEEP=1 keeps the grid's folder.
set -euo pipefail

minutes=10
viewers=200
every=15
vodgrid="$(cd "$(dirname "$0")/../.." && pwd)/build/release/src/cli/vodgrid"
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) minutes="$2"; shift 2 ;;
    --viewers) viewers="$2"; shift 2 ;;
    --every) every="$2"; shift 2 ;;
    --vodgrid) vodgrid="$2"; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "faults.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -x "$vodgrid" ] || { echo "faults.sh: no vodgrid binary at $vodgrid (make build)" >&2; exit 2; }
for tool in ffmpeg python3 flock pgrep curl; do
  command -v "$tool" >/dev/null || { echo "faults.sh: $tool is not installed" >&2; exit 2; }
done

data=$(mktemp -d /tmp/vodgrid-soak.XXXXXX)
up_pid=""
play_pid=""
cleanup() {
  [ -n "$play_pid" ] && kill "$play_pid" 2>/dev/null || true
  if [ -n "$up_pid" ]; then
    pkill -CONT -f -- "--config $data/grid/grid.toml" 2>/dev/null || true  # nothing left stopped
    kill -TERM "$up_pid" 2>/dev/null || true
    wait "$up_pid" 2>/dev/null || true
  fi
  if [ "${KEEP:-}" = 1 ]; then echo "faults.sh: kept $data"; else rm -rf "$data"; fi
}
trap cleanup EXIT

# A base port whose 30 ports nothing uses, claimed as the test suite claims ports (a lock file per
# port under /tmp/vodgrid-test-ports), so that tests running beside it never take one.
ports_dir=/tmp/vodgrid-test-ports
mkdir -p "$ports_dir"
claim_range() {
  local base=$1 p
  for ((p = base; p < base + 30; p++)); do
    exec {fd}>"$ports_dir/$p" || return 1
    flock -n "$fd" || return 1
    python3 -c "import socket,sys; s=socket.socket(); s.bind(('127.0.0.1', $p))" 2>/dev/null ||
      return 1
  done
}
base=""
for _ in $(seq 1 50); do
  candidate=$((20000 + (RANDOM % 400) * 30))
  if (claim_range "$candidate"); then  # probe in a subshell: its locks go with it
    claim_range "$candidate" && base=$candidate && break
  fi
done
[ -n "$base" ] || { echo "faults.sh: no free range of 30 ports" >&2; exit 2; }
registry="http://127.0.0.1:$base"
edge="http://127.0.0.1:$((base + 20))"

"$vodgrid" up --base-port "$base" --data "$data/grid" >"$data/up.log" 2>&1 &
up_pid=$!
for _ in $(seq 1 600); do
  grep -q '^ready' "$data/up.log" && break
  kill -0 "$up_pid" 2>/dev/null || { cat "$data/up.log" >&2; echo "faults.sh: vodgrid up failed" >&2; exit 1; }
  sleep 0.1
done
grep -q '^ready' "$data/up.log" || { echo "faults.sh: the grid did not come up" >&2; exit 1; }
config="$data/grid/grid.toml"

seconds=$((minutes * 60))
ffmpeg -nostdin -loglevel error -y -f lavfi -i "testsrc2=size=320x180:rate=25:d=$seconds" \
  -f lavfi -i "sine=d=$seconds" -c:v libx264 -preset ultrafast -g 50 -c:a aac "$data/soak.mp4"
VODGRID_TOKEN=$("$vodgrid" login --user admin --password admin --operator --grid "$registry")
export VODGRID_TOKEN
"$vodgrid" ingest "$data/soak.mp4" --title Soak --id soak --remux --grid "$registry" >"$data/ingest.log" 2>&1 ||
  { cat "$data/ingest.log" >&2; echo "faults.sh: the ingest failed" >&2; exit 1; }
viewer=$("$vodgrid" login --user demo --password demo --grid "$registry")

echo "soak: $viewers real-time viewers of a ${minutes}-minute program at the edge ($edge), a fault every ${every} s"
VODGRID_TOKEN="" "$vodgrid" play "$edge/v1/programs/soak/index.m3u8" --token "$viewer" \
  --viewers "$viewers" --realtime --json >"$data/play.json" 2>"$data/play.err" &
play_pid=$!

pid_of() {  # role name: the pid of that daemon of this grid
  pgrep -f -- "vodgrid $1 --config $config --name $2\$" | head -n 1
}
stop_for() {  # role name seconds: SIGSTOP now, SIGCONT later (the supervisor may kill it first)
  local pid
  pid=$(pid_of "$1" "$2")
  [ -n "$pid" ] || { echo "  (no $1 $2 running)"; return; }
  kill -STOP "$pid"
  (sleep "$3"; kill -CONT "$pid" 2>/dev/null || true) &
}
kill_one() {
  local pid
  pid=$(pid_of "$1" "$2")
  [ -n "$pid" ] || { echo "  (no $1 $2 running)"; return; }
  kill -KILL "$pid"
}
# Whether the grid is whole again: the registry sees both stations, each director all its engines.
home="http://127.0.0.1:$((base + 10))"
whole() {
  curl -s -m 1 "$registry/healthz" | grep -q '"stations_up":2' &&
    curl -s -m 1 "$home/healthz" | grep -q '"engines_up":2' &&
    curl -s -m 1 "$edge/healthz" | grep -q '"engines_up":3'
}
# Waits (at most until the next fault is due) until the daemon hit answers /healthz again — it is
# probed at once, so that it is seen down first — and the grid is whole; prints the milliseconds.
recovery() {
  local t_fault=$1 url=$2 deadline=$(($(date +%s%N) + (every - 1) * 1000000000)) seen_down=0
  while [ "$(date +%s%N)" -lt "$deadline" ]; do
    if curl -s -f -m 0.3 "$url/healthz" >/dev/null; then
      if [ $seen_down = 1 ] && whole; then
        echo "$((($(date +%s%N) - t_fault) / 1000000))"
        return
      fi
    else
      seen_down=1
    fi
    sleep 0.05
  done
  echo "-1"
}
registry_name=registry
faults=0
step=0
t0=$(date +%s)
recovered=""
next_fault=$(($(date +%s) + every))
while kill -0 "$play_pid" 2>/dev/null; do
  while [ "$(date +%s)" -lt "$next_fault" ] && kill -0 "$play_pid" 2>/dev/null; do sleep 0.2; done
  next_fault=$((next_fault + every))
  kill -0 "$play_pid" 2>/dev/null || break
  t_fault=$(date +%s%N)
  n=$((step % 3 + 1))
  case $((step % 6)) in
    0) what="SIGKILL engine edge-$n"; kill_one engine "edge-$n"; hit=$((base + 20 + n)) ;;
    1) what="SIGSTOP engine edge-$n for 5 s"; stop_for engine "edge-$n" 5; hit=$((base + 20 + n)) ;;
    2) what="SIGKILL director edge"; kill_one director edge; hit=$((base + 20)) ;;
    3) what="SIGSTOP registry for 5 s"; stop_for registry "$registry_name" 5; hit=$base ;;
    4) h=$(((step / 6) % 2 + 1)); what="SIGKILL engine home-$h"; kill_one engine "home-$h"; hit=$((base + 10 + h)) ;;
    5) what="SIGSTOP director edge for 5 s"; stop_for director edge 5; hit=$((base + 20)) ;;
  esac
  step=$((step + 1))
  faults=$((faults + 1))
  ms=$(recovery "$t_fault" "http://127.0.0.1:$hit")
  if [ "$ms" -ge 0 ]; then
    echo "  $(($(date +%s) - t0)) s: $what; the grid whole again after $((ms / 1000)).$(printf %03d $((ms % 1000))) s"
  else
    echo "  $(($(date +%s) - t0)) s: $what; the grid NOT whole again before the next fault"
  fi
  recovered+="$what|$ms"$'\n'
done
set +e
wait "$play_pid"
play_status=$?
play_pid=""
set -e

restarts=0
for port in $((base + 19)) $((base + 29)); do
  r=$(curl -s "http://127.0.0.1:$port/metrics" |
    awk '/^vodgrid_station_restarts_total/ {s += $2} END {print s + 0}')
  restarts=$((restarts + ${r%.*}))
done
printf '%s' "$recovered" >"$data/recovery.txt"
python3 - "$data/play.json" "$faults" "$restarts" "$play_status" "$data/recovery.txt" <<'EOF'
import json, sys
path, faults, restarts, status = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
worst = {}
for line in open(sys.argv[5]).read().splitlines():
    what, ms = line.rsplit("|", 1)
    words = what.split(" for ")[0].split()
    words[-1] = words[-1].rstrip("-0123456789")
    kind = " ".join(words)
    worst.setdefault(kind, []).append(int(ms))
try:
    r = json.load(open(path))
except Exception as e:
    print(f"soak: no report from vodgrid play (exit {status}): {e}")
    sys.exit(1)
print(f"soak: viewers {r['viewers']}  segments {r['segments']}  failed segments {r['segments_failed']}  "
      f"stalls {r['stalls']}  longest stall {r['longest_stall']:.2f} s  retries {r['retries']}  "
      f"digest mismatches {r['digest_mismatches']}  wall {r['seconds']:.0f} s")
print(f"soak: faults injected {faults}  blades restarted by the supervisors {restarts}")
for kind, times in worst.items():
    done = [t for t in times if t >= 0]
    longest = f"{max(done) / 1000:.2f} s" if done else "-"
    print(f"soak: {kind}: {len(times)} times, whole again after at most {longest}"
          + (f", {len(times) - len(done)} times not before the next fault" if len(done) < len(times) else ""))
for e in r["errors"][:5]:
    print("soak: error: " + e)
ok = status == 0 and r["segments_failed"] == 0 and r["digest_mismatches"] == 0
print("soak: " + ("ok" if ok else "FAILED"))
sys.exit(0 if ok else 1)
EOF
