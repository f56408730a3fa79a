# Helpers shared by the benchmark scripts in bench/ (sourced, not run). Bash only; the tools are
# nginx, wrk, iperf3, taskset, curl, ss, and openssl for the TLS ones (scripts/install-deps.sh --bench
# installs them).
#
# Knobs (environment):
#   VODGRID        the vodgrid binary (default: build/release/src/cli/vodgrid)
#   BENCH_ROUNDS   alternating rounds per configuration (default 3; the median is reported)
#   BENCH_SECONDS  seconds per wrk run (default 10)
#   BENCH_CONNS    wrk connections (default 32)
#   SERVER_CPU     core the server under test is pinned to (default 0)
#   CLIENT_CPU     core wrk / the iperf3 client is pinned to (default 1)
#   BENCH_TMP      where the temporary directory is made (default /tmp)

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$BENCH_DIR/.." && pwd)"
VODGRID="${VODGRID:-$REPO_DIR/build/release/src/cli/vodgrid}"
BENCH_ROUNDS="${BENCH_ROUNDS:-3}"
BENCH_SECONDS="${BENCH_SECONDS:-10}"
BENCH_CONNS="${BENCH_CONNS:-32}"
SERVER_CPU="${SERVER_CPU:-0}"
CLIENT_CPU="${CLIENT_CPU:-1}"

die() { echo "$(basename "$0"): $*" >&2; exit 1; }

need_tools() {
  local t
  for t in "$@"; do
    command -v "$t" >/dev/null 2>&1 ||
      die "$t is missing; run: bash scripts/install-deps.sh --bench (or make deps-bench)"
  done
}

need_vodgrid() {
  [ -x "$VODGRID" ] ||
    die "no vodgrid binary at $VODGRID; build it: cmake --preset release && cmake --build --preset release --target vodgrid"
}

# --- processes and cleanup -------------------------------------------------------------------

BENCH_PIDS=()
BENCH_WORK=""

bench_cleanup() {
  local rc=$? p i
  # Ask politely (daemons drain on SIGTERM), then insist.
  for p in "${BENCH_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for i in $(seq 1 50); do
    local alive=0
    for p in "${BENCH_PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive -eq 0 ] && break
    sleep 0.1
  done
  for p in "${BENCH_PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  for p in "${BENCH_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ -n "$BENCH_WORK" ] && [ -d "$BENCH_WORK" ] && [ -z "${BENCH_KEEP:-}" ]; then
    rm -rf "$BENCH_WORK"
  fi
  exit $rc
}

bench_init() {
  BENCH_WORK="$(mktemp -d "${BENCH_TMP:-/tmp}/vodgrid-bench.XXXXXX")"
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM
}

# Runs a private copy of the vodgrid binary, so that a rebuild during the run cannot change it.
snapshot_vodgrid() {
  cp "$VODGRID" "$BENCH_WORK/vodgrid" || die "cannot copy $VODGRID"
  VODGRID="$BENCH_WORK/vodgrid"
}

# Runs "$@" in the background pinned to $SERVER_CPU, output to the log $1 (first argument).
start_pinned() {
  local log="$1"; shift
  taskset -c "$SERVER_CPU" "$@" >"$log" 2>&1 &
  BENCH_PIDS+=($!)
  LAST_PID=$!
}

# Stops one process this script started (by pid) and waits for it.
stop_pid() {
  local p="$1" i q keep=()
  kill -TERM "$p" 2>/dev/null || true
  for i in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
  for q in "${BENCH_PIDS[@]}"; do [ "$q" = "$p" ] || keep+=("$q"); done
  BENCH_PIDS=("${keep[@]}")
}

# --- ports and readiness ---------------------------------------------------------------------

# free_port VAR: sets VAR to a port in 20000-32767 (below Linux's ephemeral range, from which the
# daemons' own outgoing connections take their local ports) nobody listens on and this script has not
# handed out yet (not in a subshell, so that the ports handed out are remembered).
USED_PORTS=" "
free_port() {
  local p i
  for i in $(seq 1 200); do
    p=$((20000 + RANDOM % 12768))
    case "$USED_PORTS" in *" $p "*) continue ;; esac
    if [ -z "$(ss -Htln "sport = :$p" 2>/dev/null)" ]; then
      USED_PORTS+="$p "
      printf -v "$1" '%s' "$p"
      return 0
    fi
  done
  die "no free port found in 20000-32767"
}

# Options every curl of a script takes (e.g. "--cacert DIR/ca.crt" for https URLs; see make_tls).
CURL_TLS=()

# wait_http URL [SECONDS] [LOG]: waits until URL answers 2xx.
wait_http() {
  local url="$1" secs="${2:-15}" log="${3:-}" i
  for i in $(seq 1 $((secs * 10))); do
    curl "${CURL_TLS[@]}" -fsS -o /dev/null --max-time 1 "$url" 2>/dev/null && return 0
    sleep 0.1
  done
  [ -n "$log" ] && [ -f "$log" ] && tail -20 "$log" >&2
  die "$url did not answer within ${secs}s"
}

# --- TLS ------------------------------------------------------------------------------------

# make_tls DIR: a CA (DIR/ca.crt) and a leaf for 127.0.0.1 signed by it (DIR/leaf.crt, DIR/leaf.key,
# 0600), ECDSA P-256 as tests/tls_grid_test.cc makes them; sets CURL_TLS to trust the CA.
make_tls() {
  local d="$1" key="-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
  mkdir -p "$d"
  (
    cd "$d" && umask 077 &&
      openssl req -x509 $key -keyout ca.key -out ca.crt -days 3 -subj /CN=vodgrid-bench-ca &&
      openssl req $key -keyout leaf.key -out leaf.csr -subj /CN=127.0.0.1 &&
      printf 'subjectAltName=IP:127.0.0.1\n' >san.cnf &&
      openssl x509 -req -in leaf.csr -CA ca.crt -CAkey ca.key -set_serial "0x$(openssl rand -hex 8)" \
        -days 2 -extfile san.cnf -out leaf.crt
  ) >"$d/openssl.log" 2>&1 || { cat "$d/openssl.log" >&2; die "openssl could not make the certificates"; }
  CURL_TLS=(--cacert "$d/ca.crt")
}

# The TLS 1.2 cipher list of the engine (net::tls12_ciphers in src/net/tls.cc), for nginx.
tls12_ciphers() {
  local c
  c="$(sed -n '/tls12_ciphers =/,/;/p' "$REPO_DIR/src/net/tls.cc" | grep -o '"[^"]*"' | tr -d '"\n')"
  [ -n "$c" ] || die "no tls12_ciphers in src/net/tls.cc"
  echo "$c"
}

# The kernel's TLS (kTLS): "yes" when the tls upper-layer protocol is available.
ktls_note() {
  if grep -qw tls /proc/sys/net/ipv4/tcp_available_ulp 2>/dev/null; then
    echo "kTLS: available on this kernel, but neither server here uses it (both encrypt in user space)"
  else
    echo "kTLS: not on this kernel (tcp_available_ulp: $(cat /proc/sys/net/ipv4/tcp_available_ulp 2>/dev/null));" \
      "both servers encrypt in user space and cannot use sendfile"
  fi
}

# --- nginx -----------------------------------------------------------------------------------

# start_nginx DIR SERVER_BLOCK: runs nginx (one worker, sendfile on, no access log, not a daemon)
# with its prefix, pid file and temp paths in DIR, pinned to $SERVER_CPU. Sets NGINX_PID.
start_nginx() {
  local dir="$1" server_block="$2" user_line=""
  mkdir -p "$dir/logs"
  # As root, the worker would switch to 'nobody' and could not read our private temp directory.
  [ "$(id -u)" -eq 0 ] && user_line="user root root;"
  cat >"$dir/nginx.conf" <<EOF
$user_line
daemon off;
master_process on;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 4096; }
http {
  types { video/mp2t ts; }
  default_type application/octet-stream;
  access_log off;
  sendfile on;
  keepalive_timeout 65s;
  keepalive_requests 1000000;  # vodgrid keeps a connection for any number of requests; so does nginx here
  client_body_temp_path $dir/client_body;
  proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fastcgi;
  uwsgi_temp_path $dir/uwsgi;
  scgi_temp_path $dir/scgi;
  $server_block
}
EOF
  start_pinned "$dir/logs/stderr.log" nginx -e "$dir/logs/error.log" -p "$dir" -c "$dir/nginx.conf"
  NGINX_PID=$LAST_PID
}

# --- measuring -------------------------------------------------------------------------------

# "proc busy total" jiffies of one CPU from /proc/stat: proc is user + nice + system (what processes
# ran, to compare with their own utime + stime); busy is everything but idle and iowait (with the
# softirq time where loopback TCP does much of its work).
cpu_jiffies() {
  awk -v c="cpu$1" '$1 == c { t = 0; for (i = 2; i <= NF; i++) t += $i; print $2 + $3 + $4, t - $5 - $6, t }' /proc/stat
}

# Sum of utime + stime (clock ticks, every thread) of the given processes; pass every pid to count
# (nginx's master and its worker, every vodgrid daemon of the station).
proc_ticks() {
  local t=0 p
  for p in "$@"; do
    [ -r "/proc/$p/stat" ] && t=$((t + $(awk '{ print $14 + $15 }' "/proc/$p/stat")))
  done
  echo "$t"
}
proc_user_ticks() {  # utime only
  local t=0 p
  for p in "$@"; do
    [ -r "/proc/$p/stat" ] && t=$((t + $(awk '{ print $14 }' "/proc/$p/stat")))
  done
  echo "$t"
}

CLK_TCK=$(getconf CLK_TCK)
BENCH_RETRIES="${BENCH_RETRIES:-2}"
BENCH_FOREIGN_MAX="${BENCH_FOREIGN_MAX:-10}"

# run_wrk URL LUA_SCRIPT: wrk pinned to $CLIENT_CPU against the processes $SERVER_PIDS (space
# separated). Sets W_REQS W_RPS W_BYTES W_ERRS W_P50 W_P99 (microseconds), S_CPU and C_CPU (how busy
# the two cores were, %), W_US_REQ (the server processes' CPU time per request, microseconds; W_US_USER
# its user-space part) and
# W_FOREIGN (CPU time of anything else on the two cores, % of one core). A run with W_FOREIGN above
# BENCH_FOREIGN_MAX is repeated, up to BENCH_RETRIES times (W_RETRIES counts them), whichever server.
run_wrk() {
  W_RETRIES=0
  while :; do
    run_wrk_once "$@"
    if [ "$W_FOREIGN" -le "$BENCH_FOREIGN_MAX" ] || [ "$W_RETRIES" -ge "$BENCH_RETRIES" ]; then
      break
    fi
    W_RETRIES=$((W_RETRIES + 1))
    echo "  (other work took ${W_FOREIGN}% of a core during the run: running it again)" >&2
    sleep 5
  done
}

run_wrk_once() {
  local url="$1" lua="$2" out s0p s0b s0t c0p c0b c0t s1p s1b s1t c1p c1b c1t p0 p1 u0 u1
  read -r s0p s0b s0t < <(cpu_jiffies "$SERVER_CPU")
  read -r c0p c0b c0t < <(cpu_jiffies "$CLIENT_CPU")
  p0=$(proc_ticks ${SERVER_PIDS:-}); u0=$(proc_user_ticks ${SERVER_PIDS:-})
  # `times` in the subshell prints the shell's own CPU time, then its children's (wrk's), last.
  out="$( (taskset -c "$CLIENT_CPU" wrk -t1 -c"$BENCH_CONNS" -d"${BENCH_SECONDS}s" -s "$lua" "$url" 2>&1 &&
    times) )" || { echo "$out" >&2; die "wrk failed against $url"; }
  p1=$(proc_ticks ${SERVER_PIDS:-}); u1=$(proc_user_ticks ${SERVER_PIDS:-})
  read -r s1p s1b s1t < <(cpu_jiffies "$SERVER_CPU")
  read -r c1p c1b c1t < <(cpu_jiffies "$CLIENT_CPU")
  local st=$((s1t - s0t > 0 ? s1t - s0t : 1)) ct=$((c1t - c0t > 0 ? c1t - c0t : 1))
  S_CPU=$(( (s1b - s0b) * 100 / st ))
  C_CPU=$(( (c1b - c0b) * 100 / ct ))
  local wrk_ticks
  wrk_ticks=$(tail -1 <<<"$out" | awk -v hz="$CLK_TCK" '{
      n = 0; for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); n += a[1] * 60 + a[2] } printf "%.0f", n * hz }')
  W_FOREIGN=$(( ((s1p - s0p) + (c1p - c0p) - (p1 - p0) - wrk_ticks) * 100 / st ))
  [ "$W_FOREIGN" -lt 0 ] && W_FOREIGN=0
  local line
  line="$(grep '^WRK_RESULT' <<<"$out")" || { echo "$out" >&2; die "no result from wrk"; }
  W_REQS=$(sed -E 's/.* requests=([0-9]+).*/\1/' <<<"$line")
  W_BYTES=$(sed -E 's/.* bytes=([0-9]+).*/\1/' <<<"$line")
  local dur_us
  dur_us=$(sed -E 's/.* duration_us=([0-9]+).*/\1/' <<<"$line")
  W_ERRS=$(sed -E 's/.* errors=([0-9]+).*/\1/' <<<"$line")
  W_RPS=$(awk -v r="$W_REQS" -v d="$dur_us" 'BEGIN { printf "%.0f", r / (d / 1e6) }')
  W_P50=$(sed -E 's/.* p50_us=([0-9]+).*/\1/' <<<"$line")
  W_P99=$(sed -E 's/.* p99_us=([0-9]+).*/\1/' <<<"$line")
  W_US_REQ=$(awk -v t=$((p1 - p0)) -v hz="$CLK_TCK" -v n="$W_REQS" 'BEGIN { v = 0; if (n > 0) v = t / hz * 1e6 / n; printf "%.1f", v }')
  W_US_USER=$(awk -v t=$((u1 - u0)) -v hz="$CLK_TCK" -v n="$W_REQS" 'BEGIN { v = 0; if (n > 0) v = t / hz * 1e6 / n; printf "%.1f", v }')
  if [ "$W_ERRS" != "0" ]; then
    echo "warning: $W_ERRS failed or unexpected responses against $url: $line" >&2
  fi
}

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else { v = (a[NR / 2] + a[NR / 2 + 1]) / 2; if (v == int(v)) printf "%d\n", v; else printf "%.1f\n", v } }'; }
maximum() { tr ' ' '\n' | grep -v '^$' | sort -g | tail -1; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

load_note() {
  local l
  l="$(cut -d' ' -f1 /proc/loadavg)"
  echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name:[[:space:]]*//p'), load average $l"
  awk -v l="$l" 'BEGIN { exit !(l > 0.5) }' &&
    echo "warning: load average $l > 0.5: other work on this machine skews the figures" >&2
  return 0
}
