#!/usr/bin/env bash
# `make demo-edge`: one edge on its own file, embedded defaults. Starts the demo origin
# (examples/demo/origin.py on 127.0.0.1:8081) and parapet-edge with
# examples/edge.toml (viewers on 127.0.0.1:8080, admin on 127.0.0.1:9901,
# the example plugins), then shows a MISS, a HIT, a WAF block, an auth
# failure and a redirect with curl. Runs until Ctrl-C; with DEMO_ONESHOT=1
# it exits after the tour (non-zero if any answer was not the expected one).
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
edge_bin="$target/release/parapet-edge"

command -v curl >/dev/null || { echo "demo: curl is needed (apt-get install -y curl)" >&2; exit 1; }
for port in 8080 8081 9901; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "demo: port $port is in use; stop what listens there first" >&2
    exit 1
  fi
done

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

python3 examples/demo/origin.py 8081 2>/dev/null &
pids+=($!)
PARAPET_ACCESS_LOG="${PARAPET_ACCESS_LOG:-off}" "$edge_bin" --config examples/edge.toml &
pids+=($!)
for _ in $(seq 100); do
  curl -fsS -o /dev/null http://127.0.0.1:9901/healthz 2>/dev/null && break
  sleep 0.1
done

failures=0
show() { # expected-status expected-x-cache description curl-args...
  local want_status="$1" want_cache="$2" what="$3"; shift 3
  echo
  echo "# $what"
  local shown="" arg
  for arg in "$@"; do
    if [[ "$arg" =~ [^A-Za-z0-9_./:=-] ]]; then shown+=" '$arg'"; else shown+=" $arg"; fi
  done
  echo "\$ curl -si$shown"
  local out status cache
  out="$(curl -si "$@")"
  status="$(printf '%s' "$out" | head -1 | awk '{print $2}')"
  cache="$(printf '%s' "$out" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-cache"{print $2}')"
  printf '%s\n' "$out" | tr -d '\r' | grep -iE '^(HTTP/|x-cache|age|location|www-authenticate)' | sed 's/^/  /'
  printf '%s\n' "$out" | tr -d '\r' | sed -n '/^$/,$p' | sed '1d' | head -3 | sed 's/^/  /'
  if [[ "$status" != "$want_status" || ( -n "$want_cache" && "$cache" != "$want_cache" ) ]]; then
    echo "  !! expected $want_status ${want_cache:-}" >&2
    failures=$((failures + 1))
  fi
}

host=(-H 'Host: www.example.com')
echo "parapet-edge serves on http://127.0.0.1:8080 (admin: http://127.0.0.1:9901, token change-me)"
show 200 MISS "a first request is fetched from the origin and stored" "${host[@]}" http://127.0.0.1:8080/static/app.css
show 200 HIT "the second is served from the cache" "${host[@]}" http://127.0.0.1:8080/static/app.css
show 403 "" "the WAF plugin blocks a script injection" "${host[@]}" "http://127.0.0.1:8080/search?q=%3Cscript%3Ealert(1)%3C/script%3E"
show 401 "" "the auth plugin refuses a request without an API key" "${host[@]}" http://127.0.0.1:8080/private/report
show 200 MISS "with the demo key from examples/kv.json it passes" "${host[@]}" -H 'x-api-key: demo-key' http://127.0.0.1:8080/private/report
show 301 "" "the rewrite plugin redirects /old/* to /new/*" "${host[@]}" http://127.0.0.1:8080/old/page
echo
echo "# purge it (admin API, bearer token):"
echo "\$ curl -s -X POST -H 'authorization: Bearer change-me' -d '{\"url\": \"www.example.com/static/app.css\"}' http://127.0.0.1:9901/purge"
echo "  $(curl -s -X POST -H 'authorization: Bearer change-me' -d '{"url": "www.example.com/static/app.css"}' http://127.0.0.1:9901/purge)"
echo "# metrics: curl -s http://127.0.0.1:9901/metrics"

if [[ "${DEMO_ONESHOT:-0}" == 1 ]]; then
  [[ $failures -eq 0 ]] && echo && echo "demo: every answer as expected" && exit 0
  echo "demo: $failures answer(s) not as expected" >&2
  exit 1
fi
echo
echo "Try the commands above; Ctrl-C stops the demo."
wait
