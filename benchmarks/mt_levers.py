"""Which levers move the Magnetic Tile LRP IoU: one benchmark run per lever, changed one at a time from a base.

Each variant is a full :mod:`benchmarks.magnetic_tile` run per seed (folder ``<out>/<variant>/seed<k>``)
that differs from the base configuration in one setting; the seed changes the split and the initialisation,
and the spread between seeds is as large as most levers, so every variant runs on the same seeds. Training
levers retrain both classifiers; LRP levers (max-pool rule) score the base run's saved classifiers again. The
U-Net is skipped: it does not depend on any lever. Writes ``<out>/levers.md``: per variant the test balanced
accuracy of each head and, per rule set, the best IoU over heads and segmenters, as the mean over seeds
followed by each seed's value.

Usage::

    .venv/bin/python benchmarks/mt_levers.py --out /tmp/levers                  # all variants, seeds 0 and 1
    .venv/bin/python benchmarks/mt_levers.py --out /tmp/levers --only base input_224 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import magnetic_tile

BASE = {
    "device": "cpu",
    "limit": 300,
    "width": 0.125,
    "input-size": 128,
    "epochs": 50,
    "lr-conv": 1e-3,
    "unet-epochs": 0,
    "rule-sets": ["ours", "montavon", "epsilon_plus", "epsilon_gamma_box"],
}
"""The reduced CPU configuration of benchmarks/results/magnetic_tile.md, without its U-Net."""

VARIANTS = {
    "base": ("the reduced CPU configuration", {}),
    "maxpool_avg": ("max-pool relevance shared in proportion to the inputs, not winner-take-all", {"maxpool": "avg"}),
    "crop_none": ("damaged images not cropped around the damage", {"crop-policy": "none"}),
    "epochs_100": ("100 epochs, patience 30 (base: 50, patience 20)", {"epochs": 100, "patience": 30}),
    "pretrain": (
        "convs pretrained with SimCLR for 100 epochs on the training images (labels unused), conv LR 1e-3",
        {"pretrain-epochs": 100},
    ),
    "all_free": ("all 894 MT_Free images (base: the first 300)", {"limit": None}),
    "width_025": ("VGG-A width 0.25 (base 0.125)", {"width": 0.25}),
    "input_224": ("input 224 at full resolution (base: images scaled by 128/224)", {"input-size": 224}),
}
"""name -> (what changes, overrides of BASE). ``None`` removes a setting."""

LOADS_BASE_MODELS = {"maxpool_avg"}


def variant_argv(overrides: dict, out: Path, load_from: Path | None) -> list[str]:
    """Command line of one variant: BASE with ``overrides`` applied, writing to ``out``."""
    settings = {**BASE, **overrides}
    argv = ["--out", str(out)]
    for key, value in settings.items():
        if value is None:
            continue
        argv += [f"--{key}", *map(str, value)] if isinstance(value, list) else [f"--{key}", str(value)]
    argv += ["--load-models", str(load_from)] if load_from is not None else ["--save-models"]
    return argv


def best_iou(run: dict) -> dict[str, float]:
    """The best IoU per rule set of one run, over heads and segmenters."""
    best: dict[str, float] = {}
    for config, metrics in run["segmentation"].items():
        rule_set = config.split("/")[1]
        best[rule_set] = max(best.get(rule_set, 0.0), metrics["iou"])
    return best


def summarise(name: str, description: str, runs: list[dict]) -> dict:
    """Per head the balanced accuracies and per rule set the best IoUs of one variant's runs (one per seed)."""
    bests = [best_iou(run) for run in runs]
    return {
        "name": name,
        "description": description,
        "balanced_accuracy": {
            head: [run["classification"][head]["balanced_accuracy"] for run in runs]
            for head in runs[0]["classification"]
        },
        "best": {rule_set: [best.get(rule_set, float("nan")) for best in bests] for rule_set in bests[0]},
        "seconds": sum(run["timings"]["total"] for run in runs),
    }


def _cell(values: list[float]) -> str:
    spread = " / ".join(f"{v:.3f}" for v in values)
    return f"{sum(values) / len(values):.3f} ({spread})" if len(values) > 1 else spread


def write_table(rows: list[dict], path: Path) -> None:
    rule_sets = BASE["rule-sets"]
    lines = [
        "# Magnetic Tile levers (benchmarks/mt_levers.py)",
        "",
        "Base: `" + " ".join(variant_argv({}, Path("<out>/base"), None)) + "`. Each row changes one setting. "
        "IoU: pooled over the damaged test crops, best over both heads and the three segmenters. Each cell: the "
        "mean over the seeds, then each seed's value in brackets.",
        "",
        "| variant | change | bal. acc. 128N | bal. acc. one FC | "
        + " | ".join(f"IoU {r}" for r in rule_sets)
        + " | seconds |",
        "|---|---|---|---|" + "---|" * len(rule_sets) + "---|",
    ]
    for row in rows:
        bacc = row["balanced_accuracy"]
        cells = [_cell(row["best"][r]) if r in row["best"] else "–" for r in rule_sets]
        heads = [_cell(bacc[h]) if h in bacc else "–" for h in ("128n", "onefc")]
        row_cells = [row["name"], row["description"], *heads, *cells, f"{row['seconds']:.0f}"]
        lines.append("| " + " | ".join(row_cells) + " |")
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--only", nargs="+", choices=sorted(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    args = parser.parse_args(argv)
    rows = []
    for name in args.only:
        description, overrides = VARIANTS[name]
        runs = []
        for seed in args.seeds:
            folder = args.out / name / f"seed{seed}"
            report = folder / "magnetic_tile.json"
            if not report.is_file():  # a finished run is kept: the table can be rebuilt or extended cheaply
                load_from = args.out / "base" / f"seed{seed}" if name in LOADS_BASE_MODELS else None
                if load_from is not None and not (load_from / "magnetic_tile.json").is_file():
                    raise SystemExit(f"{name} scores the base run's classifiers: run the base variant first")
                started = time.perf_counter()
                print(f"== {name}, seed {seed}: {description}", flush=True)
                magnetic_tile.main(variant_argv({**overrides, "seed": seed}, folder, load_from))
                print(f"== {name}, seed {seed} took {time.perf_counter() - started:.0f} s", flush=True)
            runs.append(json.loads(report.read_text()))
        rows.append(summarise(name, description, runs))
        write_table(rows, args.out / "levers.md")
    print((args.out / "levers.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
