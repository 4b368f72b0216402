"""Which epoch should training keep? Replays rules for choosing it on traced reliability runs (issue 12).

``core.train.fit`` stops ``patience`` epochs after the last better validation balanced accuracy and keeps the
epoch with the lowest validation loss among those whose validation balanced accuracy is within
``TrainConfig.keep_tolerance`` of the best (0: the best balanced accuracy, ties broken by the lower loss). On
Magnetic Tile the validation balanced accuracy of neighbouring epochs differs by a few hundredths while their
test balanced accuracy differs by up to 0.1, so the single best validation epoch can be a poor one on held-out
images. This script takes rows of ``train_reliability.py --trace-held-out`` (which record the held-out balanced
accuracy of every epoch; ``--set patience=1000`` lets a run go on past the product's stop, for a longer view) and
reports, per run and per rule, the epoch each rule would keep and that epoch's held-out balanced accuracy. Every
rule sees only the epochs up to where the product's early stopping (:class:`core.train.EarlyStopping` with the
:class:`core.train.TrainConfig` defaults) would have ended the run, and ``core.train``'s own rules are replayed
by ``EarlyStopping`` itself, so the product's column reproduces the run's result; a run fails below its data
set's bar, as in ``train_reliability.py``.

    python benchmarks/epoch_selection.py traced/*.json
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
from lrpseg.core.train import EarlyStopping, TrainConfig
from torch import nn
from train_reliability import DEMO_BAR, MT_BEST


def product_stop(balanced_accuracy: list[float], val_loss: list[float], config: TrainConfig) -> tuple[int, int]:
    """The epochs (1-based) at which ``core.train.fit`` with ``config`` would have stopped this run, and the one
    it would have kept (``config.keep_tolerance``)."""
    stand_in = nn.Linear(1, 1)  # EarlyStopping copies weights; the decision needs none
    good_enough = config.good_enough if config.extend_while_poor else 0.0
    stopping = EarlyStopping(stand_in, config.patience, config.min_epochs, good_enough, config.keep_tolerance)
    limit = config.epochs
    for epoch, (accuracy, loss) in enumerate(zip(balanced_accuracy, val_loss, strict=True), start=1):
        stop = stopping.update(epoch, {"balanced_accuracy": accuracy, "val_loss": loss}, stand_in)
        if config.extend_while_poor and epoch == config.epochs and stopping.still_poor():
            limit = 2 * config.epochs
        if stop or epoch == limit:
            return epoch, stopping.best["epoch"]
    raise ValueError(f"the run ended at epoch {len(balanced_accuracy)}, before the product would have stopped")


def trailing_mean(values: list[float], width: int = 3) -> list[float]:
    """Mean of each value and the ``width - 1`` before it."""
    return [float(np.mean(values[max(0, i - width + 1) : i + 1])) for i in range(len(values))]


TOLERANCES = (0.0, 0.02, 1.0)  # TrainConfig.keep_tolerance values replayed


def tolerance_label(tolerance: float) -> str:
    """How the table names the keep rule of one ``TrainConfig.keep_tolerance``."""
    if tolerance == 0:
        return "best val BA"
    return "lowest val loss" if tolerance >= 1 else f"lowest val loss within {tolerance:g} of the best val BA"


def rule_keys(balanced_accuracy: list[float], val_loss: list[float]) -> dict[str, list[tuple]]:
    """Per rule that ``core.train`` does not offer, a sort key per epoch; the rule keeps the epoch with the
    largest key (the first on ties)."""
    smoothed = trailing_mean(balanced_accuracy)
    return {
        "best 3-epoch mean val BA": [(s, a, -v) for s, a, v in zip(smoothed, balanced_accuracy, val_loss, strict=True)],
    }


def bar(row: dict) -> float:
    """The held-out balanced accuracy below which ``train_reliability.py`` calls the run failed."""
    return DEMO_BAR if row["data"].startswith("demo") else MT_BEST[row["head"]] - 0.05


def replay(row: dict, config: TrainConfig) -> dict:
    """The product's stop epoch, per rule ``(kept epoch, its held-out balanced accuracy)``, and which rule is the
    product's (``config.keep_tolerance``)."""
    if "held_out_balanced_accuracy_per_epoch" not in row:
        raise ValueError(f"{row['data']} {row['head']} seed {row['seed']}: not traced (--trace-held-out)")
    accuracy, loss = row["val_balanced_accuracy_per_epoch"], row["val_loss_per_epoch"]
    held_out = row["held_out_balanced_accuracy_per_epoch"]
    stop, _ = product_stop(accuracy, loss, config)
    product = tolerance_label(config.keep_tolerance) + " (product)"
    kept = {}
    for tolerance in sorted({config.keep_tolerance, *TOLERANCES}):  # core.train's rules: one stop, kept epochs apart
        _, epoch = product_stop(accuracy, loss, replace(config, keep_tolerance=tolerance))
        label = product if tolerance == config.keep_tolerance else tolerance_label(tolerance)
        kept[label] = (epoch, held_out[epoch - 1])
    for rule, keys in rule_keys(accuracy[:stop], loss[:stop]).items():
        epoch = max(range(stop), key=keys.__getitem__)
        kept[rule] = (epoch + 1, held_out[epoch])
    best = int(np.argmax(held_out[:stop]))
    kept["held-out best (ceiling)"] = (best + 1, held_out[best])
    return {"stop": stop, "kept": kept, "product": product}


def report(rows: list[dict], config: TrainConfig) -> str:
    """Markdown table of every run's kept epoch and held-out balanced accuracy per rule, then a summary."""
    replays = [replay(row, config) for row in rows]
    rules = list(replays[0]["kept"])
    lines = ["| data | head | seed | bar | stop | " + " | ".join(rules) + " |", "|---" * (5 + len(rules)) + "|"]
    for row, result in zip(rows, replays, strict=True):
        cells = [
            f"{ba:.3f} @{epoch}" + (" **failed**" if ba < bar(row) else "")
            for epoch, ba in result["kept"].values()
        ]
        lines.append(f"| {row['data']} | {row['head']} | {row['seed']} | {bar(row):.3f} | {result['stop']} | "
                     + " | ".join(cells) + " |")  # fmt: skip
    lines.append("")
    for rule in rules:
        scores = [result["kept"][rule][1] for result in replays]
        failed = sum(score < bar(row) for score, row in zip(scores, rows, strict=True))
        lines.append(f"{rule}: {failed} of {len(rows)} failed, mean held-out BA {np.mean(scores):.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="JSON files of train_reliability.py --json")
    args = parser.parse_args(argv)
    rows = [row for path in args.runs for row in json.loads(path.read_text())]
    print(report(rows, TrainConfig()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
