"""Scale-out: the local engine against Ray with 1 and 2 workers, beside the LRP floor, in one run.

On the same generated demo images (128² px by default, a third damaged) and the same slim model (width 0.25,
random weights: LRP costs the same whatever the weights), one process measures:

1. ``lrp``: LRP alone on pre-decoded, normalised crops, batches of 8 (the floor every engine is held to); it
   alternates with ``local`` (``--rounds`` times), and the local engine is held to the floors measured around it;
2. ``analyse``: ``core.pipeline.analyse`` per image on decoded images (the old per-image path);
3. ``local``: ``lrpseg segment`` end to end (``cli.main`` in this process: scan, decode, LRP, segment, write);
4. ``local-1t``: the same with one torch thread (what one Ray worker gets);
5. ``ray-1``, ``ray-2``: ``lrpseg segment --engine ray --workers N`` on a local cluster started once.

Throughput "after start-up" counts from the first written image to the last ((N-1) / time), so imports, model
loading and actor start-up are left out; the total wall time including them is printed beside it. The per-image
overhead Ray adds is 1/rate(ray-1) - 1/rate(local-1t); the driver's export time per image (median of
``MaskExport.export_one`` calls) bounds what one driver can take from any number of workers. ``--endurance N``
then runs Ray with 2 workers over N images and samples resident memory (driver, and driver plus workers) every
half second. With a CUDA GPU the script also measures LRP at batch 64 on it.

Usage::

    .venv/bin/python benchmarks/scaleout.py                       # 500 images, endurance 2000
    .venv/bin/python benchmarks/scaleout.py --images 100 --endurance 0   # quick look

The last line reads ``RESULT key=value ...``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from lrpseg.core import cli
from lrpseg.core.checkpoint import load_checkpoint, save_checkpoint
from lrpseg.core.demo import make_sample
from lrpseg.core.export_run import MaskExport
from lrpseg.core.images import read_image
from lrpseg.core.lrp import explain
from lrpseg.core.models import build_vgg_a
from lrpseg.core.pipeline import analyse
from lrpseg.core.preprocess import prepare_eval

WORKER_TITLE = b"SegmentWorker"


def make_images(folder: Path, count: int, size: int) -> list[Path]:
    """``count`` demo PNGs of ``size``² px, every third one damaged."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        image, _ = make_sample(np.random.default_rng([7, index]), size, damaged=index % 3 == 0)
        path = folder / f"img{index:05d}.png"
        cv2.imwrite(str(path), image)
        paths.append(path)
    return paths


def lrp_floor(model, paths: list[Path], batch: int = 8) -> float:
    """Images/s of LRP alone on pre-decoded crops."""
    crops = torch.stack([prepare_eval(read_image(p), model.input_size, model.mean, model.std)[0] for p in paths])
    explain(model, crops[:batch])
    start = time.perf_counter()
    for i in range(0, len(crops), batch):
        explain(model, crops[i : i + batch])
    return len(crops) / (time.perf_counter() - start)


def analyse_rate(model, paths: list[Path]) -> float:
    """Images/s of ``analyse`` per image on decoded images."""
    images = [read_image(p) for p in paths]
    analyse(model, images[0])
    start = time.perf_counter()
    for image in images:
        analyse(model, image)
    return len(images) / (time.perf_counter() - start)


class Stamps:
    """Times at which the export wrote each image, and how long each write took (wraps
    ``MaskExport.export_one`` for one run)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.write_s: list[float] = []
        self._original = MaskExport.export_one

    def __enter__(self) -> Stamps:
        original = self._original

        def export_one(export, outcome):
            start = time.perf_counter()
            record = original(export, outcome)
            self.times.append(time.perf_counter())
            self.write_s.append(self.times[-1] - start)
            return record

        MaskExport.export_one = export_one
        return self

    def __exit__(self, *exc) -> None:
        MaskExport.export_one = self._original


def run_cli(images: Path, model: Path, out: Path, *extra: str) -> dict:
    """One ``lrpseg segment`` in this process: total seconds and images/s after the first image."""
    start = time.perf_counter()
    with Stamps() as stamps:
        code = cli.main(["segment", str(images), "--model", str(model), "--out", str(out), "--overwrite", *extra])
    if code != 0:
        raise SystemExit(f"lrpseg segment {' '.join(extra)} failed with {code}")
    times = stamps.times
    steady = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else float("nan")
    write_ms = 1000 * float(np.median(stamps.write_s))
    return {"total_s": time.perf_counter() - start, "rate": steady, "first_s": times[0] - start, "write_ms": write_ms}


def rss_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def worker_pids() -> list[int]:
    """Process ids of the running Ray segment workers (Linux: their /proc command lines carry the actor's name)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if WORKER_TITLE in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def endurance(images: Path, model: Path, out: Path, count: int) -> dict:
    """Ray with 2 workers over ``count`` images; RSS of the driver and of driver + workers over the run."""
    samples: list[tuple[int, float, float]] = []
    done = threading.Event()
    with Stamps() as stamps:

        def sample() -> None:
            while not done.is_set():
                driver = rss_mib(os.getpid())
                samples.append((len(stamps.times), driver, driver + sum(rss_mib(p) for p in worker_pids())))
                time.sleep(0.5)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        start = time.perf_counter()
        cli.main(["segment", str(images), "--model", str(model), "--out", str(out), "--overwrite",
                  "--engine", "ray", "--workers", "2"])
        elapsed = time.perf_counter() - start
        done.set()
        sampler.join()

    def at(fraction: float) -> tuple[float, float]:
        chosen = [s for s in samples if s[0] >= fraction * count] or samples[-1:]
        return chosen[0][1], chosen[0][2]

    return {
        "images": count,
        "seconds": round(elapsed, 1),
        "driver_mib": {k: round(at(f)[0]) for k, f in (("10%", 0.1), ("50%", 0.5), ("end", 1.0))},
        "all_mib": {k: round(at(f)[1]) for k, f in (("10%", 0.1), ("50%", 0.5), ("end", 1.0))},
        "peak_all_mib": round(max(s[2] for s in samples)),
    }


def gpu_lrp(model_path: Path, size: int, batch: int = 64) -> float | None:
    """LRP images/s at batch ``batch`` on the GPU, or None without one."""
    if not torch.cuda.is_available():
        return None
    model, _ = load_checkpoint(model_path, "cuda")
    crops = torch.randn(batch, 3, size, size, device="cuda")
    explain(model, crops)
    torch.cuda.synchronize()
    start, rounds = time.perf_counter(), 20
    for _ in range(rounds):
        explain(model, crops)
    torch.cuda.synchronize()
    return rounds * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--endurance", type=int, default=2000, help="images of the memory run (0: skip)")
    parser.add_argument("--rounds", type=int, default=3, help="local engine runs, each between two floor runs")
    args = parser.parse_args()
    import ray

    work = Path(tempfile.mkdtemp(prefix="lrpseg-scaleout-"))
    paths = make_images(work / "images", args.images, args.size)
    torch.manual_seed(0)
    model_path = work / "slim.safetensors"
    save_checkpoint(model_path, build_vgg_a("128n", width=0.25, input_size=args.size), training={"note": "random"})
    model, _ = load_checkpoint(model_path)
    print(f"{dt.date.today()} {platform.machine()} {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads), ray {ray.__version__}; "
          f"{args.images} images of {args.size}² px, slim model", flush=True)

    # Two torch threads on two cores swing by half from one LRP run to the next on this box, so the floor and
    # the local engine alternate, and each engine run is held to the mean of the floors measured around it.
    floors, locals_ = [lrp_floor(model, paths)], []
    for _ in range(args.rounds):
        locals_.append(run_cli(work / "images", model_path, work / "out-local"))
        floors.append(lrp_floor(model, paths))
    around = [(before + after) / 2 for before, after in zip(floors, floors[1:], strict=False)]
    ratios = [run["rate"] / floor for run, floor in zip(locals_, around, strict=True)]
    print("lrp floor " + " ".join(f"{f:.1f}" for f in floors) + "; local " + " ".join(
        f"{run['rate']:.1f}" for run in locals_) + "; ratios " + " ".join(f"{r:.2f}" for r in ratios), flush=True)
    median = int(np.argsort(ratios)[len(ratios) // 2])
    rates = {"lrp": around[median], "analyse": analyse_rate(model, paths)}
    print(f"analyse per image {rates['analyse']:.1f} images/s", flush=True)
    runs = {"local": locals_[median]}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    runs["local-1t"] = run_cli(work / "images", model_path, work / "out-local-1t")
    torch.set_num_threads(threads)
    print(f"local {runs['local']}, local-1t {runs['local-1t']}", flush=True)
    start = time.perf_counter()
    ray.init(include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    ray_start = time.perf_counter() - start
    for workers in (1, 2):
        runs[f"ray-{workers}"] = run_cli(
            work / "images", model_path, work / f"out-ray-{workers}", "--engine", "ray", "--workers", str(workers)
        )
    rates.update({name: run["rate"] for name, run in runs.items()})
    print(f"ray.init: {ray_start:.1f} s")
    print(f"{'engine':10} {'images/s':>9} {'of LRP':>7} {'total s':>8} {'1st image s':>12}  (local: median round)")
    for name, rate in rates.items():
        run = runs.get(name, {})
        total, first = (f"{run['total_s']:8.1f}", f"{run['first_s']:12.1f}") if run else (" " * 8, " " * 12)
        print(f"{name:10} {rate:9.1f} {rate / rates['lrp']:7.2f} {total} {first}")
    overhead_ms = 1000 * (1 / rates["ray-1"] - 1 / rates["local-1t"])
    print(f"Ray's overhead per image (ray-1 against local-1t): {overhead_ms:.1f} ms")
    write_ms = runs["ray-2"]["write_ms"]
    print(f"the driver's export per image (median, Ray 2 workers): {write_ms:.2f} ms, so at most "
          f"{1000 / write_ms:.0f} images/s from one driver however many workers")
    result = {name: round(rate, 1) for name, rate in rates.items()} | {"ray_overhead_ms": round(overhead_ms, 1)}
    result |= {"local_of_floor": round(ratios[median], 2), "write_ms": round(write_ms, 2)}
    gpu = gpu_lrp(model_path, args.size)
    print("GPU LRP at batch 64: " + ("no CUDA GPU here" if gpu is None else f"{gpu:.0f} images/s"))
    if gpu is not None:
        result["gpu_lrp_b64"] = round(gpu)
    if args.endurance:
        make_images(work / "long", args.endurance, args.size)
        memory = endurance(work / "long", model_path, work / "out-long", args.endurance)
        print(f"memory over {memory['images']} images ({memory['seconds']} s, Ray 2 workers): driver MiB "
              f"{memory['driver_mib']}, driver + workers MiB {memory['all_mib']}, peak {memory['peak_all_mib']}")
        result["rss_end_mib"] = memory["all_mib"]["end"]
    ray.shutdown()
    print("RESULT " + " ".join(f"{k}={v}" for k, v in result.items()))


if __name__ == "__main__":
    main()
