"""Writes a small GeoIP2-City test database with known networks.

Usage: python make_geo_mmdb.py OUT.mmdb   (needs the `mmdb-writer` package)

Networks (documentation ranges, so no real address is misplaced):
  203.0.113.0/24  -> JP, Tokyo      (35.6895, 139.6917)
  198.51.100.0/24 -> DE, Frankfurt  (50.1109, 8.6821)
  2001:db8:1::/48 -> US, no city    (37.751, -97.822)
  100.64.1.0/24   -> DE, country only (no coordinates)
"""

import sys

from mmdb_writer import MMDBWriter
from netaddr import IPSet


def city(iso, name, lat, lon):
    record = {"country": {"iso_code": iso}, "location": {"latitude": lat, "longitude": lon}}
    if name:
        record["city"] = {"names": {"en": name}}
    return record


def main(out):
    writer = MMDBWriter(ip_version=6, database_type="GeoIP2-City", ipv4_compatible=True, float_type="f64")
    writer.insert_network(IPSet(["203.0.113.0/24"]), city("JP", "Tokyo", 35.6895, 139.6917))
    writer.insert_network(IPSet(["198.51.100.0/24"]), city("DE", "Frankfurt", 50.1109, 8.6821))
    writer.insert_network(IPSet(["2001:db8:1::/48"]), city("US", None, 37.751, -97.822))
    writer.insert_network(IPSet(["100.64.1.0/24"]), {"country": {"iso_code": "DE"}})
    writer.to_db_file(out)


if __name__ == "__main__":
    main(sys.argv[1])
