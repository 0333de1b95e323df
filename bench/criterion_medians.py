"""Prints the median (and mean) of every criterion benchmark's last run.

Usage: python3 bench/criterion_medians.py [TARGET_DIR]   (default: target)
"""

import json
import pathlib
import sys


def main(target):
    root = pathlib.Path(target) / "criterion"
    rows = []
    for estimates in sorted(root.glob("**/new/estimates.json")):
        bench = json.loads((estimates.parent / "benchmark.json").read_text())
        data = json.loads(estimates.read_text())
        rows.append((bench["full_id"], data["median"]["point_estimate"], data["mean"]["point_estimate"]))
    if not rows:
        sys.exit(f"no criterion results under {root}: run `make bench` first")
    width = max(len(name) for name, _, _ in rows)
    print(f"{'benchmark':<{width}}  {'median':>10}  {'mean':>10}")
    for name, median, mean in rows:
        print(f"{name:<{width}}  {median / 1000:>8.2f}us  {mean / 1000:>8.2f}us")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "target")
