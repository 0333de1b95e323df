# Shared plumbing of the server benchmarks (bench/*/run.sh), sourced at
# their start: logging, package installs, and, whatever the exit, daemons
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
