"""Where LRP starts, on Magnetic Tile (issue 12): the log-odds z_damaged − z_undamaged against the raw logit.

Scores a classifier saved by ``magnetic_tile.py --save-models`` (same options, so the same split and crops) on
the damaged test crops: IoU, precision, recall and AP of every rule set × segmenter, once per start. Only LRP
and the segmenters run (a minute on a 2-core CPU), no training. Prints a table; the last line is ``RESULT``.

Usage::

    .venv/bin/python benchmarks/mt_starts.py --load-models OUT --device cpu --limit 300 --width 0.125 \\
        --input-size 224 --epochs 50 --lr-conv 1e-3      # the options of the run that saved the model
"""

from __future__ import annotations

import mt_eval
from lrpseg.core.device import resolve_device
from lrpseg.core.lrp.explain import STARTS
from magnetic_tile import build_parser, finish_args
from mt_stages import load_split, load_trained, log

HEAD = "128n"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(__doc__.split("\n\n")[0])
    parser.set_defaults(rule_sets=["ours", "epsilon_plus"])
    args = finish_args(parser.parse_args(argv))
    if args.load_models is None:
        raise SystemExit("give --load-models: the folder of a magnetic_tile.py --save-models run")
    device = resolve_device(args.device)
    data = load_split(args, {})
    model, _ = load_trained(args.load_models, HEAD, args, device)
    model.eval()
    metrics, prob = mt_eval.classify(model, data.test_x, data.test_targets)
    log(f"VGG-A {HEAD}: test balanced accuracy {metrics['balanced_accuracy']:.3f}")
    gate = prob[data.damaged] >= 0.5
    rows = []
    for rule_set in args.rule_sets:
        for start in STARTS:
            maps = mt_eval.relevance_maps(model, data.seg_x, rule_set, args.maxpool, args.lrp_batch, start)
            for method in mt_eval.SEGMENTER_NAMES:
                scores, masks = mt_eval.segment_all(maps, method, args.seed)
                m = mt_eval.score_maps(scores, masks, data.seg_truth, gate)["metrics"]
                rows.append((rule_set, method, start, m))
    print(f"\n{'rule set':14} {'segmenter':9} {'start':8} {'IoU':>6} {'P':>6} {'R':>6} {'AP':>6}")
    for rule_set, method, start, m in rows:
        print(f"{rule_set:14} {method:9} {start:8} {m['iou']:6.3f} {m['precision']:6.3f} {m['recall']:6.3f} "
              f"{m['ap']:6.3f}")  # fmt: skip
    best = {start: max(m["iou"] for _, _, s, m in rows if s == start) for start in STARTS}
    print("RESULT " + " ".join(f"best_iou_{start}={value:.4f}" for start, value in best.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
