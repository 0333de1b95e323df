#!/usr/bin/env bash
# Geo-DNS benchmark: parapet-dns vs PowerDNS Authoritative (4.7, GeoIP
# backend), serving the same zone, PoPs and GeoIP database on loopback, under
# dnsperf.
#
#   bash bench/dns/run.sh              # full run (DURATION=8 ROUNDS=3)
#   bash bench/dns/run.sh --quick      # DURATION=3 ROUNDS=1
#   SYSTEMS=pdns ROUNDS=1 DURATION=3 bash bench/dns/run.sh
#   PARAPET_DNS_BIN=target/release/parapet-dns bash bench/dns/run.sh   # no build
#
# Settings (environment): SYSTEMS (parapet pdns pdns-nocache), PROFILES
# (no-ecs ecs), DURATION, ROUNDS, FIXED_QPS (0: no fixed-rate runs),
# DNSPERF_CLIENTS, DNSPERF_OUTSTANDING, PDNS_RECEIVERS, PDNS_DISTRIBUTORS,
# PARAPET_DNS_ARGS, GEOIP_DB, ECS_SUBNET, BASE_PORT, RESULTS_MD, KEEP_TMP.
#
# What each server computes for `<name>.cdn.example.net` A/AAAA
# ---------------------------------------------------------------
# Client location: the EDNS Client Subnet address when the query has one
# (PowerDNS: edns-subnet-processing=yes), else the source address (127.0.0.1
# here, which no database locates).
#
# parapet-dns: looks the address up in the database, takes the record's city
#   coordinates (the country's centroid when it has none), and answers the PoP
#   nearest by great-circle distance; unknown location: the default PoP (fra).
#   No answer cache: every query does the lookup and the distance ranking.
#
# PowerDNS (geoip backend): cannot rank PoPs by distance with this database.
#   Its coordinate expansions (%lat, %lon, %loc) and the Lua-record functions
#   built on them (latlon(), pickclosest(), closestMagic()) read
#   location.accuracy_radius along with latitude and longitude, and DB-IP City
#   Lite has no accuracy_radius: pdns 4.7.3 then treats every address as
#   unlocated (%lat is empty, latlon() is "0 0"; checked). The closest thing
#   it computes is a lookup table, which this script generates:
#     services:       "*.cdn.example.net": "%mp.pop.cdn.example.net"
#     mapping_lookup_formats: ["%cc"]           # the ISO country code
#     custom_mapping: {jp: tyo, de: fra, us: nyc, ...}
#   Each country maps to the PoP nearest (great-circle) to its centroid
#   (bench/dns/country-centroids.tsv, the centroids parapet-dns uses), and
#   `<pop>.pop.cdn.example.net` holds that PoP's addresses; an unknown or
#   unmapped country expands %mp to "unknown", whose records are the default
#   PoP's. So PowerDNS answers per country where parapet-dns answers per
#   city: the same PoP for Tokyo, Frankfurt and unknown clients (checked
#   before the load), a different one for clients in a country that spans
#   PoPs (US west coast: sfo vs nyc; Moscow: fra vs tyo, Russia's centroid
#   being in Siberia; southern China, Canada, South Africa).
#   bench/dns/mapping_agreement.py measures how often the two agree; the
#   results file carries its figure (about 84 % of located IPv4 addresses
#   with these PoPs). Per geo answer the backend also does two database
#   lookups (the %cc, and the network's name, which it looks up to set the
#   ECS scope) where parapet-dns does one.
# Both echo ECS with the database network's prefix as scope, TTL 30, one
# address per answer, no authority records.
#
# Systems: parapet (parapet-dns, which has no answer cache), pdns (PowerDNS
# with its defaults: packet cache and query cache on, 20 s), pdns-nocache
# (cache-ttl, query-cache-ttl and negquery-cache-ttl 0). Neither cache holds
# a geo answer: PowerDNS does not packet-cache a response with a record that
# carries an ECS scope, and the geoip backend gives every service answer one
# (/32 for an unknown client), so its packet cache counts no hits here; the
# query cache serves the other backend lookups of each query (3 of 4 in the
# validation runs) and misses the geo one. So pdns, like parapet-dns, does
# the geo lookup for every query, and pdns-nocache adds the cost of the
# lookups the query cache saves. The results list PowerDNS's counters.
#
# PowerDNS threads: receiver-threads=1, distributor-threads=3 (its
# defaults). On this 2-core VM 2 receivers x 2 distributors (reuseport=yes)
# measured the same within run-to-run noise, 2 x 1 up to 15 % slower.
# parapet-dns runs its default of one UDP socket (SO_REUSEPORT) per CPU.
#
# Load: dnsperf -T1 (one sending and one receiving thread), -c8 (8 UDP
# sockets, so that every SO_REUSEPORT socket of the server gets queries),
# -q100 (queries in flight). dnsperf shares the 2 cores with the server, and
# together they keep both busy: at about 100 k queries/s PowerDNS takes
# 1.3-1.5 cores and dnsperf 0.45-0.55 (the results show both for every
# run), so the server gets what the load generator leaves, about three
# quarters of the machine. Fewer queries in flight (-q30) lost PowerDNS
# 13-15 % of its rate, more (-q500) gained it 3-10 % at twice the latency and
# with the queries still in flight at the end counted as lost. Latency under
# this closed-loop load is mostly queueing (in flight / rate); the
# fixed-rate runs (FIXED_QPS, dnsperf -Q) show the time to answer.
# Profiles: no-ecs: EDNS0 without options (-e), from 127.0.0.1: the default
# PoP. ecs: an ECS option for ECS_SUBNET (126.0.0.0/24, Tokyo in DB-IP) in
# every query (-E 8:<hex>): the Tokyo PoP.
set -euo pipefail

# ---------------------------------------------------------------- settings
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib.sh
source "$SCRIPT_DIR/../lib.sh"
quick_args 2,14 "$@"
REPO=$(cd "$SCRIPT_DIR/../.." && pwd)
cd "$REPO"

DURATION=${DURATION:-8}
ROUNDS=${ROUNDS:-3}
SYSTEMS=${SYSTEMS:-parapet pdns pdns-nocache}
PROFILES=${PROFILES:-no-ecs ecs}
FIXED_QPS=${FIXED_QPS:-20000}
DNSPERF_CLIENTS=${DNSPERF_CLIENTS:-8}
DNSPERF_OUTSTANDING=${DNSPERF_OUTSTANDING:-100}
PDNS_RECEIVERS=${PDNS_RECEIVERS:-1}
PDNS_DISTRIBUTORS=${PDNS_DISTRIBUTORS:-3}
PDNS_SERVER=${PDNS_SERVER:-/usr/sbin/pdns_server}
GEOIP_DB=${GEOIP_DB:-$REPO/target/testdata/dbip-city-lite.mmdb}
ECS_SUBNET=${ECS_SUBNET:-126.0.0.0/24}
BASE_PORT=${BASE_PORT:-25350}
RESULTS_MD=${RESULTS_MD:-$SCRIPT_DIR/results-latest.md}
VENV_PY=${VENV_PY:-$REPO/target/venv-test/bin/python}

SYSTEMS=${SYSTEMS//,/ }
PROFILES=${PROFILES//,/ }
for s in $SYSTEMS; do
  [[ $s == parapet || $s == pdns || $s == pdns-nocache ]] \
    || { echo "SYSTEMS: unknown system '$s' (parapet pdns pdns-nocache)" >&2; exit 2; }
done
for p in $PROFILES; do
  [[ $p == no-ecs || $p == ecs ]] || { echo "PROFILES: unknown profile '$p' (no-ecs ecs)" >&2; exit 2; }
done

ZONE=cdn.example.net
NAMES="www shop img video api static"   # distributions queried, A and AAAA each
TTL=30

# The PoPs, shared by both servers. Addresses are documentation ranges.
#    id   lat      lon      ipv4        ipv6
POPS="
tyo   35.68   139.69  192.0.2.1  2001:db8::1
fra   50.11     8.68  192.0.2.2  2001:db8::2
nyc   40.71   -74.00  192.0.2.3  2001:db8::3
sfo   37.77  -122.42  192.0.2.4  2001:db8::4
sin    1.29   103.85  192.0.2.5  2001:db8::5
syd  -33.87   151.21  192.0.2.6  2001:db8::6
"
DEFAULT_POP=fra

# Client subnets for the answer table of the results (DB-IP City Lite's city).
PROBES=(
  "126.0.0.0/24|Tokyo, JP"
  "212.227.0.0/24|Frankfurt am Main, DE"
  "8.8.8.0/24|Mountain View, US"
  "77.88.8.0/24|Moscow, RU"
  "41.0.0.0/24|Midrand, ZA"
  "1.1.1.0/24|Sydney, AU"
  "2001:200::/48|Fujisawa, JP"
  "none|no ECS (127.0.0.1)"
)

declare -A PORT=([parapet]=$BASE_PORT [pdns]=$((BASE_PORT + 1)) [pdns-nocache]=$((BASE_PORT + 2)))

pop_field() {  # pop_field ID COLUMN(2 lat, 3 lon, 4 ipv4, 5 ipv6)
  awk -v id="$1" -v c="$2" '$1 == id {print $c}' <<<"$POPS"
}

# ---------------------------------------------------------------- tools
tools=(dnsperf dig=bind9-dnsutils)
if want pdns || want pdns-nocache; then
  tools+=("$PDNS_SERVER=pdns-server" "/usr/lib/*/pdns/libgeoipbackend.so=pdns-backend-geoip")
fi
install_tools "${tools[@]}"
# Debian starts the packaged pdns service where it can; we never use it, and
# our instances read only their own pdns.conf (--config-dir).

[[ -s $GEOIP_DB ]] || die "GeoIP database $GEOIP_DB missing (make testdata)"

if want parapet; then
  if [[ -z ${PARAPET_DNS_BIN:-} ]]; then
    log "building parapet-dns (cargo build --release -p parapet-dns)"
    cargo build --release -p parapet-dns >&2
    PARAPET_DNS_BIN=${CARGO_TARGET_DIR:-target}/release/parapet-dns
  fi
  [[ -x $PARAPET_DNS_BIN ]] || die "parapet-dns binary not found at $PARAPET_DNS_BIN"
fi

# ---------------------------------------------------------------- temp dir (removed on exit)
make_tmp parapet-dns-bench

for sys in $SYSTEMS; do
  ports_free "${PORT[$sys]}"
done

# ask SYSTEM TYPE SUBNET|none [dig options...]: one query, 2 s timeout.
ask() {
  local sys=$1 type=$2 subnet=$3; shift 3
  local ecs=()
  [[ $subnet != none ]] && ecs=(+subnet="$subnet")
  dig @127.0.0.1 -p "${PORT[$sys]}" +time=2 +tries=1 +norecurse "${ecs[@]}" "$@" "shop.$ZONE" "$type" 2>/dev/null || true
}

# wait_dns NAME PID PORT: until the server answers the zone's SOA, or the pid dies, or 20 s.
wait_dns() {
  local name=$1 pid=$2 port=$3
  for _ in $(seq 200); do
    if ! kill -0 "$pid" 2>/dev/null; then warn "$name exited during startup"; return 1; fi
    # dig +short prints errors (";; communications error ...") on stdout too.
    local soa
    soa=$(dig @127.0.0.1 -p "$port" +time=1 +tries=1 +short "$ZONE" SOA 2>/dev/null)
    [[ -n $soa && $soa != ";;"* ]] && return 0
    sleep 0.1
  done
  warn "$name did not answer on 127.0.0.1:$port within 20 s"
  return 1
}

# ---------------------------------------------------------------- zone data
# parapet-dns: the PoPs file and the settings file.
mkdir -p "$TMP/parapet"
awk 'NF == 5 {
  printf "[[pop]]\nid = \"%s\"\nlat = %s\nlon = %s\nipv4 = [\"%s\"]\nipv6 = [\"%s\"]\n\n", $1, $2, $3, $4, $5
}' <<<"$POPS" > "$TMP/parapet/pops.toml"
cat > "$TMP/parapet/dns.toml" <<EOF
ttl = $TTL
answers = 1
default_pops = ["$DEFAULT_POP"]
nameservers = ["ns1.$ZONE."]

# dnsperf asks from one address; PowerDNS limits no rate either.
[rrl]
enabled = false

[soa]
mname = "ns1.$ZONE."
rname = "hostmaster.$ZONE."
serial = 1
refresh = 3600
retry = 600
expire = 604800
minimum = 60
ttl = 3600
EOF

# PowerDNS: the geoip backend's zones file. Country → PoP: nearest to the
# country's centroid by great-circle distance (same formula as parapet-dns).
mkdir -p "$TMP/pdns"
country_map() {
  awk -v pops="$POPS" '
    function rad(d) { return d * 3.141592653589793 / 180 }
    function km(la1, lo1, la2, lo2,   h) {
      h = sin((rad(la2) - rad(la1)) / 2) ^ 2 + cos(rad(la1)) * cos(rad(la2)) * sin((rad(lo2) - rad(lo1)) / 2) ^ 2
      h = sqrt(h); if (h > 1) h = 1
      return 2 * 6371 * atan2(h, sqrt(1 - h * h))
    }
    BEGIN {
      n = split(pops, line, "\n")
      for (i = 1; i <= n; i++) if (split(line[i], f, " ") == 5) { m++; id[m] = f[1]; lat[m] = f[2]; lon[m] = f[3] }
      FS = "\t"
    }
    /^#/ || NF != 3 { next }
    {
      best = ""; bestd = 1e9
      for (j = 1; j <= m; j++) { d = km($2, $3, lat[j], lon[j]); if (d < bestd) { bestd = d; best = id[j] } }
      # keys quoted: "no" (Norway) would be a YAML boolean
      printf "    \"%s\": %s\n", tolower($1), best
    }' "$SCRIPT_DIR/country-centroids.tsv"
}
{
  cat <<EOF
# Generated by bench/dns/run.sh.
domains:
- domain: $ZONE
  ttl: $TTL
  records:
    $ZONE:
      - soa:
          content: ns1.$ZONE. hostmaster.$ZONE. 1 3600 600 604800 60
          ttl: 3600
      - ns:
          content: ns1.$ZONE.
          ttl: 3600
EOF
  awk 'NF == 5 { printf "    %s.pop.'"$ZONE"':\n      - a: %s\n      - aaaa: %s\n", $1, $4, $5 }' <<<"$POPS"
  cat <<EOF
    # %mp is "unknown" when the country is unknown or not in the mapping
    unknown.pop.$ZONE:
      - a: $(pop_field "$DEFAULT_POP" 4)
      - aaaa: $(pop_field "$DEFAULT_POP" 5)
  services:
    "*.$ZONE": "%mp.pop.$ZONE"
  mapping_lookup_formats: ["%cc"]
  custom_mapping:
EOF
  country_map
} > "$TMP/pdns/zones.yaml"

# ---------------------------------------------------------------- systems under test
ACTIVE=()
declare -A SERVER_PID

if want parapet; then
  "$PARAPET_DNS_BIN" --listen "127.0.0.1:${PORT[parapet]}" --zone "$ZONE" \
    --pops "$TMP/parapet/pops.toml" --geoip "$GEOIP_DB" --config "$TMP/parapet/dns.toml" \
    ${PARAPET_DNS_ARGS:-} >"$TMP/parapet/stdout.log" 2>"$TMP/parapet/stderr.log" &
  pid=$!
  PIDS+=("$pid")
  if wait_dns parapet "$pid" "${PORT[parapet]}"; then
    ACTIVE+=(parapet); SERVER_PID[parapet]=$pid
    log "parapet-dns on 127.0.0.1:${PORT[parapet]} (pid $pid)"
  else
    echo "NOTICE: parapet-dns did not start; skipping it. Its output:" >&2
    tail -5 "$TMP/parapet/stdout.log" "$TMP/parapet/stderr.log" >&2 || true
  fi
fi

# start_pdns NAME EXTRA_CONFIG: one pdns_server reading only $TMP/NAME/pdns.conf.
start_pdns() {
  local name=$1 extra=$2 dir=$TMP/$1
  mkdir -p "$dir"
  cat > "$dir/pdns.conf" <<EOF
launch=geoip
geoip-database-files=mmdb:$GEOIP_DB
geoip-zones-file=$TMP/pdns/zones.yaml
local-address=127.0.0.1
local-port=${PORT[$name]}
socket-dir=$dir
guardian=no
daemon=no
disable-syslog=yes
write-pid=no
loglevel=4
# no secpoll lookups of security-status.secpoll.powerdns.com
security-poll-suffix=
edns-subnet-processing=yes
receiver-threads=$PDNS_RECEIVERS
distributor-threads=$PDNS_DISTRIBUTORS
reuseport=yes
$extra
EOF
  "$PDNS_SERVER" --config-dir="$dir" >"$dir/pdns.log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  if wait_dns "$name" "$pid" "${PORT[$name]}"; then
    ACTIVE+=("$name"); SERVER_PID[$name]=$pid
    log "$name (pdns_server) on 127.0.0.1:${PORT[$name]} (pid $pid)"
  else
    echo "NOTICE: $name did not start; skipping it. Its log:" >&2
    tail -5 "$dir/pdns.log" >&2 || true
  fi
}

want pdns && start_pdns pdns ""
want pdns-nocache && start_pdns pdns-nocache "cache-ttl=0
query-cache-ttl=0
negquery-cache-ttl=0"

((${#ACTIVE[@]})) || die "no system under test started"

# ---------------------------------------------------------------- answer checks
# Every system must answer the PoPs on which the two algorithms agree; the
# load is pointless otherwise.
declare -A CHECK_FAILED
expect() {  # expect SYSTEM TYPE SUBNET|none WANTED_ADDRESS WHAT
  local got
  got=$(ask "$1" "$2" "$3" +short | paste -sd' ' -)
  if [[ $got != "$4" ]]; then
    warn "$1: $5: answered '${got:-nothing}', expected $4"
    CHECK_FAILED[$1]=1
  fi
}
for sys in "${ACTIVE[@]}"; do
  expect "$sys" A    "$ECS_SUBNET"    "$(pop_field tyo 4)" "A for $ECS_SUBNET (Tokyo)"
  expect "$sys" AAAA "$ECS_SUBNET"    "$(pop_field tyo 5)" "AAAA for $ECS_SUBNET (Tokyo)"
  expect "$sys" A    212.227.0.0/24   "$(pop_field fra 4)" "A for 212.227.0.0/24 (Frankfurt)"
  expect "$sys" A    none             "$(pop_field "$DEFAULT_POP" 4)" "A without ECS (default PoP)"
  scope=$(ask "$sys" A "$ECS_SUBNET" +noall +comments | sed -n 's/^; CLIENT-SUBNET: [^/]*\/[0-9]*\/\([0-9]*\).*/\1/p')
  [[ -n $scope && $scope != 0 ]] || { warn "$sys: no ECS scope in the answer for $ECS_SUBNET"; CHECK_FAILED[$sys]=1; }
  [[ -z ${CHECK_FAILED[$sys]:-} ]] && log "$sys: answers as expected (Tokyo, Frankfurt, default; ECS scope /$scope)"
done

# pop_of ADDRESS: the PoP id an answered address belongs to.
pop_of() { awk -v a="$1" '$4 == a || $5 == a {print $1; f = 1} END {if (!f) print (a == "" ? "—" : a)}' <<<"$POPS"; }

# ---------------------------------------------------------------- load
QUERIES=$TMP/queries.txt
for n in $NAMES; do printf '%s.%s A\n%s.%s AAAA\n' "$n" "$ZONE" "$n" "$ZONE"; done > "$QUERIES"

# ECS option value for dnsperf -E 8:<hex> (RFC 7871): family, source prefix,
# scope 0, then the address truncated to the prefix's bytes.
ecs_hex() {
  local net=${1%/*} len=${1#*/} bytes hex="" i
  [[ $net != *:* ]] || die "ECS_SUBNET: only IPv4 subnets are supported ($1)"
  IFS=. read -ra octets <<<"$net"
  bytes=$(((len + 7) / 8))
  for ((i = 0; i < bytes; i++)); do hex+=$(printf '%02x' "${octets[i]}"); done
  printf '0001%02x00%s' "$len" "$hex"
}
declare -A PROFILE_ARGS=([no-ecs]="-e" [ecs]="-E 8:$(ecs_hex "$ECS_SUBNET")")

MODES=max
((FIXED_QPS > 0)) && MODES="max fixed"

RAW=$TMP/raw.tsv   # profile mode system round qps lat_s stddev_s lost req_bytes resp_bytes non_noerror server_cpu dnsperf_cpu
: > "$RAW"

# CPU seconds of a process (all its threads), and of this shell's waited-for
# children (dnsperf) into CHILD_CPU: `times` must run in this shell, not in a
# $(...) subshell, to see them.
HZ=$(getconf CLK_TCK)
process_cpu() { awk -v hz="$HZ" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$1/stat" 2>/dev/null || echo 0; }
children_cpu() {
  times > "$TMP/times"
  CHILD_CPU=$(awk 'NR == 2 { for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); t += a[1] * 60 + a[2] }; printf "%.2f", t }' "$TMP/times")
}

LOADAVG_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
n_active=${#ACTIVE[@]}
for ((round = 1; round <= ROUNDS; round++)); do
  for profile in $PROFILES; do
    for mode in $MODES; do
      # rotate the system order each round so no system always follows the same one
      for ((k = 0; k < n_active; k++)); do
        sys=${ACTIVE[$(((k + round - 1) % n_active))]}
        out="$TMP/out.$round.$profile.$mode.$sys"
        rate=(); [[ $mode == fixed ]] && rate=(-Q "$FIXED_QPS")
        # shellcheck disable=SC2086 # PROFILE_ARGS holds several words
        cmd=(dnsperf -s 127.0.0.1 -p "${PORT[$sys]}" -d "$QUERIES" -l "$DURATION"
             -T 1 -c "$DNSPERF_CLIENTS" -q "$DNSPERF_OUTSTANDING" ${PROFILE_ARGS[$profile]} "${rate[@]}")
        log "round $round/$ROUNDS: $sys $profile $mode (dnsperf ${cmd[*]:7})"
        children_cpu; gen0=$CHILD_CPU; srv0=$(process_cpu "${SERVER_PID[$sys]}"); t0=$EPOCHREALTIME
        if ! run_load "$out" "${cmd[@]}"; then
          warn "dnsperf failed for $sys $profile $mode: $(tail -2 "$out" | paste -sd' ' -)"; continue
        fi
        t1=$EPOCHREALTIME; srv1=$(process_cpu "${SERVER_PID[$sys]}"); children_cpu; gen1=$CHILD_CPU
        # cores busy on average over the run
        cpu=$(awk -v t0="$t0" -v t1="$t1" -v s0="$srv0" -v s1="$srv1" -v g0="$gen0" -v g1="$gen1" \
          'BEGIN { d = t1 - t0; printf "%.2f\t%.2f", (s1 - s0) / d, (g1 - g0) / d }')
        # dnsperf 2.10:  Queries lost: 0 (0.00%) / Response codes: NOERROR 12 (100.00%) /
        # Average packet size: request 59, response 81 / Queries per second: 123.4 /
        # Average Latency (s): 0.000123 (min ..., max ...) / Latency StdDev (s): 0.000045
        line=$(awk '
          /Queries lost:/          { lost = $3 }
          /Response codes:/        { for (i = 3; i < NF; i += 3) if ($i != "NOERROR") bad += $(i + 1) }
          /Average packet size:/   { req = $5; sub(/,/, "", req); resp = $7 }
          /Queries per second:/    { qps = $4 }
          /Average Latency \(s\):/ { lat = $4 }
          /Latency StdDev \(s\):/  { sd = $4 }
          END { if (qps != "" && lat != "") printf "%s\t%s\t%s\t%s\t%s\t%s\t%d", qps, lat, sd, lost, req, resp, bad }
        ' "$out")
        [[ -n $line ]] || { warn "could not parse dnsperf output for $sys $profile $mode"; continue; }
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$profile" "$mode" "$sys" "$round" "$line" "$cpu" >> "$RAW"
        IFS=$'\t' read -r qps _ _ lost _ _ bad <<<"$line"
        ((lost == 0)) || warn "$sys $profile $mode: $lost queries lost"
        ((bad == 0)) || warn "$sys $profile $mode: $bad answers other than NOERROR"
        sleep 1
      done
    done
  done
done

# The ECS option must be in every query of the ecs profile: with the same
# names, its requests are longer than no-ecs's by the option (4 + 4 + address
# bytes), give or take 1 for dnsperf's rounding of the average size.
if [[ " $PROFILES " == *" ecs "* && " $PROFILES " == *" no-ecs "* ]]; then
  hex=$(ecs_hex "$ECS_SUBNET")
  want_delta=$((4 + ${#hex} / 2))
  awk -F'\t' -v w="$want_delta" '
    $1 == "no-ecs" { plain[$3] = $9 } $1 == "ecs" { ecs[$3] = $9 }
    END { for (s in ecs) if ((s in plain) && (ecs[s] - plain[s] < w - 1 || ecs[s] - plain[s] > w + 1))
            printf "[bench] WARNING: %s: ecs requests are %d bytes longer than no-ecs ones, not %d\n", s, ecs[s] - plain[s], w > "/dev/stderr" }
  ' "$RAW"
fi

# PowerDNS's own cache counters over all the runs above.
declare -A PDNS_CACHE
for sys in "${ACTIVE[@]}"; do
  [[ $sys == pdns* ]] || continue
  counters=""
  for c in packetcache-hit packetcache-miss query-cache-hit query-cache-miss; do
    v=$(pdns_control --config-dir="$TMP/$sys" --socket-dir="$TMP/$sys" show "$c" 2>/dev/null || true)
    [[ $v =~ ^[0-9]+$ ]] || { counters=""; break; }
    counters+="${counters:+, }$c $v"
  done
  [[ -n $counters ]] && PDNS_CACHE[$sys]=$counters
done

# ---------------------------------------------------------------- report
# median across rounds of each metric, per (profile, mode, system)
MED=$TMP/median.tsv
awk -F'\t' '
  function median(s,   a, n, t, i, j) {
    n = split(s, a, " "); if (n == 0) return "nan"
    for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] + 0 > t + 0; j--) a[j + 1] = a[j]; a[j + 1] = t }
    return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  { k = $1 "\t" $2 "\t" $3; if (!(k in qps)) order[++m] = k
    qps[k] = qps[k] " " $5; lat[k] = lat[k] " " $6; sd[k] = sd[k] " " $7; lost[k] += $8; resp[k] = $10
    scpu[k] = scpu[k] " " $12; gcpu[k] = gcpu[k] " " $13; n[k]++ }
  END { for (i = 1; i <= m; i++) { k = order[i]
          printf "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%d\n", k, median(qps[k]), median(lat[k]), median(sd[k]), lost[k], resp[k],
            median(scpu[k]), median(gcpu[k]), n[k] } }
' "$RAW" > "$MED"

fmt_s() {  # seconds → µs / ms
  awk -v v="$1" 'BEGIN { if (v == "" || v == "nan") print "—"; else if (v < 0.001) printf "%.0f µs", v * 1e6; else printf "%.2f ms", v * 1e3 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print "—"; else printf "%.2f", a / b }'; }
med_qps() { awk -F'\t' -v p="$1" -v m="$2" -v s="$3" '$1 == p && $2 == m && $3 == s {print $4}' "$MED"; }

PDNS_VERSION=$("$PDNS_SERVER" --version 2>&1 | grep -o 'Authoritative Server [0-9.]*' | head -1 || true)
DNSPERF_VERSION=$(dnsperf -h 2>&1 | awk '/^Version/ {print $2}')
PARAPET_VERSION=""
want parapet && PARAPET_VERSION=$("$PARAPET_DNS_BIN" --version 2>/dev/null | head -1 || true)
AGREEMENT=""
if want pdns || want pdns-nocache; then
  if [[ -x $VENV_PY ]]; then
    AGREEMENT=$("$VENV_PY" "$SCRIPT_DIR/mapping_agreement.py" --pops "$TMP/parapet/pops.toml" \
      --centroids "$SCRIPT_DIR/country-centroids.tsv" --db "$GEOIP_DB" --default "$DEFAULT_POP" 2>&1 | tail -1 || true)
  else
    AGREEMENT="(not measured: $VENV_PY missing; make testdata creates it)"
  fi
fi

{
  echo "# Geo-DNS benchmark: parapet-dns vs PowerDNS (GeoIP backend)"
  echo
  echo "$(nproc)-core VM; **dnsperf runs on the same cores as the server**, so every figure is"
  echo "\"server + load generator on $(nproc) cores\": ratios matter more than absolutes."
  echo "Load average before the runs: $LOADAVG_BEFORE."
  echo
  echo "$(stamp); \
${PARAPET_VERSION:+$PARAPET_VERSION, }PowerDNS ${PDNS_VERSION:-?} (receiver-threads=$PDNS_RECEIVERS, \
distributor-threads=$PDNS_DISTRIBUTORS), dnsperf $DNSPERF_VERSION; database $(basename "$(readlink -f "$GEOIP_DB")")."
  echo "Each run: ${DURATION}s of \`dnsperf -T1 -c$DNSPERF_CLIENTS -q$DNSPERF_OUTSTANDING\` over $(wc -l < "$QUERIES") queries \
($(wc -w <<<"$NAMES") names × A, AAAA); median of $ROUNDS round(s), systems alternated within each round. \
Systems run: ${ACTIVE[*]}."
  echo "Profiles: no-ecs = EDNS0, no ECS, from 127.0.0.1 (default PoP); ecs = ECS $ECS_SUBNET (Tokyo) in every query. \
Load: max = as fast as the server answers $DNSPERF_OUTSTANDING queries in flight (latency is mostly queueing); \
fixed = ${FIXED_QPS} queries/s (dnsperf -Q)."
  echo "pdns = caches on (defaults), pdns-nocache = cache-ttl, query-cache-ttl, negquery-cache-ttl 0. \
PowerDNS maps countries to PoPs; parapet-dns ranks PoPs by distance from the client's city (see the header of bench/dns/run.sh)."
  echo
  echo "| profile | load | system | queries/s (median) | avg latency | latency stddev | lost | response bytes | CPU cores: server + dnsperf | queries/s ÷ pdns |"
  echo "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"
  while IFS=$'\t' read -r profile mode sys qps lat sd lost resp scpu gcpu n; do
    r="—"; [[ $mode == max ]] && r=$(ratio "$qps" "$(med_qps "$profile" max pdns)")
    note=""; [[ -n ${CHECK_FAILED[$sys]:-} ]] && note=" (answer check failed)"
    printf '| %s | %s | %s%s | %s | %s | %s | %s | %s | %s + %s | %s |\n' "$profile" "$mode" "$sys" "$note" \
      "$(awk -v v="$qps" 'BEGIN {printf "%.0f", v}')" "$(fmt_s "$lat")" "$(fmt_s "$sd")" "$lost" "$resp" "$scpu" "$gcpu" "$r"
  done < "$MED"
  echo
  for sys in "${ACTIVE[@]}"; do
    [[ -n ${PDNS_CACHE[$sys]:-} ]] && echo "$sys cache counters over all its runs: ${PDNS_CACHE[$sys]}.  "
  done
  for profile in $PROFILES; do
    a=$(med_qps "$profile" max parapet)
    for base in pdns pdns-nocache; do
      b=$(med_qps "$profile" max "$base")
      [[ -n $a && -n $b ]] && echo "parapet / $base queries/s, $profile: $(ratio "$a" "$b")  "
    done
  done
  echo
  echo "Which PoP each system answers (A, or AAAA for the IPv6 subnet), by ECS subnet:"
  echo
  printf '| client subnet | DB-IP city |'; for sys in "${ACTIVE[@]}"; do printf ' %s |' "$sys"; done; echo
  printf '|---|---|'; for _ in "${ACTIVE[@]}"; do printf -- '---|'; done; echo
  for probe in "${PROBES[@]}"; do
    subnet=${probe%%|*}; city=${probe#*|}
    type=A; [[ $subnet == *:* ]] && type=AAAA
    printf '| %s | %s |' "$subnet" "$city"
    for sys in "${ACTIVE[@]}"; do printf ' %s |' "$(pop_of "$(ask "$sys" "$type" "$subnet" +short | head -1)")"; done
    echo
  done
  [[ -n $AGREEMENT ]] && { echo; echo "$AGREEMENT"; }
} | tee "$RESULTS_MD"
log "written to $RESULTS_MD"
