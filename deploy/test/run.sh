#!/usr/bin/env bash
# `make deploy-run`: builds the image of deploy/Dockerfile with podman and
# runs the compose CDN (deploy/compose/) with podman-compose, then sends
# requests through the edge containers to the origin container: MISS, HIT
# in each PoP with one origin fetch for both (through the shield), a purge
# through the controller container acknowledged by both edges and the
# shield, MISS again, and a geo-DNS answer from the dns container.
#
# No image registry is needed: the Debian base is made with mmdebstrap and
# imported; MongoDB is SecantusDB (a MongoDB-wire server from PyPI, the one
# the tests use) on that base, the origin that base's python3. The build stage gets
# the host's Rust toolchain, cargo home, sources and target directory as
# volumes at their own paths, so it reuses what `make test` compiled.
#
# As root (podman's bridge networks), with podman, podman-compose,
# mmdebstrap, runc, netavark, aardvark-dns and iptables installed (.ci/run installs
# them). Leaves the images (reused next time), removes containers, volumes
# and the network, even on failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
src="$(pwd)"
target="$(realpath -m "${CARGO_TARGET_DIR:-target}")"
cli="$target/release/parapet"

for tool in podman podman-compose mmdebstrap runc iptables curl dig; do
  command -v "$tool" >/dev/null || {
    echo "deploy-run: $tool is needed (apt-get install podman podman-compose mmdebstrap runc netavark aardvark-dns iptables curl dnsutils)" >&2
    exit 1
  }
done
[[ "$(id -u)" -eq 0 ]] || { echo "deploy-run: run as root (podman's bridge networks)" >&2; exit 1; }
[[ -x "$cli" ]] || { echo "deploy-run: $cli is missing (make servers)" >&2; exit 1; }

started=$SECONDS
step() { echo "deploy-run: [$((SECONDS - started)) s] $*"; }
work="$(mktemp -d -t parapet-deploy.XXXXXX)"
project=parapet-deploy-test
network=198.18.200.0/24
compose=(podman-compose -p "$project" -f deploy/compose/compose.yaml)

# crun, podman's default here, fails on setrlimit and cgroups; runc works.
printf '[containers]\ndefault_ulimits = []\n[engine]\nruntime = "runc"\n[network]\nnetwork_backend = "netavark"\n' >"$work/containers.conf"
export CONTAINERS_CONF="$work/containers.conf"

ok=0
cleanup() {
  if [[ $ok -ne 1 ]]; then
    echo "deploy-run: FAILED; the containers' logs:" >&2
    for c in $(podman ps -a --filter "label=io.podman.compose.project=$project" --format '{{.Names}}'); do
      echo "--- $c" >&2
      podman logs --tail 30 "$c" >&2 2>&1 || true
    done
  fi
  "${compose[@]}" down -v >/dev/null 2>&1 || true
  podman network rm -f "${project}_default" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# Registry traffic may pass a TLS-inspecting proxy whose CA only the host's
# bundle has: builds see the host's bundle.
ca=(-v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro)

# Images are tagged by what they are made of, and reused when present.
packages=ca-certificates,passwd,python3
base="localhost/parapet-test/debian:bookworm-$(echo "$packages" | sha256sum | cut -c1-12)"
if ! podman image exists "$base"; then
  step "making the Debian base ($packages) with mmdebstrap"
  mmdebstrap --quiet --variant=minbase --include="$packages" bookworm "$work/base.tar"
  podman import -q "$work/base.tar" "$base" >/dev/null
  rm -f "$work/base.tar"
fi

rustup_home="$(realpath "${RUSTUP_HOME:-$HOME/.rustup}")"
cargo_home="$(realpath "${CARGO_HOME:-$HOME/.cargo}")"
builder="localhost/parapet-test/builder:$(cat deploy/test/builder.Containerfile <(echo "$base $rustup_home $cargo_home") | sha256sum | cut -c1-12)"
if ! podman image exists "$builder"; then
  step "building the build stage's base ($builder)"
  podman build -q --network host "${ca[@]}" -f deploy/test/builder.Containerfile \
    --build-arg BASE_IMAGE="$base" --build-arg RUSTUP_HOME="$rustup_home" --build-arg CARGO_HOME="$cargo_home" \
    -t "$builder" deploy/test >/dev/null
fi

step "building deploy/Dockerfile (the build stage reuses $target)"
podman build --network host "${ca[@]}" \
  -v "$rustup_home:$rustup_home" -v "$cargo_home:$cargo_home" -v "$src:$src" -v "$target:$target" \
  --build-arg BUILDER_IMAGE="$builder" --build-arg RUNTIME_IMAGE="$base" \
  --build-arg SRC="$src" --build-arg CARGO_TARGET_DIR="$target" \
  --build-arg CARGO_BUILD="test --release --locked --workspace --no-run" \
  -t localhost/parapet:deploy-test -f deploy/Dockerfile . >"$work/build.log" 2>&1 || {
  tail -40 "$work/build.log" >&2
  exit 1
}
grep -E '^\s*(Compiling|Finished)' "$work/build.log" | tail -3 | sed 's/^ */  /'
# The build stage stays behind as an unnamed image (over a GiB each run).
podman image prune -f >/dev/null
echo "  image: $(podman image inspect localhost/parapet:deploy-test --format '{{.Size}}' | awk '{printf "%d MB", $1 / 1e6}')"
uid="$(podman run --rm localhost/parapet:deploy-test id -u)"
[[ "$uid" == 10001 ]] || { echo "deploy-run: the image runs as uid $uid, not 10001" >&2; exit 1; }
plugins="$(podman run --rm localhost/parapet:deploy-test ls /usr/share/parapet/plugins)"
echo "  runs as uid $uid; plugins: $(echo $plugins)"

mongodb="localhost/parapet-test/secantusdb:$(cat deploy/test/mongodb.Containerfile <(echo "$base") | sha256sum | cut -c1-12)"
if ! podman image exists "$mongodb"; then
  step "building the MongoDB stand-in ($mongodb)"
  podman build -q --network host "${ca[@]}" -f deploy/test/mongodb.Containerfile \
    --build-arg BASE_IMAGE="$base" -t "$mongodb" deploy/test >/dev/null
fi

random() { head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
export PARAPET_IMAGE=localhost/parapet:deploy-test MONGODB_IMAGE="$mongodb" ORIGIN_IMAGE="$base"
export PARAPET_NETWORK="$network"
PARAPET_ADMIN_TOKEN="op-$(random)" PARAPET_EDGE_BOOTSTRAP_TOKEN="boot-$(random)"
PARAPET_EDGE_ADMIN_TOKEN="edge-$(random)" PARAPET_SECRET_KEY="$(head -c 32 /dev/urandom | base64)"
export PARAPET_ADMIN_TOKEN PARAPET_EDGE_BOOTSTRAP_TOKEN PARAPET_EDGE_ADMIN_TOKEN PARAPET_SECRET_KEY
# podman-compose 1.0 ignores the file's subnet but joins a network of the
# project's name that exists.
podman network rm -f "${project}_default" >/dev/null 2>&1 || true
podman network create --subnet "$network" "${project}_default" >/dev/null

step "starting MongoDB and the controller"
PARAPET_DNS_TOKEN=unset "${compose[@]}" up -d mongodb controller >"$work/up.log" 2>&1 || { cat "$work/up.log" >&2; exit 1; }
wait_for() { # description command...
  local what="$1"; shift
  for _ in $(seq 300); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "deploy-run: $what did not happen within 60 s" >&2
  return 1
}
wait_for "the controller answering on 127.0.0.1:7070" curl -fsS http://127.0.0.1:7070/healthz

parapet() { PARAPET_URL=http://127.0.0.1:7070 XDG_CONFIG_HOME="$work" "$cli" "$@"; }
token_of() { sed -n 's/.*"token": *"\([^"]*\)".*/\1/p'; }
export PARAPET_TOKEN="$PARAPET_ADMIN_TOKEN"
PARAPET_DNS_TOKEN="$(parapet --json token issue --monitor --name geo-dns | token_of)"
export PARAPET_DNS_TOKEN
parapet --json customer create acme >/dev/null
customer_token="$(parapet --json token issue --customer acme --name deploy-test | token_of)"
[[ -n "$PARAPET_DNS_TOKEN" && -n "$customer_token" ]] || { echo "deploy-run: no tokens" >&2; exit 1; }

step "starting the shield, two edges, the geo-DNS and the origin"
"${compose[@]}" up -d >"$work/up.log" 2>&1 || { cat "$work/up.log" >&2; exit 1; }
edges_up() { [[ "$(parapet edges | grep -cE 'edge-(fra|nyc)-1')" == 2 ]]; }
wait_for "both edges registering" edges_up

export PARAPET_TOKEN="$customer_token"
cat >"$work/shop.toml" <<'EOF'
id = "shop"
domains = ["www.shop.test", "shop.cdn.example.test"]

[[origin]]
url = "http://origin:8000"

[[behavior]]
path = "/static/*"
cache = { default_ttl = 86400 }

[[behavior]]
path = "*"
EOF
parapet dist apply -f "$work/shop.toml" >/dev/null
# Each edge's line: name, PoP, group, healthy, version.
live() { [[ "$(parapet dist status shop | grep -cE '^edge-(fra|nyc)-1 +(fra|nyc) +[^ ]+ +true +1( |$)')" == 2 ]]; }
wait_for "the distribution live on both edges" live

failures=0
expect() { # port want-status want-x-cache
  local out status cache
  out="$(curl -si -H 'Host: www.shop.test' "http://127.0.0.1:$1/static/app.css")" || true
  status="$(printf '%s' "$out" | head -1 | awk '{print $2}')"
  cache="$(printf '%s' "$out" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-cache"{print $2}')"
  echo "  edge on :$1 -> $status $cache"
  [[ "$status" == "$2" && "$cache" == "$3" ]] || { echo "  !! expected $2 $3" >&2; failures=$((failures + 1)); }
}
# What reached the origin container (the demo origin logs each request).
fetched() { podman logs "${project}_origin_1" 2>&1 | grep -c 'GET /static/app.css' || true; }
origin_fetches() { # want
  local got; got="$(fetched)"
  echo "  the origin served /static/app.css $got time(s)"
  [[ "$got" == "$1" ]] || { echo "  !! expected $1" >&2; failures=$((failures + 1)); }
}
step "viewers through the edge containers (both PoPs behind the shield)"
expect 8081 200 MISS
expect 8081 200 HIT
expect 8082 200 MISS
expect 8082 200 HIT
origin_fetches 1

step "a purge through the controller"
out="$(parapet purge url shop www.shop.test/static/app.css --wait 2>&1)" || true
echo "$out" | sed 's/^/  /'
job="$(printf '%s' "$out" | grep -oE 'job_[A-Za-z0-9_-]+' | head -1)"
acks="$(parapet jobs "$job" | grep -cE '^edge_[0-9a-f]+ +true ' || true)"
echo "  acknowledged by $acks edges"
[[ "$acks" == 3 ]] || { echo "  !! expected the acknowledgements of both edges and the shield" >&2; failures=$((failures + 1)); }
expect 8081 200 MISS
expect 8082 200 MISS
origin_fetches 2

step "the geo-DNS container"
# Its PoPs file names documentation addresses (192.0.2.10 fra, .20 nyc),
# answered once the controller reports the PoP's edges healthy; without a
# GeoIP database (compose mounts none) every client gets the default PoPs.
dns_answer() { dig +short @127.0.0.1 -p 5353 shop.cdn.example.test A | grep -qxE '192\.0\.2\.(10|20)'; }
if wait_for "the geo-DNS answering a PoP for shop.cdn.example.test" dns_answer; then
  echo "  shop.cdn.example.test -> $(dig +short @127.0.0.1 -p 5353 shop.cdn.example.test A | tr '\n' ' ')"
else
  failures=$((failures + 1))
fi

[[ $failures -eq 0 ]] || { echo "deploy-run: $failures answer(s) not as expected" >&2; exit 1; }
ok=1
step "the image and the compose CDN work"
