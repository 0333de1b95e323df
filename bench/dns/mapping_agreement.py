"""How often PowerDNS's country-level PoP mapping (bench/dns/run.sh) answers
the same PoP as parapet-dns's nearest-by-distance choice.

Samples random IPv4 addresses, weighting every located address equally, and
for each computes
  - parapet-dns: nearest PoP (great-circle) to the record's coordinates, or to
    its country's centroid when the record has none;
  - PowerDNS: the PoP its `custom_mapping` gives the record's country (nearest
    to the country centroid), or the default PoP for a country not mapped.
Prints one line of Markdown.

    python mapping_agreement.py --pops pops.toml --centroids country-centroids.tsv \
        --db dbip-city-lite.mmdb --default fra [--samples 100000]

Needs the `maxminddb` module (the venv of `make testdata` has it).
"""

import argparse
import collections
import ipaddress
import math
import random
import tomllib

import maxminddb

EARTH_RADIUS_KM = 6371.0


def distance_km(a, b):
    lat1, lon1, lat2, lon2 = map(math.radians, (a[0], a[1], b[0], b[1]))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--pops", required=True)
    parser.add_argument("--centroids", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--default", required=True, help="PoP id for unknown locations")
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    with open(args.pops, "rb") as f:
        pops = {p["id"]: (p["lat"], p["lon"]) for p in tomllib.load(f)["pop"]}
    centroids = {}
    with open(args.centroids) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            code, lat, lon = line.split("\t")
            centroids[code] = (float(lat), float(lon))

    def nearest(point):
        return min(pops, key=lambda pop: distance_km(point, pops[pop]))

    by_country = {code: nearest(point) for code, point in centroids.items()}
    reader = maxminddb.open_database(args.db)
    rng = random.Random(args.seed)
    located = same = 0
    differ = collections.Counter()
    for _ in range(args.samples):
        address = ipaddress.IPv4Address(rng.getrandbits(32))
        if not address.is_global:
            continue
        record = reader.get(str(address)) or {}
        code = (record.get("country") or record.get("registered_country") or {}).get("iso_code")
        location = record.get("location") or {}
        if "latitude" in location and "longitude" in location:
            point = (location["latitude"], location["longitude"])
        elif code in centroids:
            point = centroids[code]
        else:
            continue  # unknown to both: each answers its default PoP
        located += 1
        parapet = nearest(point)
        pdns = by_country.get(code, args.default)
        if parapet == pdns:
            same += 1
        else:
            differ[(code, parapet, pdns)] += 1

    if located == 0:
        print("no sampled address was located")
        return
    top = ", ".join(
        f"{code or '?'} {parapet}→{pdns} {100 * n / located:.1f}%"
        for (code, parapet, pdns), n in differ.most_common(5)
    )
    print(
        f"Of {located} random located IPv4 addresses, PowerDNS's country mapping answers the "
        f"PoP parapet-dns answers for {100 * same / located:.1f}%. Largest differences "
        f"(country parapet→pdns, share of all): {top}."
    )


if __name__ == "__main__":
    main()
