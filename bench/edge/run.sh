#!/usr/bin/env bash
# Cache-HIT benchmark: parapet-edge vs nginx (proxy_cache) vs Varnish, all in
# front of one nginx origin on loopback. See bench/edge/README.md.
#
#   bash bench/edge/run.sh            # full run (DURATION=10 ROUNDS=3)
#   bash bench/edge/run.sh --quick    # DURATION=3 ROUNDS=1
#   SYSTEMS="nginx parapet" SIZES=1k DURATION=5 bash bench/edge/run.sh
set -euo pipefail

# ---------------------------------------------------------------- settings
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib.sh
source "$SCRIPT_DIR/../lib.sh"
quick_args 2,7 "$@"
REPO=$(cd "$SCRIPT_DIR/../.." && pwd)
cd "$REPO"

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
SIZES=${SIZES:-1k 100k 1m}
SYSTEMS=${SYSTEMS:-nginx varnish parapet parapet+plugins}
PROTOCOLS=${PROTOCOLS:-h1 h2}
CONNS=${CONNS:-32}
H2_STREAMS=${H2_STREAMS:-10}
BASE_PORT=${BASE_PORT:-28080}
PARAPET_EDGE=${PARAPET_EDGE:-${CARGO_TARGET_DIR:-target}/release/parapet-edge}
PLUGIN_DIR=${PLUGIN_DIR:-$REPO/target/plugins}
RESULTS_MD=${RESULTS_MD:-$SCRIPT_DIR/results-latest.md}
PLUGINS_HOST=bench.local

SIZES=${SIZES//,/ }
for s in $SIZES; do
  [[ $s == 1k || $s == 100k || $s == 1m ]] || { echo "SIZES: unknown size '$s' (1k 100k 1m)" >&2; exit 2; }
done
SYSTEMS=${SYSTEMS//,/ }
SYSTEMS=${SYSTEMS//parapet-plugins/parapet+plugins}
PROTOCOLS=${PROTOCOLS//,/ }

ORIGIN_PORT=$BASE_PORT
NGINX_PORT=$((BASE_PORT + 1))
NGINX_H2_PORT=$((BASE_PORT + 2))   # nginx 1.22: a plain `http2` listener speaks only h2c
VARNISH_PORT=$((BASE_PORT + 3))
PARAPET_PORT=$((BASE_PORT + 4))
PARAPET_ADMIN=$((BASE_PORT + 5))
PPLUG_PORT=$((BASE_PORT + 6))
PPLUG_ADMIN=$((BASE_PORT + 7))


# ---------------------------------------------------------------- tools
install_tools nginx varnishd=varnish wrk h2load=nghttp2-client curl
# Debian starts the packaged services on install where allowed; we never use them.

# ---------------------------------------------------------------- temp dir (removed on exit)
make_tmp parapet-bench shm   # keep nginx's file cache in RAM
ports_free "$BASE_PORT" $((BASE_PORT + 7))

# ---------------------------------------------------------------- origin
start_origin 1k 100k 1m

# ---------------------------------------------------------------- systems under test
declare -A PORT H2PORT HOSTHDR
ACTIVE=()


if want nginx; then
  start_nginx_cache "$TMP/nginx" "$NGINX_PORT" "$NGINX_H2_PORT"
  if wait_http nginx "$LAST_PID" "http://127.0.0.1:$NGINX_PORT/1k.bin"; then
    ACTIVE+=(nginx); PORT[nginx]=$NGINX_PORT; H2PORT[nginx]=$NGINX_H2_PORT
    log "nginx proxy_cache on 127.0.0.1:$NGINX_PORT (h2c: $NGINX_H2_PORT, pid $LAST_PID)"
  else
    tail -5 "$TMP/nginx/error.log" >&2 || true
  fi
fi

if want varnish; then
  mkdir -p "$TMP/varnish"
  cat > "$TMP/varnish/default.vcl" <<EOF
vcl 4.1;
backend default { .host = "127.0.0.1"; .port = "$ORIGIN_PORT"; }
EOF
  # -j none: the default unix jail drops to user varnish, which can't read the 0700 temp dir.
  varnishd -F -j none -a "127.0.0.1:$VARNISH_PORT" -f "$TMP/varnish/default.vcl" \
    -n "$TMP/varnish/work" -s malloc,256m -p feature=+http2 \
    >"$TMP/varnish/varnishd.log" 2>&1 &
  PIDS+=($!); LAST_PID=$!
  if wait_http varnish "$LAST_PID" "http://127.0.0.1:$VARNISH_PORT/1k.bin"; then
    ACTIVE+=(varnish); PORT[varnish]=$VARNISH_PORT; H2PORT[varnish]=$VARNISH_PORT
    log "varnish on 127.0.0.1:$VARNISH_PORT (pid $LAST_PID)"
  else
    tail -5 "$TMP/varnish/varnishd.log" >&2 || true
  fi
fi

PARAPET_OK=1
if want parapet || want parapet+plugins; then
  if [[ ! -x $PARAPET_EDGE ]]; then
    echo "NOTICE: parapet-edge binary not found at $PARAPET_EDGE (set PARAPET_EDGE); benchmarking without it." >&2
    PARAPET_OK=0
  fi
fi

if want parapet && ((PARAPET_OK)); then
  start_edge "$TMP/parapet" --listen "127.0.0.1:$PARAPET_PORT" \
    --origin "http://127.0.0.1:$ORIGIN_PORT" --admin "127.0.0.1:$PARAPET_ADMIN" ${PARAPET_ARGS:-}
  if wait_http parapet "$LAST_PID" "http://127.0.0.1:$PARAPET_PORT/1k.bin"; then
    ACTIVE+=(parapet); PORT[parapet]=$PARAPET_PORT; H2PORT[parapet]=$PARAPET_PORT
    log "parapet-edge on 127.0.0.1:$PARAPET_PORT (pid $LAST_PID)"
  else
    echo "NOTICE: parapet-edge did not start; skipping it. Its stderr:" >&2
    tail -5 "$TMP/parapet/stderr.log" >&2 || true
  fi
fi

if want parapet+plugins && ((PARAPET_OK)); then
  mkdir -p "$TMP/pplug"
  missing=()
  for w in waf rewrite header-filter; do
    [[ -f $PLUGIN_DIR/$w.wasm ]] || missing+=("$PLUGIN_DIR/$w.wasm")
  done
  if ((${#missing[@]})); then
    echo "NOTICE: plugin components missing (${missing[*]}; build them with make); skipping parapet+plugins." >&2
  else
    plugins_config bench "$PPLUG_PORT" "$PPLUG_ADMIN" > "$TMP/pplug/edge.toml"
    # A binary that can check configs says what is wrong with this one before we start it.
    if "$PARAPET_EDGE" --help 2>&1 | grep -q -- --check-config \
        && ! "$PARAPET_EDGE" --check-config "$TMP/pplug/edge.toml" >"$TMP/pplug/check.log" 2>&1; then
      warn "parapet-edge --check-config refused the generated config:"
      cat "$TMP/pplug/check.log" >&2
    fi
    start_edge "$TMP/pplug" --config "$TMP/pplug/edge.toml"
    if wait_http parapet+plugins "$LAST_PID" "http://127.0.0.1:$PPLUG_PORT/1k.bin" -H "Host: $PLUGINS_HOST"; then
      ACTIVE+=(parapet+plugins); PORT[parapet+plugins]=$PPLUG_PORT
      H2PORT[parapet+plugins]=$PPLUG_PORT; HOSTHDR[parapet+plugins]=$PLUGINS_HOST
      log "parapet-edge + plugins on 127.0.0.1:$PPLUG_PORT (pid $LAST_PID)"
    else
      echo "NOTICE: parapet-edge --config did not start; skipping parapet+plugins. Its stderr:" >&2
      tail -5 "$TMP/pplug/stderr.log" >&2 || true
    fi
  fi
fi

((${#ACTIVE[@]})) || die "no system under test started"

# ---------------------------------------------------------------- warm + hit check
# is_hit SYSTEM HEADERS_FILE: 0 hit, 1 miss, 2 undetectable
is_hit() {
  local sys=$1 h=$2
  case $sys in
    nginx) grep -qi '^x-cache-status: *hit' "$h" ;;
    varnish)
      # X-Varnish carries two ids on a hit; Age > 0 also means it came from cache.
      grep -qiE '^x-varnish: *[0-9]+ +[0-9]+' "$h" && return 0
      grep -qiE '^age: *[1-9]' "$h" ;;
    parapet*) grep -qi '^x-cache: *hit' "$h" ;;
    *) return 2 ;;
  esac
}

for sys in "${ACTIVE[@]}"; do
  hdr=()
  [[ -n ${HOSTHDR[$sys]:-} ]] && hdr=(-H "Host: ${HOSTHDR[$sys]}")
  for size in $SIZES; do
    url="http://127.0.0.1:${PORT[$sys]}/$size.bin"
    curl -fsS -o /dev/null "${hdr[@]}" "$url" || warn "$sys: warm-up GET $url failed"
    code=$(curl -sS -o "$TMP/body" -D "$TMP/headers" -w '%{http_code}' "${hdr[@]}" "$url" || true)
    if [[ $code != 200 ]]; then
      warn "$sys $size: second GET answered $code"
    elif ! cmp -s "$TMP/body" "$TMP/www/$size.bin"; then
      warn "$sys $size: body differs from the origin's file"
    elif ! is_hit "$sys" "$TMP/headers"; then
      warn "$sys $size: second GET was not a detectable cache HIT: $(tr -d '\r' < "$TMP/headers" | grep -iE '^(x-cache|x-cache-status|x-varnish|age):' | paste -sd' ' -)"
    fi
  done
done

# Which systems speak h2c with prior knowledge (and answer 200 that way)?
declare -A H2OK
if [[ " $PROTOCOLS " == *" h2 "* ]]; then
  for sys in "${ACTIVE[@]}"; do
    hdr=()
    [[ -n ${HOSTHDR[$sys]:-} ]] && hdr=(-H ":authority: ${HOSTHDR[$sys]}")
    first=${SIZES%% *}
    if h2load -n4 -c1 -t1 "${hdr[@]}" "http://127.0.0.1:${H2PORT[$sys]}/$first.bin" 2>&1 \
        | grep -qE '^status codes: 4 2xx'; then
      H2OK[$sys]=1
    else
      echo "NOTICE: $sys does not serve h2c with prior knowledge here; h2 skipped for it." >&2
    fi
  done
fi

# ---------------------------------------------------------------- load
RAW=$TMP/raw.tsv   # size proto system round rps p50_ms p99_ms errors
: > "$RAW"

n_active=${#ACTIVE[@]}
for ((round = 1; round <= ROUNDS; round++)); do
  for size in $SIZES; do
    for proto in $PROTOCOLS; do
      # rotate the system order each round so no system always follows the same one
      for ((k = 0; k < n_active; k++)); do
        sys=${ACTIVE[$(((k + round - 1) % n_active))]}
        out="$TMP/out.$round.$size.$proto.$sys"
        if [[ $proto == h1 ]]; then
          log "round $round/$ROUNDS: $sys $size h1 (wrk -t1 -c$CONNS -d${DURATION}s)"
          hdr=()
          [[ -n ${HOSTHDR[$sys]:-} ]] && hdr=(-H "Host: ${HOSTHDR[$sys]}")
          if ! run_load "$out" wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "${hdr[@]}" \
              "http://127.0.0.1:${PORT[$sys]}/$size.bin"; then
            warn "wrk failed for $sys $size: $(tail -2 "$out" | paste -sd' ' -)"; continue
          fi
          record_wrk "$out" "$size" h1 "$sys" "$round" \
            || { warn "could not parse wrk output for $sys $size"; continue; }
        else
          [[ -n ${H2OK[$sys]:-} ]] || continue
          log "round $round/$ROUNDS: $sys $size h2 (h2load -c$CONNS -m$H2_STREAMS -D $DURATION)"
          hdr=()
          [[ -n ${HOSTHDR[$sys]:-} ]] && hdr=(-H ":authority: ${HOSTHDR[$sys]}")
          if ! run_load "$out" h2load -t1 -c"$CONNS" -m"$H2_STREAMS" -D "$DURATION" "${hdr[@]}" \
              "http://127.0.0.1:${H2PORT[$sys]}/$size.bin"; then
            warn "h2load failed for $sys $size: $(tail -2 "$out" | paste -sd' ' -)"; continue
          fi
          record_h2load "$out" "$size" h2 "$sys" "$round" \
            || { warn "could not parse h2load output for $sys $size"; continue; }
        fi
        [[ $(tail -1 "$RAW" | cut -f8) == 0 ]] || warn "$sys $size $proto: $(tail -1 "$RAW" | cut -f8) errors/non-2xx"
        sleep 1
      done
    done
  done
done

# ---------------------------------------------------------------- report
# median across rounds of each metric, per (size, proto, system)
MED=$TMP/median.tsv
medians "$RAW" > "$MED"

{
  echo "# Edge cache-HIT benchmark"
  echo
  echo "2-core VM; load generator and server share the cores."
  echo
  echo "$(stamp); \
$(nginx -v 2>&1 | sed 's/^nginx version: //'), $(varnishd -V 2>&1 | head -1 | sed 's/^varnishd (\(varnish-[0-9.]*\).*/\1/'), \
$(wrk -v 2>&1 | head -1 | awk '{print $1, $2}'), $(h2load --version 2>&1 | head -1)."
  echo "Each run: ${DURATION}s, $CONNS connections (h2: $H2_STREAMS streams each), 1 load-generator thread; \
median of $ROUNDS round(s), systems alternated within each round. Systems run: ${ACTIVE[*]}."
  echo "Latency: h1 = wrk percentiles; h2 = h2load's mean per request (h2load has no percentiles), shown in the p50 column."
  echo
  echo "| object | protocol | system | req/s (median) | p50 | p99 | ratio req/s vs best of nginx/varnish |"
  echo "|---|---|---|---:|---:|---:|---:|"
  for size in $SIZES; do
    for proto in $PROTOCOLS; do
      base=$(awk -F'\t' -v s="$size" -v p="$proto" '$1 == s && $2 == p && ($3 == "nginx" || $3 == "varnish") && $4 > b {b = $4} END {print b + 0}' "$MED")
      while IFS=$'\t' read -r s p sys rps p50 p99 errs n; do
        [[ $s == "$size" && $p == "$proto" ]] || continue
        ratio="—"
        [[ $base != 0 ]] && ratio=$(awk -v a="$rps" -v b="$base" 'BEGIN {printf "%.2f", a / b}')
        lat50=$(fmt_ms "$p50"); [[ $p == h2 ]] && lat50="$lat50 (mean)"
        note=""; [[ $errs != 0 ]] && note=" ($errs errors)"
        printf '| %s | %s | %s | %s%s | %s | %s | %s |\n' "$size" "$p" "$sys" \
          "$(awk -v v="$rps" 'BEGIN {printf "%.0f", v}')" "$note" "$lat50" "$(fmt_ms "$p99")" "$ratio"
      done < "$MED"
    done
  done
  echo
  for proto in $PROTOCOLS; do
    a=$(awk -F'\t' -v p="$proto" '$1 == "1k" && $2 == p && $3 == "parapet+plugins" {print $4}' "$MED")
    b=$(awk -F'\t' -v p="$proto" '$1 == "1k" && $2 == p && $3 == "parapet" {print $4}' "$MED")
    if [[ -n $a && -n $b ]]; then
      echo "parapet+plugins / parapet throughput ratio, 1k $proto: $(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.2f", a / b}')"
    fi
  done
} | tee "$RESULTS_MD"
log "written to $RESULTS_MD"
