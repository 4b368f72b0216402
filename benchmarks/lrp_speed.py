"""Cost of LRP relative to a forward pass: VGG-A 128N, 224², full width, random (Kaiming) weights.

Measures, in one run and interleaved round by round (so that load from other processes hits every method
alike): the forward pass (no autograd), the plain input gradient, zennit's stock-rule composites for the
paper's two rule sets and EpsilonPlus ("zennit_ours", "zennit_montavon", "zennit_epsilon_plus") and our
engine for the same three ("ours", "montavon", "epsilon_plus"), at each batch
size, each as a ratio to the forward pass of the same batch, and as images/s. Ratios use the fastest call of
each method (the least disturbed one); median and process-CPU-time ratios are printed beside them (with
``--threads 1`` the CPU-time ratio is the least sensitive to other processes sharing the machine).

Usage::

    .venv/bin/python benchmarks/lrp_speed.py            # batch 1 and 16, CPU
    .venv/bin/python benchmarks/lrp_speed.py --quick    # batch 1, 3 rounds, under a minute
    python benchmarks/lrp_speed.py --device cuda --json lrp.json   # batch 1 and 64 on the GPU, images/s

The last line reads ``RESULT ours=<ratio> montavon=<ratio> epsilon_plus=<ratio> zennit_ours=<ratio> ...``
(the first batch size, fastest calls; wall clock, or process CPU time with ``--clock cpu``).
``--json`` also writes every call's times, images/s and ratios per batch (``benchmarks/gpu_suite.sh`` reads it).
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from lrpseg.core.lrp import RULE_SETS, relevance_tensor
from lrpseg.core.models import build_vgg_a

LRP_METHODS = ("ours", "montavon", "epsilon_plus", "zennit_ours", "zennit_montavon", "zennit_epsilon_plus")
TARGET = 1


def _methods(model: torch.nn.Module) -> dict:
    def forward(x):
        with torch.no_grad():
            return model(x)

    def gradient(x):
        x = x.detach().requires_grad_(True)
        logits = model(x)
        return torch.autograd.grad(logits[:, TARGET].sum(), x)[0]

    methods = {"forward": forward, "gradient": gradient}
    for name in LRP_METHODS:
        methods[name] = lambda x, rule_set=RULE_SETS[name]: relevance_tensor(model, x, TARGET, rule_set)[0]
    return methods


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(methods: dict, batch: int, rounds: int, size: int, device: torch.device) -> dict:
    """Wall-clock and process CPU seconds of every call, methods interleaved round by round.

    The first round also warms up allocators and kernel caches; taking the fastest call discards it.
    """
    x = torch.randn(batch, 3, size, size, device=device)
    times = {name: [] for name in methods}
    for _ in range(rounds):
        for name, method in methods.items():
            _sync(device)
            wall, cpu = time.perf_counter(), time.process_time()
            method(x)
            _sync(device)
            times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    return times


def report(times: dict, batch: int, label: str, clock: str = "wall") -> dict:
    """Print one table; return per method the ratios to the forward pass and images/s (fastest calls).

    Each method's entry holds ``ratio`` (fastest call / fastest forward on ``clock``), ``ratio_wall``,
    ``ratio_median``, ``ratio_cpu``, ``min_s``, ``median_s`` and ``img_s`` (batch / fastest wall-clock call).
    """
    walls = {name: [wall for wall, _ in values] for name, values in times.items()}
    cpus = {name: [cpu for _, cpu in values] for name, values in times.items()}
    base = min(walls["forward"])
    print(f"\n{label}, batch {batch}, {len(walls['forward'])} rounds; ratios to the forward pass")
    print(
        f"{'method':<20}{'min s':>8}{'median s':>10}{'x fwd':>8}{'x fwd median':>14}{'x fwd CPU time':>16}"
        f"{'images/s':>10}"
    )
    stats = {}
    for name in times:
        wall = min(walls[name]) / base
        median = statistics.median(walls[name]) / statistics.median(walls["forward"])
        cpu = min(cpus[name]) / max(min(cpus["forward"]), 1e-9)
        img_s = batch / min(walls[name])
        stats[name] = {
            "ratio": cpu if clock == "cpu" else wall,
            "ratio_wall": wall,
            "ratio_median": median,
            "ratio_cpu": cpu,
            "min_s": min(walls[name]),
            "median_s": statistics.median(walls[name]),
            "img_s": img_s,
        }
        print(
            f"{name:<20}{min(walls[name]):>8.4f}{statistics.median(walls[name]):>10.4f}{wall:>8.2f}"
            f"{median:>14.2f}{cpu:>16.2f}{img_s:>10.1f}"
        )
    return stats


def _zennit_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("zennit")
    except PackageNotFoundError:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="batch 1 only, 3 rounds")
    parser.add_argument(
        "--rounds", type=int, default=None, help="timed calls per method (default 3 quick, 6 CPU, 10 CUDA)"
    )
    parser.add_argument("--size", type=int, default=224, help="input side (multiple of 32)")
    parser.add_argument("--width", type=float, default=1.0, help="VGG-A channel fraction (default 1, the paper's)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where to measure (default cpu)")
    parser.add_argument(
        "--batch-sizes",
        type=int,
        nargs="+",
        default=None,
        help="batch sizes (default: 1 16 on the CPU, 1 64 on CUDA, 1 with --quick)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the measurements to this JSON file")
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="clock of the RESULT ratios: wall, or process CPU time (with --threads 1 on a busy machine)",
    )
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA GPU")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rounds = args.rounds or (3 if args.quick else 10 if device.type == "cuda" else 6)
    batches = args.batch_sizes or ((1,) if args.quick else (1, 64) if device.type == "cuda" else (1, 16))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its kernels (first round warms up)
        where = f"CUDA {torch.cuda.get_device_name(device)}"
    else:
        where = f"{_cpu_name()}, {torch.get_num_threads()} threads"

    torch.manual_seed(0)
    model = build_vgg_a("128n", width=args.width, input_size=args.size).eval().to(device)
    methods = _methods(model)
    print(
        f"lrp_speed {datetime.datetime.now():%Y-%m-%d %H:%M}; {where}, torch {torch.__version__}, "
        f"zennit {_zennit_version()}; VGG-A 128N width {args.width:g}, {args.size}²"
    )

    per_batch = {}
    for batch in batches:
        times = measure(methods, batch, rounds, args.size, device)
        per_batch[batch] = {"methods": report(times, batch, where, args.clock)}
        if device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(device) / 2**30
            per_batch[batch]["peak_gib_so_far"] = round(peak, 2)
            print(f"peak GPU memory so far: {peak:.1f} GiB")
    result = per_batch[batches[0]]["methods"]
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "date": datetime.datetime.now().isoformat(timespec="seconds"),
                    "device": where,
                    "torch": torch.__version__,
                    "zennit": _zennit_version(),
                    "width": args.width,
                    "size": args.size,
                    "rounds": rounds,
                    "clock": args.clock,
                    "batches": {str(batch): stats for batch, stats in per_batch.items()},
                },
                indent=1,
            )
        )
    print(f"ratios below: batch {batches[0]}, {args.device}, fastest call, {args.clock} clock")
    print("RESULT " + " ".join(f"{name}={result[name]['ratio']:.2f}" for name in LRP_METHODS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
