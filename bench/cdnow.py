"""A real transaction log for `churnwatch evaluate`: CDNOW, as shipped in the `Lifetimes` wheel.

CDNOW_master.txt holds 69,659 purchases of 23,570 customers who all made their first
purchase in the first quarter of 1997, up to June 1998 (one line per customer and day:
id, date, CDs, dollars). This script writes it as churnwatch events (one paid ``order`` per
line, at noon UTC) and a truth file: a customer who bought nothing in the last
``--silent-days`` (182) of the log churned the day after their last purchase; the others
stay. Prints figures; asserts nothing.

    python bench/cdnow.py --out-dir cdnow
    churnwatch evaluate --events cdnow/events.jsonl --truth cdnow/truth.csv [--risk-target churn]

Without ``--wheel`` the wheel is fetched from PyPI with ``pip download``.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import zipfile
from datetime import date, timedelta
from pathlib import Path

WHEEL = "Lifetimes==0.11.3"
MEMBER = "lifetimes/datasets/CDNOW_master.txt"


def fetch_wheel(workdir: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(workdir), WHEEL],
        check=True,
    )
    return next(workdir.glob("*.whl"))


def read_purchases(wheel: Path) -> list[tuple[str, date, int, float]]:
    """(customer, day, CDs, dollars) per line of CDNOW_master.txt."""
    with zipfile.ZipFile(wheel) as zf:
        text = zf.read(MEMBER).decode("ascii")
    rows = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 4 or not parts[0].isdigit():  # the header
            continue
        cid, day, cds, dollars = parts
        d = date(int(day[:4]), int(day[4:6]), int(day[6:]))
        rows.append((f"c{int(cid):05d}", d, int(cds), float(dollars)))
    return rows


def write(rows: list[tuple[str, date, int, float]], out: Path, silent_days: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    ordered = sorted(enumerate(rows), key=lambda r: (r[1][1], f"r{r[0]}"))
    with (out / "events.jsonl").open("w", encoding="utf-8") as fh:
        for i, (cid, d, cds, dollars) in ordered:
            event = {
                "event_id": f"r{i}",
                "event_type": "order",
                "customer_id": cid,
                "ts": f"{d.isoformat()}T12:00:00Z",
                "order_id": f"r{i}",
                "amount": dollars,
                "items": cds,
                "status": "paid",
            }
            fh.write(json.dumps(event) + "\n")
    last: dict[str, date] = {}
    for cid, d, _, _ in rows:
        last[cid] = max(d, last.get(cid, d))
    end = max(last.values())
    quiet_from = end - timedelta(days=silent_days)
    churned = 0
    with (out / "truth.csv").open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(("customer_id", "churn_date", "cause"))
        for cid in sorted(last):
            gone = last[cid] < quiet_from
            churned += gone
            w.writerow((cid, (last[cid] + timedelta(days=1)).isoformat() if gone else "", ""))
    print(
        f"{len(rows):,} purchases of {len(last):,} customers to {end}; "
        f"{churned:,} churned (no purchase in the last {silent_days} days) -> {out}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out-dir", type=Path, default=Path("cdnow"))
    ap.add_argument("--wheel", type=Path, help="a downloaded Lifetimes wheel")
    ap.add_argument("--silent-days", type=int, default=182)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or fetch_wheel(Path(tmp))
        write(read_purchases(wheel), args.out_dir, args.silent_days)


if __name__ == "__main__":
    main()
