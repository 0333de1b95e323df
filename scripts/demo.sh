#!/usr/bin/env bash
# `make demo`: the whole CDN on one machine, on embedded defaults. Starts
# the demo origin (127.0.0.1:8081), parapet-controller (REST 127.0.0.1:7070,
# gRPC 127.0.0.1:7071, embedded store), two edges as two PoPs (fra on
# 127.0.0.1:8080, nyc on 127.0.0.2:8080) and parapet-dns for the zone
# cdn.test (127.0.0.1:5354, UDP and TCP), then tours it with the CLI: a
# plugin built with the SDK and uploaded, a distribution applied, the
# geo-DNS asked from two client subnets, MISS, HIT and a WAF block through
# the edge, a purge acknowledged by both edges. Runs until Ctrl-C; with
# DEMO_ONESHOT=1 it exits after the tour (non-zero if an answer was not the
# expected one). `make demo-edge` is the tour of one edge on its own file
# (scripts/demo-edge.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
bin="$target/release"
geoip="target/testdata/dbip-city-lite.mmdb"

for tool in curl dig; do
  command -v "$tool" >/dev/null || { echo "demo: $tool is needed (apt-get install -y curl dnsutils)" >&2; exit 1; }
done
[[ -s "$geoip" ]] || { echo "demo: $geoip is missing (make testdata)" >&2; exit 1; }
for address in 127.0.0.1:8080 127.0.0.2:8080 127.0.0.1:8081 127.0.0.1:7070 127.0.0.1:7071 127.0.0.1:5354; do
  if (exec 3<>"/dev/tcp/${address%:*}/${address#*:}") 2>/dev/null; then
    echo "demo: $address is in use; stop what listens there first" >&2
    exit 1
  fi
done

work="$(mktemp -d -t parapet-demo.XXXXXX)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [[ $failures -gt 0 ]]; then echo "demo: logs kept in $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT INT TERM
started=$SECONDS
failures=0

# Secrets of this run only: the operator's token, the edges' bootstrap token.
random() { head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
admin_token="op-$(random)"
export PARAPET_EDGE_BOOTSTRAP_TOKEN="edge-$(random)"
# The key sealing customers' private keys in the controller's store.
PARAPET_SECRET_KEY="$(head -c 32 /dev/urandom | base64)"
export PARAPET_SECRET_KEY
export PARAPET_ACCESS_LOG="${PARAPET_ACCESS_LOG:-off}" RUST_LOG="${RUST_LOG:-warn}"

python3 examples/demo/origin.py 8081 2>/dev/null &
pids+=($!)
# The demo origin runs on loopback, which origins may not use unless allowed.
printf '[upstream]\nallow_networks = ["127.0.0.0/8"]\n[pops.fra]\nname = "Frankfurt"\nlat = 50.11\nlon = 8.68\n[pops.nyc]\nname = "New York"\nlat = 40.71\nlon = -74.01\n' >"$work/controller.toml"
PARAPET_ADMIN_TOKEN="$admin_token" "$bin/parapet-controller" --data-dir "$work/controller" --config "$work/controller.toml" \
  --heartbeat-interval-ms 1000 >"$work/controller.log" 2>&1 &
pids+=($!)
for pop in fra nyc; do
  address=127.0.0.1; [[ $pop == nyc ]] && address=127.0.0.2
  "$bin/parapet-edge" --listen "$address:8080" --controller http://127.0.0.1:7071 \
    --state-dir "$work/edge-$pop" --edge-name "$pop-1" --pop "$pop" \
    --allow-upstream-network 127.0.0.0/8 >"$work/edge-$pop.log" 2>&1 &
  pids+=($!)
done
for _ in $(seq 100); do
  curl -fsS -o /dev/null http://127.0.0.1:7070/openapi.json 2>/dev/null && break
  sleep 0.1
done

fail() { echo "  !! $*" >&2; failures=$((failures + 1)); }
# Prints a command and its answer; the answer is left in $out.
run() {
  echo
  echo "\$ $*"
  out="$("$@" 2>&1)" || true
  printf '%s\n' "$out" | sed 's/^/  /'
}
parapet() { PARAPET_URL=http://127.0.0.1:7070 XDG_CONFIG_HOME="$work" "$bin/parapet" "$@"; }
export PARAPET_TOKEN="$admin_token"

echo "# The operator makes a customer and its token, and a monitor token for the geo-DNS."
run parapet --json customer create acme
run parapet --json token issue --customer acme --name demo
customer_token="$(printf '%s' "$out" | sed -n 's/.*"token": *"\([^"]*\)".*/\1/p')"
run parapet --json token issue --monitor --name geo-dns
monitor_token="$(printf '%s' "$out" | sed -n 's/.*"token": *"\([^"]*\)".*/\1/p')"
[[ -n "$customer_token" && -n "$monitor_token" ]] || { fail "no tokens"; exit 1; }

cat >"$work/pops.toml" <<'EOF'
[[pop]]
id = "fra"
lat = 50.11
lon = 8.68
ipv4 = ["127.0.0.1"]

[[pop]]
id = "nyc"
lat = 40.71
lon = -74.01
ipv4 = ["127.0.0.2"]
EOF
PARAPET_TOKEN="$monitor_token" "$bin/parapet-dns" --listen 127.0.0.1:5354 --zone cdn.test \
  --pops "$work/pops.toml" --geoip "$geoip" --controller http://127.0.0.1:7070 \
  --controller-interval-ms 500 >"$work/dns.log" 2>&1 &
pids+=($!)

export PARAPET_TOKEN="$customer_token"
echo
echo "# The customer builds the WAF plugin with the SDK and uploads it."
echo
echo "\$ parapet plugin build examples/waf --out $work/plugins"
parapet plugin build examples/waf --out "$work/plugins" 2>&1 | grep -E '^(parapet|  */.*\.wasm)' | sed 's/^ */  /' || fail "the plugin did not build"
run parapet plugin upload "$work/plugins/waf.wasm"
cat >"$work/shop.toml" <<'EOF'
id = "shop"
domains = ["www.shop.test", "shop.cdn.test"]

[[origin]]
url = "http://127.0.0.1:8081"

[[plugin]]
name = "waf"
wasm = "waf"
config = { mode = "block" }

[[behavior]]
path = "/static/*"
cache = { default_ttl = 86400 }

[[behavior]]
path = "*"
viewer_request = ["waf"]
EOF
echo
echo "# ...and applies its distribution (www.shop.test is a CNAME to shop.cdn.test):"
sed 's/^/  /' "$work/shop.toml"
run parapet dist apply -f "$work/shop.toml"
for _ in $(seq 100); do
  parapet dist status shop 2>/dev/null | grep -q "nyc.*true.*1 " && break
  sleep 0.1
done
echo
echo "# The operator sees both edges, each in its PoP:"
PARAPET_TOKEN="$admin_token" run parapet edges

echo
echo "# The geo-DNS answers each viewer with its nearest healthy PoP (EDNS client subnet):"
for subnet in 5.9.0.0/24 8.8.8.0/24; do
  want=127.0.0.1; [[ $subnet == 8.8.8.0/24 ]] && want=127.0.0.2
  answer=""
  for _ in $(seq 50); do
    answer="$(dig +short @127.0.0.1 -p 5354 shop.cdn.test A +subnet="$subnet")"
    [[ "$answer" == "$want" ]] && break
    sleep 0.2
  done
  echo
  echo "\$ dig +short @127.0.0.1 -p 5354 shop.cdn.test A +subnet=$subnet"
  echo "  $answer"
  [[ "$answer" == "$want" ]] || fail "expected $want"
done

show() { # expected-status expected-x-cache description curl-args...
  local want_status="$1" want_cache="$2" what="$3"; shift 3
  echo
  echo "# $what"
  echo "\$ curl -si $*"
  local status cache
  out="$(curl -si "$@")" || true
  status="$(printf '%s' "$out" | head -1 | awk '{print $2}')"
  cache="$(printf '%s' "$out" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-cache"{print $2}')"
  printf '%s\n' "$out" | tr -d '\r' | { grep -iE '^(HTTP/|x-cache|age|via)' || true; } | sed 's/^/  /'
  if [[ "$status" != "$want_status" || ( -n "$want_cache" && "$cache" != "$want_cache" ) ]]; then
    fail "expected $want_status ${want_cache:-}"
  fi
}
fra=(--resolve www.shop.test:8080:127.0.0.1)
nyc=(--resolve www.shop.test:8080:127.0.0.2)
show 200 MISS "a viewer in Europe reaches fra: fetched from the origin" "${fra[@]}" http://www.shop.test:8080/static/app.css
show 200 HIT "the next one is served from fra's cache" "${fra[@]}" http://www.shop.test:8080/static/app.css
show 200 MISS "nyc has its own cache" "${nyc[@]}" http://www.shop.test:8080/static/app.css
show 403 "" "the customer's WAF plugin blocks a script injection at the edge" "${fra[@]}" "http://www.shop.test:8080/search?q=%3Cscript%3E"

echo
echo "# A purge through the controller reaches both edges:"
run parapet purge url shop www.shop.test/static/app.css --wait
job="$(printf '%s' "$out" | grep -oE 'job_[A-Za-z0-9_-]+' | head -1)"
run parapet jobs "$job"
acks="$(printf '%s\n' "$out" | grep -cE '^edge_[0-9a-f]+ +true ' || true)"
[[ "$acks" == 2 ]] || fail "expected both edges' acknowledgements"
show 200 MISS "so the next request is fetched again" "${fra[@]}" http://www.shop.test:8080/static/app.css

echo
echo "demo: the tour took $((SECONDS - started)) s"
if [[ "${DEMO_ONESHOT:-0}" == 1 ]]; then
  [[ $failures -eq 0 ]] && echo "demo: every answer as expected" && exit 0
  echo "demo: $failures answer(s) not as expected" >&2
  exit 1
fi
echo
echo "The CDN keeps running: PARAPET_URL=http://127.0.0.1:7070 PARAPET_TOKEN=$customer_token parapet ..."
echo "(operator token: $admin_token). Ctrl-C stops it."
wait
