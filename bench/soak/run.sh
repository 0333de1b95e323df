#!/usr/bin/env bash
# Soak benchmark: the resident memory of parapet-edge under a steady load of
# 1 KiB cache hits, with nobody scraping its /metrics and with a scrape every
# second, and of nginx (proxy_cache) under the same load as the peer.
# Issue 14: an edge must not depend on being scraped to keep its memory.
#
#   bash bench/soak/run.sh                      # 90 s per run, RSS every 5 s (~8 min)
#   DURATION=30 SAMPLE_EVERY=2 TABLE_EVERY=10 bash bench/soak/run.sh   # shorter
#   RUNS="parapet:none parapet:1s" PARAPET_EDGE=/path/to/parapet-edge bash bench/soak/run.sh
#
# RUNS lists SYSTEM:SCRAPE pairs, run in order, each on a freshly started
# server: SYSTEM is parapet, parapet+plugins (waf, rewrite, header-filter
# from $PLUGIN_DIR) or nginx; SCRAPE is none or 1s (GET /metrics on the
# edge's admin listener once a second while the load runs).
set -euo pipefail

for arg in "$@"; do
  case "$arg" in
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg (settings are environment variables, see --help)" >&2; exit 2 ;;
  esac
done

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib.sh
source "$SCRIPT_DIR/../lib.sh"
REPO=$(cd "$SCRIPT_DIR/../.." && pwd)
cd "$REPO"

DURATION=${DURATION:-90}
SAMPLE_EVERY=${SAMPLE_EVERY:-5}
TABLE_EVERY=${TABLE_EVERY:-15}   # columns of the over-time table
CONNS=${CONNS:-32}
BASE_PORT=${BASE_PORT:-29080}
RUNS=${RUNS:-parapet:none parapet:1s parapet+plugins:none parapet+plugins:1s nginx:none}
PARAPET_EDGE=${PARAPET_EDGE:-${CARGO_TARGET_DIR:-target}/release/parapet-edge}
PLUGIN_DIR=${PLUGIN_DIR:-$REPO/target/plugins}
RESULTS_MD=${RESULTS_MD:-$SCRIPT_DIR/results-latest.md}
PLUGINS_HOST=bench.local

[[ $DURATION =~ ^[0-9]+$ && $DURATION -ge 1 ]] || die "DURATION must be a whole number of seconds"
[[ $SAMPLE_EVERY =~ ^[0-9]+$ && $SAMPLE_EVERY -ge 1 ]] || die "SAMPLE_EVERY must be a whole number of seconds"
[[ $TABLE_EVERY =~ ^[0-9]+$ && $TABLE_EVERY -ge 1 ]] || die "TABLE_EVERY must be a whole number of seconds"
for run in $RUNS; do
  case $run in
    parapet:none|parapet:1s|parapet+plugins:none|parapet+plugins:1s|nginx:none) ;;
    *) die "RUNS: unknown run '$run' (parapet|parapet+plugins with none|1s, or nginx:none)" ;;
  esac
done

ORIGIN_PORT=$BASE_PORT
SUT_PORT=$((BASE_PORT + 1))
ADMIN_PORT=$((BASE_PORT + 2))

# ---------------------------------------------------------------- tools
install_tools nginx wrk curl

if [[ " $RUNS " == *" parapet"* && ! -x $PARAPET_EDGE ]]; then
  die "parapet-edge not found at $PARAPET_EDGE (cargo build --release -p parapet-edge, or set PARAPET_EDGE)"
fi
if [[ " $RUNS " == *" parapet+plugins:"* ]]; then
  for w in waf rewrite header-filter; do
    [[ -f $PLUGIN_DIR/$w.wasm ]] || die "plugin $PLUGIN_DIR/$w.wasm missing (make plugins, or set PLUGIN_DIR)"
  done
fi

# ---------------------------------------------------------------- temp dir (removed on exit)
make_tmp parapet-soak shm
ports_free "$BASE_PORT" $((BASE_PORT + 2))

# stop PID: TERM, up to 5 s, KILL; and forget it.
stop() {
  local pid=$1 i keep=()
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  for i in "${PIDS[@]}"; do [[ $i == "$pid" ]] || keep+=("$i"); done
  PIDS=("${keep[@]}")
}

# rss_kib PID: resident memory of PID and its children (nginx's workers), in KiB.
rss_kib() {
  local pid=$1 total=0 p kib
  for p in "$pid" $(pgrep -P "$pid" || true); do
    kib=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || true)
    total=$((total + ${kib:-0}))
  done
  echo "$total"
}

# ---------------------------------------------------------------- origin
start_origin 1k

# ---------------------------------------------------------------- systems under test
# start_sut SYSTEM DIR: starts it on SUT_PORT (admin on ADMIN_PORT); pid in LAST_PID.
start_sut() {
  local sys=$1 dir=$2
  mkdir -p "$dir"
  case $sys in
    parapet)
      start_edge "$dir" --listen "127.0.0.1:$SUT_PORT" \
        --origin "http://127.0.0.1:$ORIGIN_PORT" --admin "127.0.0.1:$ADMIN_PORT" ;;
    parapet+plugins)
      plugins_config soak "$SUT_PORT" "$ADMIN_PORT" > "$dir/edge.toml"
      start_edge "$dir" --config "$dir/edge.toml" ;;
    nginx)
      start_nginx_cache "$dir" "$SUT_PORT" ;;
  esac
}

# ---------------------------------------------------------------- runs
SERIES=$TMP/series.tsv    # run  t_s  rss_kib
SUMMARY=$TMP/summary.tsv  # run  requests  rps  p99  max  timeouts  errors  scrapes  upkeep
: > "$SERIES"; : > "$SUMMARY"
now() { date +%s.%N; }

n=0
for run in $RUNS; do
  n=$((n + 1))
  sys=${run%%:*}; scrape=${run#*:}
  dir="$TMP/run$n"
  hdr=(); [[ $sys == parapet+plugins ]] && hdr=(-H "Host: $PLUGINS_HOST")
  url="http://127.0.0.1:$SUT_PORT/1k.bin"

  start_sut "$sys" "$dir"
  sut=$LAST_PID
  if ! wait_http "$sys" "$sut" "$url" "${hdr[@]}"; then
    tail -5 "$dir"/stderr.log "$dir"/error.log 2>/dev/null >&2 || true
    die "$sys did not start"
  fi
  curl -fsS -o /dev/null "${hdr[@]}" "$url"
  headers=$(curl -fsS -o /dev/null -D - "${hdr[@]}" "$url" | tr -d '\r')
  grep -qiE '^x-cache(-status)?: *hit' <<<"$headers" \
    || warn "$sys: the second GET was not a cache HIT: $(grep -iE '^x-cache' <<<"$headers" | paste -sd' ' -)"
  upkeep="—"
  if [[ $sys == parapet* ]]; then
    upkeep=no
    grep -qx metrics-upkeep /proc/"$sut"/task/*/comm 2>/dev/null && upkeep=yes
  fi
  sleep 1
  log "run $n: $sys, scrape $scrape, wrk -t1 -c$CONNS -d${DURATION}s, RSS every ${SAMPLE_EVERY}s (pid $sut)"

  wrk -t1 -c"$CONNS" -d"${DURATION}s" --timeout 2s --latency "${hdr[@]}" "$url" >"$dir/wrk.out" 2>&1 &
  LOAD_PID=$!
  began=$(now)

  scraper=""
  if [[ $scrape == 1s ]]; then
    ( while kill -0 "$LOAD_PID" 2>/dev/null; do
        curl -fsS -o /dev/null --max-time 5 "http://127.0.0.1:$ADMIN_PORT/metrics" && echo ok
        sleep 1
      done ) >"$dir/scrapes.log" 2>&1 &
    scraper=$!
    PIDS+=("$scraper")
  fi

  for ((t = 0; t <= DURATION; t += SAMPLE_EVERY)); do
    wait_s=$(awk -v b="$began" -v t="$t" -v n="$(now)" 'BEGIN { d = b + t - n; print (d > 0 ? d : 0) }')
    sleep "$wait_s"
    printf '%s\t%s\t%s\n' "$n" "$t" "$(rss_kib "$sut")" >> "$SERIES"
  done

  rc=0; wait "$LOAD_PID" || rc=$?
  LOAD_PID=""
  [[ -n $scraper ]] && stop "$scraper"
  ((rc == 0)) || warn "wrk exited with $rc: $(tail -2 "$dir/wrk.out" | paste -sd' ' -)"
  requests=$(awk '/requests in/ {print $1}' "$dir/wrk.out")
  rps=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$dir/wrk.out")
  p99=$(awk '$1 == "99%" {print $2}' "$dir/wrk.out")
  max=$(awk '$1 == "Latency" {print $4}' "$dir/wrk.out")
  timeouts=$(awk '/Socket errors:/ {for (i = 1; i < NF; i++) if ($(i + 1) ~ /^timeout/) print $i + 0}' "$dir/wrk.out")
  errors=$(wrk_errors "$dir/wrk.out")
  scrapes=0; [[ -n $scraper ]] && scrapes=$(grep -c '^ok$' "$dir/scrapes.log" || true)
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$n" "${requests:-0}" "${rps:-0}" "${p99:-?}" \
    "${max:-?}" "${timeouts:-0}" "$errors" "$scrapes" "$upkeep" >> "$SUMMARY"
  log "run $n: ${requests:-?} requests, ${rps:-?} req/s, RSS $(awk -F'\t' -v n="$n" '$1 == n {printf "%s%d", s, $3 / 1024; s = " "}' "$SERIES") MiB"
  stop "$sut"
  sleep 1
done

# ---------------------------------------------------------------- report
{
  echo "# Soak: resident memory under steady 1 KiB cache hits"
  echo
  echo "$(stamp), \
$(nproc) cores shared by wrk, the server and the origin (load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)); \
$(nginx -v 2>&1 | sed 's/^nginx version: //'), $(wrk -v 2>&1 | head -1 | awk '{print $1, $2}')."
  echo "Each run: a freshly started server, one 1 KiB object warmed into its cache, then \`wrk -t1 -c$CONNS -d${DURATION}s --timeout 2s\`;"
  echo "resident memory (VmRSS; nginx: master and workers summed) every ${SAMPLE_EVERY} s. Scrape 1s: \`GET /metrics\` on the admin listener once a second."
  echo
  printf '| run | system | upkeep thread | scrape | requests | req/s | p99 | max | timeouts | RSS at 0 s | RSS at end | peak | growth | bytes/request |\n'
  printf '|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n'
  n=0
  for run in $RUNS; do
    n=$((n + 1))
    IFS=$'\t' read -r _ requests rps p99 max timeouts errors scrapes upkeep < <(awk -F'\t' -v n="$n" '$1 == n' "$SUMMARY")
    read -r first last peak < <(awk -F'\t' -v n="$n" '$1 == n { if (!c++) f = $3; l = $3; if ($3 > p) p = $3 } END { print f, l, p }' "$SERIES")
    scrape_note=${run#*:}; [[ $scrape_note == 1s ]] && scrape_note="1s ($scrapes)"
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %.1f MiB | %.1f MiB | %.1f MiB | %+.1f MiB | %s |\n' \
      "$n" "${run%%:*}" "$upkeep" "$scrape_note" "$requests" "$rps" "$p99" "$max" "$timeouts" \
      "$(awk -v k="$first" 'BEGIN {print k / 1024}')" "$(awk -v k="$last" 'BEGIN {print k / 1024}')" \
      "$(awk -v k="$peak" 'BEGIN {print k / 1024}')" "$(awk -v a="$first" -v b="$last" 'BEGIN {print (b - a) / 1024}')" \
      "$(awk -v a="$first" -v b="$last" -v r="$requests" 'BEGIN { if (r > 0) printf "%.2f", (b - a) * 1024 / r; else print "—" }')"
    [[ $errors == 0 ]] || warn "run $n: $errors errors or non-2xx answers"
  done
  echo
  echo "Resident memory over time (MiB):"
  echo
  # a column every TABLE_EVERY seconds and the last sample; all samples count for the peak above
  last=$(( DURATION / SAMPLE_EVERY * SAMPLE_EVERY ))
  header="| run |"; rule="|---|"
  for ((t = 0; t <= DURATION; t += SAMPLE_EVERY)); do
    ((t % TABLE_EVERY == 0 || t == last)) || continue
    header+=" ${t} s |"; rule+="---:|"
  done
  echo "$header"; echo "$rule"
  n=0
  for run in $RUNS; do
    n=$((n + 1))
    awk -F'\t' -v n="$n" -v name="$n $run" -v every="$TABLE_EVERY" -v last="$last" '
      $1 == n && ($2 % every == 0 || $2 == last) { row = row sprintf(" %.0f |", $3 / 1024) }
      END { print "| " name " |" row }' "$SERIES"
  done
} | tee "$RESULTS_MD"
log "written to $RESULTS_MD"
