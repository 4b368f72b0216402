"""Endurance: one ``lrpseg segment`` run over thousands of generated images, its memory sampled throughout.

The images are small demo surfaces (:func:`core.demo.make_sample`; 32, 48 or 64 px, so both the centre-crop
and the tiled path run) and the model is a slim VGG-A (width 0.125, 32 px input) with random weights: the
point is many iterations of the real command, not accuracy. The command runs as its own process (the
installed console script); this script polls that process's resident set size (``/proc/<pid>/status``)
and reads its progress bar, so nothing is measured from inside.

Usage::

    python tests/reliability/endurance.py --images 2000 [--json result.json] [--keep DIR]

Prints RSS just before the first image is done (start-up: imports, model), after the first image, at the
middle and at the end of the batch (the moment the summary line comes, before interpreter shutdown), the peak
over the batch, and the growth per 1000 images over the second half.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np
from reliability_helpers import child_env, lrpseg_script, rss_mb, save_slim_model

SIZES = (32, 48, 64)
_PROGRESS = re.compile(rb"(\d+)/(\d+) \[")


def make_images(folder: Path, count: int, seed: int = 0) -> None:
    """Write ``count`` demo PNGs (every third one damaged) of 32, 48 or 64 px into ``folder``."""
    from lrpseg.core.demo import make_sample

    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        rng = np.random.default_rng([seed, index])
        image, _ = make_sample(rng, SIZES[index % len(SIZES)], damaged=index % 3 == 0)
        cv2.imwrite(str(folder / f"img{index:05d}.png"), image)


def run(count: int, work: Path, interval: float = 0.05) -> dict:
    """Generate the data, run ``lrpseg segment`` and sample its memory; return the measurements."""
    images, out, model = work / "images", work / "out", work / "slim.safetensors"
    started = time.monotonic()
    make_images(images, count)
    save_slim_model(model, input_size=32)
    generated = time.monotonic() - started

    command = [lrpseg_script(), "segment", str(images), "--model", str(model), "--out", str(out)]
    child = subprocess.Popen(
        command + ["--device", "cpu"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env()
    )
    done = [0]
    finished_at = [float("inf")]  # when the summary line came: the batch is over, the process exits next
    tail = bytearray()
    t0 = time.monotonic()

    def read_progress() -> None:
        while chunk := child.stderr.read1(4096):
            tail.extend(chunk)
            del tail[:-20000]
            matches = _PROGRESS.findall(chunk)
            if matches:
                done[0] = int(matches[-1][0])

    stdout: list[str] = []

    def read_summary() -> None:
        for line in child.stdout:
            stdout.append(line.decode(errors="replace").strip())
            finished_at[0] = min(finished_at[0], time.monotonic() - t0)

    readers = [threading.Thread(target=f, daemon=True) for f in (read_progress, read_summary)]
    for reader in readers:
        reader.start()
    samples: list[tuple[float, int, float]] = []  # (seconds, images done, RSS MiB)
    while child.poll() is None:
        try:
            rss = rss_mb(child.pid)
        except (OSError, RuntimeError):  # exited between poll() and the read
            break
        if rss > 0:
            samples.append((time.monotonic() - t0, done[0], rss))
        time.sleep(interval)
    child.wait()
    for reader in readers:
        reader.join(timeout=5)
    seconds = time.monotonic() - t0
    if child.returncode != 0:
        raise RuntimeError(f"lrpseg segment failed ({child.returncode}): {tail.decode(errors='replace')[-2000:]}")
    batch = [sample for sample in samples if sample[0] < finished_at[0]]  # without interpreter shutdown

    def after(n: int) -> float:
        """RSS of the first sample taken once n images were done."""
        chosen = [rss for _, d, rss in batch if d >= n]
        return chosen[0] if chosen else float("nan")

    before_first = [rss for _, d, rss in batch if d == 0]
    second_half = np.array([(d, rss) for _, d, rss in batch if d >= count // 2])
    slope = (
        float(np.polyfit(second_half[:, 0], second_half[:, 1], 1)[0]) * 1000
        if len(second_half) > 2 and np.ptp(second_half[:, 0]) > 0
        else float("nan")
    )
    end = batch[-1][2] if batch else float("nan")
    report = json.loads((out / "lrpseg-report.json").read_text(encoding="utf-8"))["summary"]
    return {
        "images": count,
        "summary": report,
        "generate_s": round(generated, 1),
        "segment_s": round(seconds, 1),
        "images_per_s": round(count / seconds, 2),
        "samples": len(samples),
        "rss_mb": {
            "start": round(before_first[-1] if before_first else float("nan"), 1),
            "first_image": round(after(1), 1),
            "tenth_image": round(after(10), 1),
            "middle": round(after(count // 2), 1),
            "end": round(end, 1),
            "peak": round(max(rss for _, _, rss in batch), 1),
        },
        "growth_mb_first_to_end": round(end - after(1), 1),
        "growth_mb_tenth_to_end": round(end - after(10), 1),
        "growth_mb_middle_to_end": round(end - after(count // 2), 1),
        "slope_mb_per_1000_images_second_half": round(slope, 2),
        "stdout": " ".join(stdout),
        "trace": [(round(t, 2), d, round(r, 1)) for t, d, r in samples],
    }


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; prints the measurements (and writes them as JSON with ``--json``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--json", type=Path, help="also write the measurements to this file")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    args = parser.parse_args(argv)
    work = args.keep or Path(tempfile.mkdtemp(prefix="lrpseg-endurance-"))
    try:
        result = run(args.images, work)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    rss = result["rss_mb"]
    print(
        f"lrpseg segment over {result['images']} images in {result['segment_s']} s "
        f"({result['images_per_s']} images/s): {result['stdout']}"
    )
    print(
        f"RSS MiB: start {rss['start']}, after image 1 {rss['first_image']}, middle {rss['middle']}, "
        f"end {rss['end']}, peak {rss['peak']}"
    )
    print(
        f"growth: image 1 -> end {result['growth_mb_first_to_end']} MiB, middle -> end "
        f"{result['growth_mb_middle_to_end']} MiB, second-half slope "
        f"{result['slope_mb_per_1000_images_second_half']} MiB per 1000 images"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
