#!/usr/bin/env bash
# TLS cache-HIT benchmark: parapet-edge vs nginx (proxy_cache), both
# terminating TLS with the same ECDSA P-256 certificate in front of one nginx
# origin on loopback. See bench/edge/README.md.
#
#   bash bench/edge/tls.sh            # full run (DURATION=10 ROUNDS=3)
#   bash bench/edge/tls.sh --quick    # DURATION=3 ROUNDS=1
#   SIZES=1k MODES="h2 h1-new" bash bench/edge/tls.sh
set -euo pipefail

# ---------------------------------------------------------------- settings
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib.sh
source "$SCRIPT_DIR/../lib.sh"
quick_args 2,8 "$@"
REPO=$(cd "$SCRIPT_DIR/../.." && pwd)
cd "$REPO"

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
SIZES=${SIZES:-1k 100k}
# h1: HTTP/1.1 over TLS, keep-alive; h2: h2 over TLS (ALPN), keep-alive;
# h1-new: a new TLS connection per request (the handshake-bound case).
MODES=${MODES:-h1 h2 h1-new}
CONNS=${CONNS:-32}
H2_STREAMS=${H2_STREAMS:-10}
BASE_PORT=${BASE_PORT:-28180}
PARAPET_EDGE=${PARAPET_EDGE:-${CARGO_TARGET_DIR:-target}/release/parapet-edge}
RESULTS_MD=${RESULTS_MD:-$SCRIPT_DIR/results-tls-latest.md}
# The certificate's name; it resolves to loopback everywhere, so wrk sends
# it as SNI without a hosts entry.
NAME=localhost

SIZES=${SIZES//,/ }
MODES=${MODES//,/ }
for m in $MODES; do
  [[ $m == h1 || $m == h2 || $m == h1-new ]] || { echo "MODES: unknown mode '$m' (h1 h2 h1-new)" >&2; exit 2; }
done
[[ -x $PARAPET_EDGE ]] || die "parapet-edge not found at $PARAPET_EDGE (cargo build --release -p parapet-edge, or set PARAPET_EDGE)"

ORIGIN_PORT=$BASE_PORT
NGINX_PORT=$((BASE_PORT + 1))
PARAPET_PORT=$((BASE_PORT + 2))

install_tools nginx wrk h2load=nghttp2-client curl openssl
make_tmp parapet-tls shm
ports_free "$BASE_PORT" $((BASE_PORT + 2))
start_origin $SIZES

# ---------------------------------------------------------------- certificate
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj "/CN=$NAME" -addext "subjectAltName=DNS:$NAME" \
  -keyout "$TMP/key.pem" -out "$TMP/cert.pem" 2>/dev/null \
  || die "openssl could not make the ECDSA P-256 certificate"

# ---------------------------------------------------------------- systems under test
declare -A PORT=([nginx]=$NGINX_PORT [parapet]=$PARAPET_PORT)
ACTIVE=()

# nginx: TLS and h2 on one port; keepalive_requests (nginx_conf) is raised so
# that neither h1 nor h2 connections are closed mid-run.
start_nginx_cache "$TMP/nginx" "$NGINX_PORT" "" "$TMP/cert.pem" "$TMP/key.pem"
if wait_http nginx "$LAST_PID" "https://$NAME:$NGINX_PORT/1k.bin" -k --resolve "$NAME:$NGINX_PORT:127.0.0.1"; then
  ACTIVE+=(nginx)
  log "nginx proxy_cache with TLS on 127.0.0.1:$NGINX_PORT (pid $LAST_PID)"
else
  tail -5 "$TMP/nginx/error.log" >&2 || true
fi

mkdir -p "$TMP/parapet"
cat > "$TMP/parapet/edge.toml" <<EOF
[pop]
id = "tls"

[[listener]]
address = "127.0.0.1:$PARAPET_PORT"
tls = true

[upstream]
allow_networks = ["127.0.0.0/8"]

[[distribution]]
id = "tls"
customer = "tls"
domains = ["$NAME"]
tls = { cert = "$TMP/cert.pem", key = "$TMP/key.pem" }

[[distribution.origin]]
url = "http://127.0.0.1:$ORIGIN_PORT"

[[distribution.behavior]]
path = "*"
EOF
start_edge "$TMP/parapet" --config "$TMP/parapet/edge.toml"
if wait_http parapet "$LAST_PID" "https://$NAME:$PARAPET_PORT/1k.bin" -k --resolve "$NAME:$PARAPET_PORT:127.0.0.1"; then
  ACTIVE+=(parapet)
  log "parapet-edge with TLS on 127.0.0.1:$PARAPET_PORT (pid $LAST_PID)"
else
  tail -5 "$TMP/parapet/stderr.log" >&2 || true
fi
((${#ACTIVE[@]})) || die "no system under test started"

# ---------------------------------------------------------------- warm + checks
for sys in "${ACTIVE[@]}"; do
  resolve=(--resolve "$NAME:${PORT[$sys]}:127.0.0.1")
  for size in $SIZES; do
    url="https://$NAME:${PORT[$sys]}/$size.bin"
    curl -fsSk -o /dev/null "${resolve[@]}" "$url" || warn "$sys: warm-up GET $url failed"
    code=$(curl -sSk -o "$TMP/body" -D "$TMP/headers" -w '%{http_code} %{http_version}' --http2 "${resolve[@]}" "$url" || true)
    if [[ $code != "200 2" ]]; then
      warn "$sys $size: second GET (h2 over TLS) answered '$code'"
    elif ! cmp -s "$TMP/body" "$TMP/www/$size.bin"; then
      warn "$sys $size: body differs from the origin's file"
    elif ! grep -qiE '^x-cache(-status)?: *hit' "$TMP/headers"; then
      warn "$sys $size: second GET was not a cache HIT"
    fi
  done
  # The same certificate, negotiated the same way.
  openssl s_client -connect "127.0.0.1:${PORT[$sys]}" -servername "$NAME" </dev/null 2>/dev/null \
    | grep -E '^(Peer signature type|Server Temp Key|New, )' | sed "s/^/[bench] $sys: /" >&2 || true
done

# ---------------------------------------------------------------- load
RAW=$TMP/raw.tsv   # size mode system round rps p50_ms p99_ms errors
: > "$RAW"
n_active=${#ACTIVE[@]}
for ((round = 1; round <= ROUNDS; round++)); do
  for size in $SIZES; do
    for mode in $MODES; do
      for ((k = 0; k < n_active; k++)); do
        sys=${ACTIVE[$(((k + round - 1) % n_active))]}
        out="$TMP/out.$round.$size.$mode.$sys"
        url="https://$NAME:${PORT[$sys]}/$size.bin"
        case $mode in
          h1|h1-new)
            close=()
            [[ $mode == h1-new ]] && close=(-H "Connection: close")
            log "round $round/$ROUNDS: $sys $size $mode (wrk -t1 -c$CONNS -d${DURATION}s ${close[*]})"
            run_load "$out" wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "${close[@]}" "$url" \
              || { warn "wrk failed for $sys $size $mode: $(tail -2 "$out" | paste -sd' ' -)"; continue; }
            record_wrk "$out" "$size" "$mode" "$sys" "$round" \
              || { warn "could not parse wrk output for $sys $size $mode"; continue; } ;;
          h2)
            log "round $round/$ROUNDS: $sys $size h2 (h2load -c$CONNS -m$H2_STREAMS -D $DURATION)"
            run_load "$out" h2load -t1 -c"$CONNS" -m"$H2_STREAMS" -D "$DURATION" \
                --connect-to="127.0.0.1:${PORT[$sys]}" "$url" \
              || { warn "h2load failed for $sys $size: $(tail -2 "$out" | paste -sd' ' -)"; continue; }
            grep -q "^Application protocol: h2" "$out" || warn "$sys: h2load did not negotiate h2"
            record_h2load "$out" "$size" h2 "$sys" "$round" \
              || { warn "could not parse h2load output for $sys $size"; continue; } ;;
        esac
        [[ $(tail -1 "$RAW" | cut -f8) == 0 ]] || warn "$sys $size $mode: $(tail -1 "$RAW" | cut -f8) errors/non-2xx"
        sleep 1
      done
    done
  done
done

# ---------------------------------------------------------------- report
MED=$TMP/median.tsv
medians "$RAW" > "$MED"
{
  echo "# Edge cache-HIT benchmark over TLS"
  echo
  echo "2-core VM; load generator and server share the cores."
  echo
  echo "$(stamp); $(nginx -v 2>&1 | sed 's/^nginx version: //') with $(nginx -V 2>&1 | grep -o 'built with OpenSSL [0-9.]*' | sed 's/built with //'), \
parapet-edge (rustls), $(wrk -v 2>&1 | head -1 | awk '{print $1, $2}'), $(h2load --version 2>&1 | head -1)."
  echo "Both terminate TLS with the same self-signed ECDSA P-256 certificate for \`$NAME\` (SNI). \
Each run: ${DURATION}s, $CONNS connections (h2: $H2_STREAMS streams each), 1 load-generator thread; \
median of $ROUNDS round(s), systems alternated. h1 and h2 keep connections alive; \
h1-new sends \`Connection: close\`, so every request is a new TCP connection and a full TLS handshake."
  echo
  echo "| object | mode | system | req/s (median) | p50 | p99 | parapet / nginx |"
  echo "|---|---|---|---:|---:|---:|---:|"
  for size in $SIZES; do
    for mode in $MODES; do
      base=$(awk -F'\t' -v s="$size" -v m="$mode" '$1 == s && $2 == m && $3 == "nginx" {print $4}' "$MED")
      while IFS=$'\t' read -r s m sys rps p50 p99 errs n; do
        [[ $s == "$size" && $m == "$mode" ]] || continue
        ratio="—"
        [[ $sys == parapet && -n $base ]] && ratio=$(awk -v a="$rps" -v b="$base" 'BEGIN {printf "%.2f", a / b}')
        lat50=$(fmt_ms "$p50"); [[ $m == h2 ]] && lat50="$lat50 (mean)"
        note=""; [[ $errs != 0 ]] && note=" ($errs errors)"
        printf '| %s | %s | %s | %s%s | %s | %s | %s |\n' "$size" "$m" "$sys" \
          "$(awk -v v="$rps" 'BEGIN {printf "%.0f", v}')" "$note" "$lat50" "$(fmt_ms "$p99")" "$ratio"
      done < "$MED"
    done
  done
} | tee "$RESULTS_MD"
log "written to $RESULTS_MD"
