"""Which exponent should BMM-sharp compress relevance with? (issue 12, session 11)

Pooled IoU and AP of the default masks of the damaged images, for the paper's BMM and for BMM-sharp fitted to
``sign(r) * |r| ** e`` (``core.segment.sharp.EXPONENTS``), on a classifier and demo-style folders (``lrpseg demo``
writes ``DIR/images`` and ``DIR/masks``), or on the Magnetic Tile test crops of a ``magnetic_tile.py
--save-models`` run. The relevance is the product's (its rule set, start and views), computed once per folder.

    python benchmarks/sharp_exponent.py demo MODEL.safetensors DEMO_DIR [DEMO_DIR ...]
    python benchmarks/sharp_exponent.py mt --load-models OUT --device cpu --limit 300 --width 0.125 \\
        --input-size 224 --epochs 50 --lr-conv 1e-3     # the options of the run that saved the model
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import torch
from lrpseg.core.metrics import SegmentationCounts, average_precision
from lrpseg.core.segment import segment
from lrpseg.core.segment.sharp import EXPONENTS as EXPONENTS_OF

EXPONENTS = (1.0, 0.9, 0.75, 0.6, 0.5)


def pooled(maps, truths, method: str, exponent: float) -> tuple[float, float]:
    """Pooled IoU of the default masks and AP of the score maps; ``exponent`` goes to a sharpened segmenter."""
    options = {"exponent": exponent} if method in EXPONENTS_OF else {}
    results = [segment(r, method, **options) for r in maps]
    counts = SegmentationCounts()
    for result, truth in zip(results, truths, strict=True):
        counts = counts + SegmentationCounts.from_masks(result.mask, truth)
    return counts.iou(), average_precision([r.score for r in results], list(truths))


def table(name: str, maps, truths) -> None:
    """One row per segmenter / exponent."""
    print(f"\n{name}: {len(maps)} damaged images\n\n| segmenter | IoU | AP |\n|---|---|---|")
    for method, exponent in [("bmm", 1.0)] + [("bmm-sharp", e) for e in EXPONENTS]:
        iou, ap = pooled(maps, truths, method, exponent)
        label = method if method == "bmm" else f"bmm-sharp, exponent {exponent:g}"
        print(f"| {label} | {iou:.3f} | {ap:.3f} |", flush=True)


def demo(argv: list[str]) -> None:
    from lrpseg.core.checkpoint import load_checkpoint
    from lrpseg.core.images import read_image
    from lrpseg.core.pipeline import explain_image

    model, _ = load_checkpoint(Path(argv[0]))
    for folder in map(Path, argv[1:]):
        names = sorted((folder / "images" / "damaged").glob("*.png"))
        maps = []
        for path in names:
            explained = explain_image(model, read_image(path))
            maps.append(explained.to_original(explained.relevance).astype(np.float32))
        truths = [cv2.imread(str(folder / "masks" / p.name), cv2.IMREAD_GRAYSCALE) > 0 for p in names]
        table(f"{argv[0]} on {folder}", maps, truths)


def magnetic_tile(argv: list[str]) -> None:
    import mt_eval
    from lrpseg.core.device import resolve_device
    from magnetic_tile import build_parser, finish_args
    from mt_stages import load_split, load_trained

    args = finish_args(build_parser(__doc__.split("\n\n")[0]).parse_args(argv))
    device = resolve_device(args.device)
    data = load_split(args, {})
    model, _ = load_trained(args.load_models, "128n", args, device)
    model.eval()
    metrics, _ = mt_eval.classify(model, data.test_x, data.test_targets)
    # every damaged crop explained whatever the classifier decided, as magnetic_tile.py's IoU column
    maps = mt_eval.relevance_maps(model, data.seg_x, "epsilon_plus", args.maxpool, args.lrp_batch)
    table(f"Magnetic Tile 128N (test balanced accuracy {metrics['balanced_accuracy']:.3f})", maps, data.seg_truth)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    torch.set_num_threads(2)
    if not argv or argv[0] not in ("demo", "mt"):
        raise SystemExit(__doc__)
    (demo if argv[0] == "demo" else magnetic_tile)(argv[1:])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
