"""Cost of LRP relative to a forward pass: VGG-A 128N, 224², full width, random (Kaiming) weights.

Measures, in one run and interleaved round by round (so that load from other processes hits every method
alike): the forward pass (no autograd), the plain input gradient, zennit's stock-rule composites for the
paper's two rule sets ("zennit_ours", "zennit_montavon") and our engine ("ours", "montavon"), at batch 1 and
16, each as a ratio to the forward pass of the same batch. Ratios use the fastest call of each method (the
least disturbed one); median and process-CPU-time ratios are printed beside them (with ``--threads 1`` the
CPU-time ratio is the least sensitive to other processes sharing the machine). With CUDA, also images/s on
the GPU at batch 1 and 64.

Usage::

    .venv/bin/python benchmarks/lrp_speed.py            # batch 1 and 16, CPU (+ CUDA where present)
    .venv/bin/python benchmarks/lrp_speed.py --quick    # batch 1, 3 rounds, under a minute

The last line reads ``RESULT ours=<ratio> montavon=<ratio> zennit_ours=<ratio> zennit_montavon=<ratio>``
(batch 1, CPU, fastest calls; wall clock, or process CPU time with ``--clock cpu``).
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from lrpseg.core.lrp import RULE_SETS, relevance_tensor
from lrpseg.core.models import build_vgg_a

LRP_METHODS = ("ours", "montavon", "zennit_ours", "zennit_montavon")
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
    """Print one table; return each method's fastest call divided by the fastest forward on ``clock``."""
    walls = {name: [wall for wall, _ in values] for name, values in times.items()}
    cpus = {name: [cpu for _, cpu in values] for name, values in times.items()}
    base = min(walls["forward"])
    print(f"\n{label}, batch {batch}, {len(walls['forward'])} rounds; ratios to the forward pass")
    print(f"{'method':<17}{'min s':>8}{'median s':>10}{'x fwd':>8}{'x fwd median':>14}{'x fwd CPU time':>16}")
    ratios = {}
    for name in times:
        wall = min(walls[name]) / base
        median = statistics.median(walls[name]) / statistics.median(walls["forward"])
        cpu = min(cpus[name]) / min(cpus["forward"])
        ratios[name] = cpu if clock == "cpu" else wall
        print(
            f"{name:<17}{min(walls[name]):>8.3f}{statistics.median(walls[name]):>10.3f}{wall:>8.2f}"
            f"{median:>14.2f}{cpu:>16.2f}"
        )
    return ratios


def cuda_throughput(model, methods: dict, size: int, rounds: int) -> None:
    """Images per second on the GPU at batch 1 and 64."""
    device = torch.device("cuda")
    model.to(device)
    torch.backends.cudnn.benchmark = True
    print(f"\nCUDA: {torch.cuda.get_device_name(device)}")
    for batch in (1, 64):
        times = measure(methods, batch, rounds, size, device)
        rates = "  ".join(f"{name}={batch / min(w for w, _ in values):.1f}" for name, values in times.items())
        print(f"batch {batch}, images/s: {rates}")
    model.to("cpu")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="batch 1 only, 3 rounds, no CUDA")
    parser.add_argument(
        "--rounds", type=int, default=None, help="timed calls per method (default 3 quick, 6)"
    )
    parser.add_argument("--size", type=int, default=224, help="input side (multiple of 32)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="clock of the RESULT ratios: wall, or process CPU time (with --threads 1 on a busy machine)",
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rounds = args.rounds or (3 if args.quick else 6)
    batches = (1,) if args.quick else (1, 16)

    torch.manual_seed(0)
    model = build_vgg_a("128n", width=1.0, input_size=args.size).eval()
    methods = _methods(model)
    print(
        f"lrp_speed {datetime.datetime.now():%Y-%m-%d %H:%M}; {_cpu_name()}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; VGG-A 128N {args.size}²"
    )

    result = {}
    for batch in batches:
        times = measure(methods, batch, rounds, args.size, torch.device("cpu"))
        ratios = report(times, batch, "CPU", args.clock)
        if batch == 1:
            result = ratios
    if torch.cuda.is_available() and not args.quick:
        cuda_throughput(model, methods, args.size, rounds)
    print(f"ratios below: batch 1, CPU, fastest call, {args.clock} clock")
    print("RESULT " + " ".join(f"{name}={result[name]:.2f}" for name in LRP_METHODS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
