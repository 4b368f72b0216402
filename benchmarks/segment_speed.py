"""Fit time per relevance map of each segmenter (simple, gmm, bmm) at 224² and 1024², CPU.

Maps are synthetic but shaped like LRP output (``core.segment.synthetic``): signed, spatially correlated
Laplace background relevance plus a blob or a thin crack whose border gets more relevance than its inside,
alternating over seeds. Each round times every method once on every map, interleaved, so load from other
processes hits all methods alike. Reported: median (and 10th / 90th percentile) of the per-map times, i.e.
one ``core.segment.segment`` call including input checks, filtering, the fit and the score of every pixel.
Process CPU time per call is printed beside it: on a CPU shared with other jobs the wall clock grows with
their load, the CPU time much less. Threads: OpenCV's blur may use several; the segmenters call no BLAS.

Usage::

    .venv/bin/python benchmarks/segment_speed.py            # 224² and 1024²
    .venv/bin/python benchmarks/segment_speed.py --quick    # 224² only, a few seconds

The last line reads ``RESULT simple_ms=<x> gmm_ms=<y> bmm_ms=<z>`` (medians at 224²).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
from lrpseg.core.segment import SEGMENTERS, segment
from lrpseg.core.segment.synthetic import synthetic_relevance

METHODS = ("simple", "gmm", "bmm", "gmm-sharp", "bmm-sharp")


def make_maps(size: int, count: int) -> list[np.ndarray]:
    """Realistic synthetic relevance maps: blobs and cracks alternate, faint insides, varied noise."""
    maps = []
    for seed in range(count):
        kind = ("blob", "curve")[seed % 2]
        relevance, _ = synthetic_relevance((size, size), kind=kind, seed=seed, noise=0.05 + 0.05 * (seed % 3),
                                           interior=0.3 + 0.2 * (seed % 3),
                                           size=0.08 * size if kind == "blob" else max(3, size // 75))
        maps.append(relevance.astype(np.float32))  # LRP maps come as float32
    return maps


def time_methods(maps: list[np.ndarray], rounds: int) -> dict[str, np.ndarray]:
    """Per-call seconds of every method on every map, ``rounds`` interleaved rounds."""
    for method in METHODS:  # warm-up: imports, first-call allocations
        segment(maps[0], method)
    times: dict[str, list[float]] = {m: [] for m in METHODS}
    cpu: dict[str, list[float]] = {m: [] for m in METHODS}
    iterations: dict[str, list[int]] = {m: [] for m in METHODS}
    for _ in range(rounds):
        for relevance in maps:
            for method in METHODS:
                start, start_cpu = time.perf_counter(), time.process_time()
                result = segment(relevance, method)
                cpu[method].append(time.process_time() - start_cpu)
                times[method].append(time.perf_counter() - start)
                iterations[method].append(int(result.params.get("iterations", 0)))
    return {m: (np.array(times[m]), np.array(cpu[m]), np.array(iterations[m])) for m in METHODS}


def report(size: int, measured: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict[str, float]:
    """Print wall-clock median / p10 / p90, process CPU time and EM iterations; return the wall medians."""
    medians = {}
    print(f"  {size}x{size}: {len(measured[METHODS[0]][0])} calls per method")
    for method in METHODS:
        wall, cpu, its = measured[method]
        wall, cpu = wall * 1e3, cpu * 1e3
        medians[method] = float(np.median(wall))
        print(f"    {method:9s} wall median {medians[method]:8.2f} ms  p10 {np.percentile(wall, 10):8.2f}  "
              f"p90 {np.percentile(wall, 90):8.2f}  | cpu median {np.median(cpu):8.2f} ms  "
              f"| iterations median {np.median(its):.0f} max {its.max()}")
    return medians


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="224² only, fewer rounds")
    args = parser.parse_args(argv)
    assert set(SEGMENTERS) == set(METHODS)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"segment_speed: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {load:.1f}, numpy {np.__version__}")
    plans = [(224, 8, 3 if args.quick else 10)]
    if not args.quick:
        plans.append((1024, 4, 3))
    result = {}
    for size, count, rounds in plans:
        medians = report(size, time_methods(make_maps(size, count), rounds))
        if size == 224:
            result = medians
    print("RESULT " + " ".join(f"{m}_ms={result[m]:.2f}" for m in METHODS))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
