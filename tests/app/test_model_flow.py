"""The window with a model: retrain through the worker, cancel, live threshold, per-image override, export."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from lrpseg.core.export_layout import export_masks
from lrpseg.core.labels import labels_from_folders
from lrpseg.core.segment import DEFAULT_SEGMENTER


def test_retrain_in_background_installs_model(make_window, demo_folder, qtbot, slim_settings, monkeypatch):
    monkeypatch.setattr("lrpseg.core.adoption.CHANCE_LEVEL", 0.0)  # adopt even a one-epoch model
    window = make_window(demo_folder)
    window.project.set_labels(labels_from_folders(demo_folder))
    window.list_model.labels = window.project.labels()
    window.project.set_setting("train_config", slim_settings)
    progress = []
    assert window.job_controller.start_training()
    job = window.jobs.job("train")
    job.progressed.connect(progress.append)
    assert window.progress.isVisible() and window.cancel_button.isVisible()
    with qtbot.waitSignal(job.succeeded, timeout=60000):
        pass
    qtbot.waitUntil(lambda: window.handle is not None, timeout=5000)
    # the commands are updated when the job's thread has finished, an event after `succeeded`
    qtbot.waitUntil(lambda: window.commands["export"].isEnabled(), timeout=5000)
    assert progress and progress[-1].epoch == 1
    models = list((demo_folder / ".lrpseg" / "models").glob("model-*.safetensors"))
    assert len(models) == 1 and window.project.model_path == models[0]
    assert window.handle.model.width == 0.125 and window.handle.model.input_size == 64
    assert window.commands["train"].iconText() == "Retrain"
    assert not window.progress.isVisible()
    # predictions for every image arrive in the background and are cached in the project
    qtbot.waitUntil(lambda: len(window.list_model.probabilities) == 12, timeout=30000)
    assert len(window.project.predictions(window.handle.model_id)) == 12
    qtbot.waitUntil(lambda: window.current_analysis() is not None, timeout=30000)


def test_cancel_training_keeps_old_model(make_window, demo_folder, slim_checkpoint, qtbot, slim_settings,
                                        use_checkpoint):
    old = use_checkpoint(demo_folder, slim_checkpoint)
    window = make_window(demo_folder)
    qtbot.waitUntil(lambda: window.handle is not None, timeout=10000)
    window.project.set_labels(labels_from_folders(demo_folder))
    window.project.set_setting("train_config", {**slim_settings, "epochs": 50, "patience": 100})
    assert window.job_controller.start_training()
    job = window.jobs.job("train")
    steps = []
    job.progressed.connect(steps.append)
    # (not qtbot.waitSignal on `progressed`: it disconnects while further cross-thread emissions are queued)
    qtbot.waitUntil(lambda: len(steps) > 0, timeout=30000)
    with qtbot.waitSignal(job.cancelled, timeout=30000):
        window.job_controller.cancel()
    assert window.handle.path == old and window.project.model_path == old
    assert sorted(p.name for p in old.parent.iterdir()) == [old.name]
    assert "cancelled" in window.statusBar().currentMessage()
    assert f"Still using {old.stem}." in window.statusBar().currentMessage()


def test_cancelling_the_first_training_says_there_is_no_model(make_window, demo_folder, qtbot, slim_settings):
    window = make_window(demo_folder)
    window.project.set_labels(labels_from_folders(demo_folder))
    window.project.set_setting("train_config", {**slim_settings, "epochs": 50, "patience": 100})
    assert window.job_controller.start_training()
    with qtbot.waitSignal(window.jobs.job("train").cancelled, timeout=30000):
        window.job_controller.cancel()
    message = window.statusBar().currentMessage()
    assert message == "Training cancelled. There is no model yet." and "previous model" not in message


def test_unusable_stored_training_settings_are_refused_with_the_way_out(make_window, demo_folder, slim_settings):
    window = make_window(demo_folder)
    window.project.set_labels(labels_from_folders(demo_folder))
    window.project.set_setting("train_config", {**slim_settings, "clip_grad_norm": -1})
    assert not window.job_controller.start_training()
    title, message = window.last_error
    assert title == "Training settings" and "clip_grad_norm must be >= 0, not -1" in message
    assert "Training settings…" in message and window.jobs.job("train") is None


def test_slider_changes_mask_overlay_and_remembers_threshold(make_window, demo_folder, slim_checkpoint,
                                                             qtbot, wait_idle, use_checkpoint):
    use_checkpoint(demo_folder, slim_checkpoint)
    window = make_window(demo_folder)
    window.commands["undamaged_masks"].setChecked(True)  # the slim model may call everything undamaged
    qtbot.waitUntil(lambda: window.handle is not None, timeout=10000)
    qtbot.waitUntil(lambda: window.current_analysis() is not None
                    and window.viewer.displayed_mask() is not None, timeout=30000)
    analysis = window.current_analysis()
    viewer, panel = window.viewer, window.panel
    assert panel.slider.isEnabled()
    assert abs(panel.threshold() - analysis.threshold) < 1e-3
    score_image = viewer.mask_item.image
    before = viewer.displayed_mask().copy()
    lut_before = viewer.mask_item.lut.copy()

    values = np.unique(np.round(analysis.segmentation.score[analysis.valid], 3))
    target = float(values[len(values) // 2]) if values.size > 2 else 0.0
    panel.slider.set_threshold(target)
    after = viewer.displayed_mask()
    assert viewer.mask_item.image is score_image  # only the lookup table changed
    assert not np.array_equal(viewer.mask_item.lut, lut_before)
    assert not np.array_equal(before, after)
    expected = analysis.segmentation.score >= panel.threshold()
    assert np.mean(after != expected) < 0.01  # uint8 quantisation may flip a few border pixels

    window.thresholds.flush()
    rel = window.current
    assert window.project.threshold_override(rel, window.thresholds.override_key()) == panel.threshold()
    window.step(1)
    wait_idle(window)
    window.select(rel)
    qtbot.waitUntil(lambda: window.current_analysis() is not None, timeout=30000)
    assert abs(panel.threshold() - target) < 1e-3  # remembered per image
    window.thresholds.reset()
    assert window.project.threshold_override(rel, window.thresholds.override_key()) is None
    assert abs(panel.threshold() - analysis.threshold) < 1e-3

    panel.mask_style.setCurrentText("outline")
    assert viewer.mask_style == "outline" and window.commands["outline"].isChecked()
    wait_idle(window)


def test_export_writes_masks_with_each_threshold(make_window, demo_folder, damaged_checkpoint, qtbot, tmp_path,
                                                 wait_idle, use_checkpoint):
    use_checkpoint(demo_folder, damaged_checkpoint)  # calls every image damaged: every mask is checked
    window = make_window(demo_folder)
    qtbot.waitUntil(lambda: window.handle is not None, timeout=10000)
    rel, other = window.list_model.paths[:2]
    window.project.set_threshold_override(rel, window.thresholds.override_key(), 0.0)
    out = tmp_path / "export"
    kept = out / Path(other).with_suffix(".png")  # the export keeps the image folder's tree
    kept.parent.mkdir(parents=True)
    kept.write_bytes(b"the user's mask")
    assert window.job_controller.export_masks(out)  # keeps existing files by default
    job = window.jobs.job("export")
    with qtbot.waitSignal(job.succeeded, timeout=60000) as blocker:
        pass
    summary = blocker.args[0]
    assert summary["images"] == 12 and summary["errors"] == 0 and summary["kept_existing"] == 1
    assert kept.read_bytes() == b"the user's mask"
    assert len(export_masks(out)) == 12
    report = json.loads((out / "lrpseg-report.json").read_text())
    record = next(r for r in report["images"] if r["image"].endswith(rel))
    assert record["threshold"] == 0.0 and record["damaged"]
    mask = cv2.imread(str(out / record["mask"]), cv2.IMREAD_GRAYSCALE)
    score = np.load(out / record["scores"])
    assert mask.shape == score.shape == (64, 64) and set(np.unique(mask)) <= {0, 255}
    # threshold 0 marks every pixel with evidence, and only those: not the whole image
    np.testing.assert_array_equal(mask == 255, score > 0)
    assert 0 < (mask == 255).mean() < 1
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["segmenter"] == window.segmenter and provenance["rule_set"] == window.rule_set
    assert provenance["threshold_overrides"] == {rel: 0.0}
    wait_idle(window)


def test_segmenter_choice_reanalyses_and_draws_the_fit(make_window, demo_folder, slim_checkpoint, qtbot,
                                                       wait_idle, use_checkpoint):
    use_checkpoint(demo_folder, slim_checkpoint)
    window = make_window(demo_folder)
    qtbot.waitUntil(lambda: window.handle is not None, timeout=10000)
    qtbot.waitUntil(lambda: window.current_analysis() is not None, timeout=30000)
    assert window.current_analysis().segmentation.method == DEFAULT_SEGMENTER == "bmm-sharp"
    assert DEFAULT_SEGMENTER in window.segmenter_label.text() and window.handle.name in window.model_label.text()
    panel = window.panel
    params = window.current_analysis().segmentation.params
    if not params.get("degenerate"):
        assert panel.fit_plot.isVisibleTo(window) and panel._legend_names == ("background", "damage")
        assert "━ background" in panel.fit_title.text() and "━ damage" in panel.fit_title.text()
    panel.segmenter.setCurrentText("simple")
    qtbot.waitUntil(lambda: window.current_analysis() is not None, timeout=30000)
    assert window.current_analysis().segmentation.method == "simple"
    assert not panel.fit_plot.isVisibleTo(window)
    assert window.project.get_setting("segmenter") == "simple"
    panel.rule_set.setCurrentText("montavon")
    qtbot.waitUntil(lambda: window.current_analysis() is not None, timeout=30000)
    assert window.current_analysis().rule_set == "montavon" and "montavon" in window.rule_label.text()
    wait_idle(window)


def test_labelling_the_shown_image_against_the_classifier_decides_its_mask(make_window, demo_folder,
                                                                           slim_checkpoint, qtbot, use_checkpoint):
    from lrpseg.core.labels import DAMAGED, UNDAMAGED, is_damaged

    use_checkpoint(demo_folder, slim_checkpoint)
    window = make_window(demo_folder)
    window.set_auto_advance(False)
    qtbot.waitUntil(lambda: window.handle is not None, timeout=10000)
    qtbot.waitUntil(lambda: window.current_analysis() is not None, timeout=30000)
    called_damaged = is_damaged(window.current_analysis().probability)
    assert window.viewer.mask_enabled == called_damaged
    window.label_current(UNDAMAGED if called_damaged else DAMAGED)  # the inspector disagrees
    assert window.viewer.mask_enabled == (not called_damaged)
    assert ("Labelled undamaged: no mask" in window.panel.histogram_note.text()) == called_damaged
    window.label_current(None)
    assert window.viewer.mask_enabled == called_damaged
