"""benchmarks/epoch_selection.py: the product's stop is replayed exactly, and each rule keeps its epoch."""

import json
from dataclasses import replace

import pytest
from epoch_selection import main, product_stop, replay
from lrpseg.core.train import TrainConfig


def test_the_replayed_stop_follows_patience_minimum_and_the_extension_of_poor_runs():
    config = TrainConfig(epochs=6, patience=2, min_epochs=0, good_enough=0.9)
    good = [0.5, 0.95, 0.9, 0.9, 0.9, 0.9]
    assert product_stop(good, [1.0] * 6, config) == (4, 2)  # two epochs without improvement after epoch 2
    poor = [0.5, 0.6, 0.6, 0.6, 0.6, 0.6] + [0.6] * 6
    assert product_stop(poor, [1.0] * 12, config) == (12, 2)  # still poor at epoch 6: on to twice the epochs
    with pytest.raises(ValueError, match="before the product would have stopped"):
        product_stop(poor[:8], [1.0] * 8, config)


def traced_row(accuracy, loss, held_out, data="demo"):
    return {"data": data, "head": "128n", "seed": 0, "val_balanced_accuracy_per_epoch": accuracy,
            "val_loss_per_epoch": loss, "held_out_balanced_accuracy_per_epoch": held_out}  # fmt: skip


def test_each_rule_keeps_its_epoch_among_those_before_the_stop():
    config = TrainConfig(epochs=6, patience=3, min_epochs=0, good_enough=0.0, keep_tolerance=0.0)
    row = traced_row(
        accuracy=[0.6, 0.95, 0.9, 0.94, 0.94, 1.0],  # stops at 5: three epochs without a better one than 2
        loss=[0.7, 0.4, 0.2, 0.3, 0.35, 0.01],
        held_out=[0.6, 0.85, 0.97, 0.95, 0.93, 1.0],
    )
    result = replay(row, config)
    assert result["stop"] == 5
    kept = result["kept"]
    assert result["product"] == "best val BA (product)"
    assert kept["best val BA (product)"] == (2, 0.85)
    assert kept["lowest val loss"] == (3, 0.97)
    assert kept["lowest val loss within 0.02 of the best val BA"] == (4, 0.95)  # 0.94 is within 0.02 of 0.95
    assert replay(row, replace(config, keep_tolerance=1.0))["product"] == "lowest val loss (product)"
    assert kept["best 3-epoch mean val BA"] == (4, 0.95)  # 0.95, 0.9, 0.94: mean 0.930 against 0.927 at 5
    assert kept["held-out best (ceiling)"] == (3, 0.97)


def test_an_untraced_row_is_refused_by_name(tmp_path):
    path = tmp_path / "runs.json"
    row = traced_row([0.5], [0.7], [0.5])
    del row["held_out_balanced_accuracy_per_epoch"]
    path.write_text(json.dumps([row]))
    with pytest.raises(ValueError, match="demo 128n seed 0: not traced"):
        main([str(path)])
