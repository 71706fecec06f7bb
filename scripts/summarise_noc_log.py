"""Summarise per-image lines of `napari-vidseg eval-interactive` (for a run cut short by time).

    python scripts/summarise_noc_log.py runs/grabcut_ours.log [more.log ...]

Each line looks like `[i/N] name method noc85=.. noc90=.. @1=.. @3=.. ... ms/click=..`.
Prints, per method, the number of images and the mean NoC and mIoU at the logged click counts
over the images that finished, and the names of those images (so another method can be compared on
exactly the same images).
"""
import re
import statistics
import sys
from collections import defaultdict

rows = defaultdict(dict)
for path in sys.argv[1:]:
    for line in open(path):
        m = re.match(r"\[(\d+)/(\d+)\] (\S+) (\S+) (.*)", line.strip())
        if not m or "noc90=" not in line:
            continue
        name, method = m.group(3), m.group(4)
        fields = dict(kv.split("=") for kv in m.group(5).split())
        rows[method][name] = {k: float(v) for k, v in fields.items()}
common = set.intersection(*(set(r) for r in rows.values())) if rows else set()
for subset_name, subset in (("all finished", None), ("common to all methods", common)):
    print(f"## {subset_name}")
    for method, per in rows.items():
        names = sorted(per if subset is None else subset)
        if not names:
            continue
        keys = [k for k in per[names[0]] if k.startswith("@")]
        s = {k: round(statistics.mean(per[n][k] for n in names), 3) for k in ["noc85", "noc90", *keys]}
        ms = statistics.median(per[n]["ms/click"] for n in names)
        print(f"{method}: n_images={len(names)} {s} median_ms_per_click={ms:.0f}")
    print()
print("common images:", " ".join(sorted(common)))
