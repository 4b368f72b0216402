"""``lrpseg evaluate`` walks the export's tree and finds each mask's ground truth by path, else by stem."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from lrpseg.core.cli import main
from lrpseg.core.evaluate import evaluate_folder
from lrpseg.core.export import Exporter

SHAPE = (8, 8)


def _square(top: int, left: int, size: int = 4) -> np.ndarray:
    mask = np.zeros(SHAPE, dtype=bool)
    mask[top : top + size, left : left + size] = True
    return mask


def _write_truth(path, mask: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.where(mask, 255, 0).astype(np.uint8))


def _export(tmp_path, masks: dict[str, np.ndarray]):
    """An export of images at ``images/<rel>`` with the given masks (and score maps equal to them); an empty
    mask is an image classified undamaged."""
    out = tmp_path / "out"
    exporter = Exporter(out, root=tmp_path / "images")
    for rel, mask in masks.items():
        probability = 0.9 if mask.any() else 0.1
        exporter.add(tmp_path / "images" / rel, mask, mask.astype(np.float32), probability, threshold=0.5)
    exporter.finish()
    return out


def test_same_stem_in_two_subfolders_is_exported_and_evaluated_against_a_truth_tree(tmp_path):
    a_true, b_true = _square(0, 0), _square(4, 4)
    out = _export(tmp_path, {"a/x.png": a_true, "b/x.png": _square(4, 0)})  # b's mask is wrong
    _write_truth(tmp_path / "truth" / "a" / "x.png", a_true)
    _write_truth(tmp_path / "truth" / "b" / "x.png", b_true)
    result = evaluate_folder(out, tmp_path / "truth")
    assert result.problems == []
    assert result.metrics["images_scored"] == 2 and result.metrics["images_classified"] == 2
    # a: 16 of 16 right; b: nothing right. Micro IoU = 16 / (16 + 16 + 16).
    assert result.metrics["iou"] == pytest.approx(16 / 48)
    assert result.metrics["precision"] == pytest.approx(0.5) and result.metrics["recall"] == pytest.approx(0.5)


def test_the_demo_layout_matches_a_flat_truth_folder_by_stem(tmp_path):
    damaged = _square(2, 2)
    out = _export(tmp_path, {"damaged/damaged_000.png": damaged, "undamaged/undamaged_000.png": np.zeros(SHAPE, bool)})
    _write_truth(tmp_path / "truth" / "damaged_000.png", damaged)
    _write_truth(tmp_path / "truth" / "undamaged_000.png", np.zeros(SHAPE, bool))
    result = evaluate_folder(out, tmp_path / "truth")
    assert result.problems == []
    assert result.metrics["images_scored"] == 1 and result.metrics["iou"] == pytest.approx(1.0)
    assert result.metrics["images_classified"] == 2 and result.metrics["balanced_accuracy"] == pytest.approx(1.0)


def test_one_stem_in_two_subfolders_against_a_flat_truth_names_both_and_scores_neither(tmp_path, capsys):
    out = _export(tmp_path, {"a/x.png": _square(0, 0), "b/x.png": _square(4, 4), "c/y.png": _square(2, 2)})
    _write_truth(tmp_path / "truth" / "x.png", _square(0, 0))
    _write_truth(tmp_path / "truth" / "y.png", _square(2, 2))
    result = evaluate_folder(out, tmp_path / "truth")
    assert result.metrics["images_scored"] == 1  # c/y only: no silent pick between a/x and b/x
    [problem] = result.problems
    assert str(out / "a" / "x.png") in problem and str(out / "b" / "x.png") in problem and "flat" in problem

    (tmp_path / "truth" / "y.png").unlink()  # nothing left to score: the command fails, naming both files
    assert main(["evaluate", str(out), "--truth", str(tmp_path / "truth")]) == 1
    err = capsys.readouterr().err
    assert str(out / "a" / "x.png") in err and str(out / "b" / "x.png") in err


def test_a_mask_matched_by_path_keeps_its_truth_and_a_namesake_elsewhere_is_reported(tmp_path):
    out = _export(tmp_path, {"x.png": _square(0, 0), "sub/x.png": _square(4, 4)})
    _write_truth(tmp_path / "truth" / "x.png", _square(0, 0))
    result = evaluate_folder(out, tmp_path / "truth")
    assert result.metrics["images_scored"] == 1 and result.metrics["iou"] == pytest.approx(1.0)
    [problem] = result.problems
    assert str(out / "sub" / "x.png") in problem and "sub/x.png not scored" in problem


def test_score_maps_and_evaluation_output_are_not_taken_for_masks(tmp_path):
    truth = _square(1, 1)
    out = _export(tmp_path, {"a/x.png": truth})
    _write_truth(tmp_path / "truth" / "a" / "x.png", truth)
    _write_truth(out / "evaluation" / "pr-curve.png", truth)  # what an earlier evaluate wrote
    result = evaluate_folder(out, tmp_path / "truth")
    assert result.problems == [] and result.metrics["images_scored"] == 1
    assert result.metrics["ap"] == pytest.approx(1.0)  # the score map was found under scores/a/x.npy
