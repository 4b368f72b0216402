"""How long one label click takes to commit (the GUI sets labels on its own thread, fsync'ed).

``lrpseg`` commits every label with ``synchronous=FULL`` (:mod:`lrpseg.core.project_store`), so the time is the
disk's fsync latency. Run it on the disk in question (a network share, a USB stick) with ``--folder``; the
project store is created in a fresh temporary folder inside it and removed afterwards.

Prints the median, 95th percentile and maximum per commit in ms, and one ``RESULT`` line.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from lrpseg.core.project import Project


def measure(folder: Path, clicks: int) -> list[float]:
    """Commit ``clicks`` label changes one by one in a project under ``folder``; ms per commit."""
    work = Path(tempfile.mkdtemp(prefix="lrpseg-label-commit-", dir=folder))
    try:
        for i in range(8):
            cv2.imwrite(str(work / f"{i}.png"), np.zeros((8, 8), np.uint8))
        times = []
        with Project.open(work) as project:
            for i in range(clicks):
                start = time.perf_counter()
                project.set_label(f"{i % 8}.png", "damaged" if i % 2 else "undamaged")
                times.append(1000 * (time.perf_counter() - start))
        return times
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()), help="disk to measure")
    parser.add_argument("--clicks", type=int, default=200)
    args = parser.parse_args()
    times = sorted(measure(args.folder, args.clicks))
    p95 = times[int(0.95 * (len(times) - 1))]
    print(f"{args.folder}: {len(times)} commits, median {statistics.median(times):.2f} ms, "
          f"p95 {p95:.2f} ms, max {times[-1]:.2f} ms")
    print(f"RESULT median_ms={statistics.median(times):.2f} p95_ms={p95:.2f} max_ms={times[-1]:.2f}")


if __name__ == "__main__":
    main()
