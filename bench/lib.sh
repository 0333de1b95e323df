# shellcheck shell=bash
# Shared plumbing of the server benchmarks (bench/*/run.sh), sourced at
# their start: options, logging, tool installs, the scratch directory, the
# nginx origin and the edges in front of it, and, whatever the exit, daemons
# and the load generator stopped and the scratch directory removed.
#
#   PIDS+=("$pid")     a daemon to stop (TERM in reverse order, KILL after 5 s)
#   LOAD_PID=$pid      the load generator running now, killed first
#   TMP=...            the scratch directory, removed on exit
#   KEEP_TMP=1         keep $TMP for a look afterwards

log()  { echo "[bench] $*" >&2; }
warn() { echo "[bench] WARNING: $*" >&2; }
die()  { echo "[bench] ERROR: $*" >&2; exit 1; }
# want SYSTEM: whether SYSTEM is among $SYSTEMS.
want() { [[ " $SYSTEMS " == *" $1 "* ]]; }
# port_busy PORT: whether something listens on 127.0.0.1:PORT (TCP).
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# install_packages PKG...: apt-get install them (with sudo unless root).
install_packages() {
  (($#)) || return 0
  local sudo=""; [[ $EUID -ne 0 ]] && sudo=sudo
  log "installing $*"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >&2
}
# install_tools NAME[=PKG]...: install the PKG (default NAME) of each NAME not found: a command or path (command -v), or a glob with a * (no file matches).
install_tools() {
  local tool name need=()
  for tool in "$@"; do
    name=${tool%%=*}
    if [[ $name == *'*'* ]]; then
      compgen -G "$name" >/dev/null && continue
    else
      command -v "$name" >/dev/null && continue
    fi
    need+=("${tool#*=}")
  done
  install_packages "${need[@]}"
}
# quick_args LINES ARG...: the options --quick (DURATION=3 ROUNDS=1) and -h/--help (prints the script's lines LINES, e.g. 2,7).
# shellcheck disable=SC2034  # DURATION and ROUNDS are the calling script's
quick_args() {
  local lines=$1 arg; shift
  for arg in "$@"; do
    case "$arg" in
      --quick) DURATION=3; ROUNDS=1 ;;
      -h|--help) sed -n "${lines}p" "$0"; exit 0 ;;
      *) echo "unknown argument: $arg (only --quick)" >&2; exit 2 ;;
    esac
  done
}
# stamp: "<date> UTC, commit <hash>", the start of a results file's context line.
stamp() {
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')"
}

TMP=""

PIDS=()
LOAD_PID=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [[ -n $LOAD_PID ]] && kill "$LOAD_PID" 2>/dev/null || true
  local i pid
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    pid=${PIDS[i]}
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  if [[ -n ${KEEP_TMP:-} ]]; then log "kept $TMP"; elif [[ -n $TMP ]]; then rm -rf "$TMP"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# make_tmp NAME [shm]: TMP, a new scratch directory: in $BENCH_TMPDIR if set, else NAME.XXXXXX in /dev/shm (RAM) with shm and where writable, else in the temp dir.
make_tmp() {
  if [[ -n ${BENCH_TMPDIR:-} ]]; then
    TMP=$(mktemp -d -p "$BENCH_TMPDIR")
  elif [[ ${2:-} == shm && -d /dev/shm && -w /dev/shm ]]; then
    TMP=$(mktemp -d -p /dev/shm "$1.XXXXXX")
  else
    TMP=$(mktemp -d -t "$1.XXXXXX")
  fi
}

# ports_free FIRST [LAST]: dies if something listens on a port from FIRST to LAST.
ports_free() {
  local p
  for ((p = $1; p <= ${2:-$1}; p++)); do
    port_busy "$p" && die "port $p is in use (set BASE_PORT to another range)"
  done
  return 0
}

# wait_http NAME PID URL [curl args...]: until URL answers 2xx, or the pid dies, or 15 s.
wait_http() {
  local name=$1 pid=$2 url=$3; shift 3
  for _ in $(seq 150); do
    if ! kill -0 "$pid" 2>/dev/null; then warn "$name exited during startup"; return 1; fi
    curl -fsS -o /dev/null --max-time 2 "$@" "$url" 2>/dev/null && return 0
    sleep 0.1
  done
  warn "$name did not answer $url within 15 s"
  return 1
}

# run_load OUTFILE CMD...: the load generator as a background job so that a
# signal reaches the trap at once; its pid is killed there.
run_load() {
  local out=$1; shift
  "$@" >"$out" 2>&1 &
  LOAD_PID=$!
  local rc=0
  wait "$LOAD_PID" || rc=$?
  LOAD_PID=""
  return "$rc"
}

# wrk_errors FILE: the non-2xx/3xx answers and socket errors in wrk's output FILE.
wrk_errors() {
  awk '/Non-2xx or 3xx responses:/ {n += $NF}
       /Socket errors:/ {for (i = 3; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) n += $i}
       END {print n + 0}' "$1"
}

# to_ms DURATION: wrk's and h2load's durations (512.00us 1.23ms 1.02s 2.00m) in ms.
to_ms() {
  awk -v v="$1" 'BEGIN {
    if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
    else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
    else if (v ~ /m$/) { sub(/m$/, "", v); printf "%.3f", v * 60000 }
    else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
    else printf "nan" }'
}

# record_wrk OUT KEY...: appends the KEY columns and wrk's req/s, p50, p99 (ms) and errors, from wrk --latency output OUT, as one tab-separated line to $RAW; 1 if OUT does not parse.
record_wrk() {
  local out=$1 rps p50 p99; shift
  rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
  p50=$(awk '$1 == "50%" {print $2}' "$out")
  p99=$(awk '$1 == "99%" {print $2}' "$out")
  [[ -n $rps && -n $p50 && -n $p99 ]] || return 1
  printf '%s\t' "$@" >> "$RAW"
  printf '%s\t%s\t%s\t%s\n' "$rps" "$(to_ms "$p50")" "$(to_ms "$p99")" "$(wrk_errors "$out")" >> "$RAW"
}

# record_h2load OUT KEY...: as record_wrk, from h2load output OUT (its mean time per request in the p50 column, no p99).
record_h2load() {
  local out=$1 rps mean errs; shift
  rps=$(awk '/^finished in/ {for (i = 1; i <= NF; i++) if ($(i + 1) == "req/s,") print $i}' "$out")
  mean=$(awk '/^time for request:/ {print $6}' "$out")
  # "failed" includes errored and timed-out requests; non-2xx may not be in it
  errs=$(awk '/^requests:/ {for (i = 1; i < NF; i++) if ($(i + 1) ~ /^failed,?$/) f = $i}
              /^status codes:/ {for (i = 1; i < NF; i++) if ($(i + 1) ~ /^[345]xx,?$/) s += $i}
              END {print (f > s ? f : s) + 0}' "$out")
  [[ -n $rps && -n $mean ]] || return 1
  printf '%s\t' "$@" >> "$RAW"
  printf '%s\t%s\t%s\t%s\n' "$rps" "$(to_ms "$mean")" "nan" "$errs" >> "$RAW"
}

# medians RAW: per (column 1, 2, 3) of RAW's "c1 c2 c3 round rps p50 p99 errors" lines, the median req/s, p50 and p99 over rounds, errors summed, and the number of rounds, in first-seen order.
medians() {
  awk -F'\t' '
    function median(s,   a, n, t, i, j) {
      n = split(s, a, " "); if (n == 0) return "nan"
      for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] + 0 > t + 0; j--) a[j + 1] = a[j]; a[j + 1] = t }
      return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    { k = $1 "\t" $2 "\t" $3; if (!(k in rps)) order[++m] = k
      rps[k] = rps[k] " " $5; p50[k] = p50[k] " " $6; p99[k] = p99[k] " " $7; err[k] += $8; n[k]++ }
    END { for (i = 1; i <= m; i++) { k = order[i]
            printf "%s\t%s\t%s\t%s\t%s\t%d\n", k, median(rps[k]), median(p50[k]), (p99[k] ~ /nan/ ? "nan" : median(p99[k])), err[k], n[k] } }
  ' "$1"
}

# fmt_ms MS: "512 µs", "1.23 ms", or "—" for nan.
fmt_ms() { [[ $1 == nan ]] && echo "—" || awk -v v="$1" 'BEGIN { if (v < 1) printf "%.0f µs", v * 1000; else printf "%.2f ms", v }'; }

# nginx_conf PREFIX WORKERS HTTP_BODY: a self-contained nginx.conf (no /var writes).
nginx_conf() {
  local prefix=$1 workers=$2 body=$3 user=""
  [[ $EUID -eq 0 ]] && user="user root;"   # workers must read the 0700 temp dir
  mkdir -p "$prefix/tmp"
  cat > "$prefix/nginx.conf" <<EOF
$user
worker_processes $workers;
pid $prefix/nginx.pid;
error_log $prefix/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  default_type application/octet-stream;
  client_body_temp_path $prefix/tmp/body;
  proxy_temp_path       $prefix/tmp/proxy;
  fastcgi_temp_path     $prefix/tmp/fastcgi;
  uwsgi_temp_path       $prefix/tmp/uwsgi;
  scgi_temp_path        $prefix/tmp/scgi;
  sendfile on;
  # no tcp_nopush: with sendfile on loopback it stalls responses on 40 ms timers
  # (measured: 100 KiB hits at ~1.1k req/s with it, ~39k req/s without)
  tcp_nodelay on;
  keepalive_timeout 65;
  keepalive_requests 1000000;
$body
}
EOF
}

# start_nginx NAME PREFIX: runs in the foreground of a background job; pid recorded, and in LAST_PID.
start_nginx() {
  local name=$1 prefix=$2
  nginx -t -q -p "$prefix" -e "$prefix/error.log" -c "$prefix/nginx.conf" -g 'daemon off;' \
    || { cat "$prefix/error.log" >&2; die "$name: nginx config test failed"; }
  nginx -p "$prefix" -e "$prefix/error.log" -c "$prefix/nginx.conf" -g 'daemon off;' \
    >"$prefix/stdout.log" 2>&1 &
  PIDS+=($!)
  LAST_PID=$!
}

# start_origin SIZE...: the origin nginx on ORIGIN_PORT serving $TMP/www/SIZE.bin (random; SIZE like 1k or 1m) cacheable for an hour.
start_origin() {
  local size bytes
  mkdir -p "$TMP/www" "$TMP/origin"
  for size in "$@"; do
    case $size in
      *k) bytes=$((${size%k} * 1024)) ;;
      *m) bytes=$((${size%m} * 1048576)) ;;
      *) die "start_origin: size $size is not like 1k or 1m" ;;
    esac
    head -c "$bytes" /dev/urandom > "$TMP/www/$size.bin"
  done
  nginx_conf "$TMP/origin" 1 "
  server {
    listen 127.0.0.1:$ORIGIN_PORT;
    root $TMP/www;
    etag on;
    location / { add_header Cache-Control \"public, max-age=3600\" always; }
  }"
  start_nginx origin "$TMP/origin"
  wait_http origin "$LAST_PID" "http://127.0.0.1:$ORIGIN_PORT/$1.bin" || die "origin did not start"
  log "origin nginx on 127.0.0.1:$ORIGIN_PORT (pid $LAST_PID)"
}

# start_nginx_cache DIR PORT [H2C_PORT [CERT KEY]]: nginx with proxy_cache in front of the origin, 2 workers; with CERT and KEY, PORT speaks TLS (HTTP/1.1 and h2 by ALPN); pid in LAST_PID.
start_nginx_cache() {
  local dir=$1 listen="    listen 127.0.0.1:$2;"
  [[ -n ${3:-} ]] && listen+=$'\n'"    listen 127.0.0.1:$3 http2;"
  if [[ -n ${4:-} ]]; then
    listen="    listen 127.0.0.1:$2 ssl http2;
    ssl_certificate $4;
    ssl_certificate_key $5;
    ssl_protocols TLSv1.2 TLSv1.3;"
  fi
  mkdir -p "$dir/cache"
  nginx_conf "$dir" 2 "
  proxy_cache_path $dir/cache levels=1:2 keys_zone=edge:16m max_size=1g inactive=60m use_temp_path=off;
  upstream origin {
    server 127.0.0.1:$ORIGIN_PORT;
    keepalive 32;
  }
  server {
$listen
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
      proxy_cache edge;
      proxy_cache_valid 200 1h;
      proxy_cache_lock on;
      add_header X-Cache-Status \$upstream_cache_status;
    }
  }"
  start_nginx nginx "$dir"
}

# start_edge DIR ARG...: $PARAPET_EDGE with ARGs and no access log, its output in DIR; pid recorded, and in LAST_PID.
start_edge() {
  local dir=$1; shift
  mkdir -p "$dir"
  PARAPET_ACCESS_LOG=off "$PARAPET_EDGE" "$@" >"$dir/stdout.log" 2>"$dir/stderr.log" &
  PIDS+=($!); LAST_PID=$!
}

# plugins_config ID PORT ADMIN_PORT: an edge.toml (on stdout) serving PLUGINS_HOST from the origin through PLUGIN_DIR's waf, rewrite and header-filter.
plugins_config() {
  cat <<EOF
[pop]
id = "$1"

[[listener]]
address = "127.0.0.1:$2"

[admin]
address = "127.0.0.1:$3"
token = "$1"

[upstream]
allow_networks = ["127.0.0.0/8"]

# The whole instance pool for the one distribution: h2 runs hold hundreds
# of requests in flight, each with up to three plugin instances.
[shares]
plugin_instances = 1000

[[distribution]]
id = "$1"
customer = "$1"
domains = ["$PLUGINS_HOST"]

[[distribution.origin]]
url = "http://127.0.0.1:$ORIGIN_PORT"

[[distribution.plugin]]
name = "waf"
wasm = "$PLUGIN_DIR/waf.wasm"

[[distribution.plugin]]
name = "rewrite"
wasm = "$PLUGIN_DIR/rewrite.wasm"
config = { rules = [{ match = "prefix", from = "/old", to = "/new", redirect = 301 }] }

[[distribution.plugin]]
name = "headers"
wasm = "$PLUGIN_DIR/header-filter.wasm"
config = { response = { strip = ["server"], security_headers = true } }

[[distribution.behavior]]
path = "*"
viewer_request = ["waf", "rewrite"]
viewer_response = ["headers"]
EOF
}
