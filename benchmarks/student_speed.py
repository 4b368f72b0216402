"""Student inference against one classifier forward pass, measured side by side (issue 13's cost target).

The default student (:class:`lrpseg.core.student.distil.DistilConfig`: U-Net 16 channels, depth 4, stem stride 2)
and VGG-A classifiers (slim width 0.25 and full width 1.0) run forward on the same batch of S×S inputs on the
CPU, interleaved, best of ``--repeats``; prints milliseconds per image and the student/classifier ratio.

Usage::

    .venv/bin/python benchmarks/student_speed.py [--size 224] [--batch 8] [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import torch
from lrpseg.core.models import build_vgg_a
from lrpseg.core.student.distil import DistilConfig
from lrpseg.core.student.unet import UNet


def best_ms(fn, batch: torch.Tensor, repeats: int) -> float:
    """Best wall time of ``fn(batch)`` over ``repeats`` runs, in ms per image."""
    best = float("inf")
    with torch.no_grad():
        for _ in range(repeats):
            started = time.perf_counter()
            fn(batch)
            best = min(best, time.perf_counter() - started)
    return 1000 * best / len(batch)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = DistilConfig()
    student = UNet(base=config.base, depth=config.depth, stem_stride=config.stem_stride).eval()
    models = {f"VGG-A width {w:g}": build_vgg_a("128n", width=w, input_size=args.size).eval() for w in (0.25, 1.0)}
    batch = torch.randn(args.batch, 3, args.size, args.size)
    times = {"student": [], **{name: [] for name in models}}
    for _ in range(args.repeats):  # interleaved, so a busy machine slows every network alike
        times["student"].append(best_ms(student, batch, 1))
        for name, model in models.items():
            times[name].append(best_ms(model, batch, 1))
    student_ms = min(times["student"])
    print(f"input {args.size}², batch {args.batch}, {args.threads} thread(s), best of {args.repeats}")
    shape = f"U-Net {config.base} ch, depth {config.depth}, stride {config.stem_stride}"
    print(f"student ({shape}): {student_ms:.1f} ms/image")
    for name in models:
        ms = min(times[name])
        print(f"{name}: {ms:.1f} ms/image; student / classifier = {student_ms / ms:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
