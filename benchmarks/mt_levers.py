"""Which levers move the Magnetic Tile LRP IoU: one benchmark run per lever, changed one at a time from a base.

Each variant is a full :mod:`benchmarks.magnetic_tile` run (its own folder under ``--out``) that differs
from the base configuration in one setting. Training levers retrain both classifiers; LRP levers (max-pool
rule) score the base run's saved classifiers again. The U-Net is skipped: it does not depend on any lever.
Writes ``<out>/levers.md``: per variant the test balanced accuracy of each head and, per rule set, the best
IoU over heads and segmenters.

Usage::

    .venv/bin/python benchmarks/mt_levers.py --out /tmp/levers                  # the CPU base, all variants
    .venv/bin/python benchmarks/mt_levers.py --out /tmp/levers --only base seed1
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import magnetic_tile  # noqa: E402

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
    "seed1": ("another seed: other split and initialisation (spread of the base)", {"seed": 1}),
    "maxpool_avg": ("max-pool relevance shared in proportion to the inputs, not winner-take-all", {"maxpool": "avg"}),
    "crop_none": ("damaged images not cropped around the damage", {"crop-policy": "none"}),
    "epochs_100": ("100 epochs, patience 30 (base: 50, patience 20)", {"epochs": 100, "patience": 30}),
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


def summarise(name: str, description: str, run: dict) -> dict:
    """Balanced accuracies and the best IoU per rule set (over heads and segmenters) of one run."""
    best: dict[str, tuple[float, str]] = {}
    for config, metrics in run["segmentation"].items():
        head, rule_set, method = config.split("/")
        if metrics["iou"] > best.get(rule_set, (-1.0, ""))[0]:
            best[rule_set] = (metrics["iou"], f"{head}/{method}")
    return {
        "name": name,
        "description": description,
        "balanced_accuracy": {h: c["balanced_accuracy"] for h, c in run["classification"].items()},
        "best": best,
        "seconds": run["timings"]["total"],
    }


def write_table(rows: list[dict], path: Path) -> None:
    rule_sets = BASE["rule-sets"]
    lines = [
        "# Magnetic Tile levers (benchmarks/mt_levers.py)",
        "",
        "Base: `" + " ".join(variant_argv({}, Path("<out>/base"), None)) + "`. Each row changes one setting. "
        "IoU: pooled over the damaged test crops, best over both heads and the three segmenters "
        "(head/segmenter in brackets).",
        "",
        "| variant | change | bal. acc. 128N | bal. acc. one FC | " + " | ".join(f"IoU {r}" for r in rule_sets)
        + " | seconds |",
        "|---|---|---|---|" + "---|" * len(rule_sets) + "---|",
    ]
    for row in rows:
        bacc = row["balanced_accuracy"]
        cells = [f"{row['best'][r][0]:.3f} ({row['best'][r][1]})" if r in row["best"] else "–" for r in rule_sets]
        lines.append(
            f"| {row['name']} | {row['description']} | {bacc.get('128n', float('nan')):.3f} | "
            f"{bacc.get('onefc', float('nan')):.3f} | " + " | ".join(cells) + f" | {row['seconds']:.0f} |"
        )
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--only", nargs="+", choices=sorted(VARIANTS), default=list(VARIANTS))
    args = parser.parse_args(argv)
    rows = []
    for name in args.only:
        description, overrides = VARIANTS[name]
        folder = args.out / name
        report = folder / "magnetic_tile.json"
        if not report.is_file():
            load_from = args.out / "base" if name in LOADS_BASE_MODELS else None
            if load_from is not None and not (load_from / "magnetic_tile.json").is_file():
                raise SystemExit(f"{name} scores the base run's classifiers: run the base variant first")
            started = time.perf_counter()
            print(f"== {name}: {description}", flush=True)
            magnetic_tile.main(variant_argv(overrides, folder, load_from))
            print(f"== {name} took {time.perf_counter() - started:.0f} s", flush=True)
        rows.append(summarise(name, description, json.loads(report.read_text())))
        write_table(rows, args.out / "levers.md")
    print((args.out / "levers.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
