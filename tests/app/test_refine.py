"""Refined masks in the window: the "Refine masks" job, the mask source switch, cancel, refusal, export."""

from __future__ import annotations

import json

import numpy as np
from lrpseg.app import refine_ui
from lrpseg.core.corrected_masks import CorrectedMasks
from lrpseg.core.export import file_sha256
from lrpseg.core.images import read_image
from lrpseg.core.labels import labels_from_folders
from lrpseg.core.project import Project
from lrpseg.core.student.distil import DistilConfig

TINY = {"base": 4, "depth": 2, "epochs": 1, "batch_size": 4}


def _window_with_model(make_window, demo_folder, slim_checkpoint, use_checkpoint, qtbot):
    use_checkpoint(demo_folder, slim_checkpoint)
    window = make_window(demo_folder)
    qtbot.waitUntil(lambda: window.handle is not None, timeout=10000)
    window.project.set_labels(labels_from_folders(demo_folder))
    window.list_model.labels = window.project.labels()
    window.project.set_setting("distil_config", TINY)
    window.commands["undamaged_masks"].setChecked(True)  # the one-epoch model may call everything undamaged
    return window


def _refine(window, qtbot):
    progress = []
    assert window.refined.start()
    job = window.jobs.job("refine")
    job.progressed.connect(progress.append)
    assert window.progress.isVisible() and window.cancel_button.isVisible()
    assert not window.commands["train"].isEnabled()  # one long job at a time
    with qtbot.waitSignal(job.succeeded, timeout=120000):
        pass
    qtbot.waitUntil(lambda: window.refined.student is not None and not window.progress.isVisible(), timeout=5000)
    return progress


def test_refine_trains_a_student_and_shows_its_masks(make_window, demo_folder, slim_checkpoint, use_checkpoint,
                                                     qtbot, wait_idle, tmp_path):
    window = _window_with_model(make_window, demo_folder, slim_checkpoint, use_checkpoint, qtbot)
    assert window.refined.source_combo.currentText() == "explanation"
    assert not window.refined.source_combo.model().item(1).isEnabled()  # no student yet
    progress = _refine(window, qtbot)
    assert progress and progress[-1].fraction == 1.0
    assert "left" in window.progress.format() or "estimating" in window.progress.format()
    students = list((demo_folder / ".lrpseg" / "models").glob("student-*.safetensors"))
    assert len(students) == 1 and window.project.get_setting("student_path").endswith(students[0].name)
    assert window.refined.source == "refined" and window.refined.source_combo.currentText() == "refined"

    qtbot.waitUntil(lambda: window.current_analysis() is not None, timeout=30000)
    analysis = window.current_analysis()
    student = window.refined.student
    assert analysis.segmenter == "student" and analysis.threshold == student.threshold
    assert abs(window.panel.threshold() - student.threshold) < 1e-3  # the slider works on the student's map
    assert "/refined/student:" in window.thresholds.override_key()  # thresholds of the student's map
    window.panel.slider.set_threshold(0.0)
    window.thresholds.flush()
    rel = window.current
    assert window.project.threshold_override(rel, window.thresholds.override_key()) == 0.0

    out = tmp_path / "export"
    assert window.job_controller.export_masks(out)
    with qtbot.waitSignal(window.jobs.job("export").succeeded, timeout=60000):
        pass
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["mask_source"] == "refined (student)"
    assert provenance["student_sha256"] == file_sha256(students[0])
    assert provenance["student_training"]["counts"]["background"] == 6
    assert provenance["student_training"]["corrected_masks"]["used"] == 0  # none corrected in this project
    report = json.loads((out / "lrpseg-report.json").read_text())
    assert next(r for r in report["images"] if r["image"].endswith(rel))["threshold"] == 0.0

    window.refined.set_source("explanation")  # back to the explanation's masks, same image
    qtbot.waitUntil(lambda: window.current_analysis() is not None, timeout=30000)
    assert window.current_analysis().segmenter == window.segmenter
    assert not np.array_equal(window.current_analysis().segmentation.score, analysis.segmentation.score)
    wait_idle(window)


def test_cancelled_refine_keeps_the_previous_student(make_window, demo_folder, slim_checkpoint, use_checkpoint,
                                                     qtbot, wait_idle):
    window = _window_with_model(make_window, demo_folder, slim_checkpoint, use_checkpoint, qtbot)
    _refine(window, qtbot)
    first = window.refined.student_path
    window.project.set_setting("distil_config", {**TINY, "epochs": 200})
    assert window.refined.start()
    job = window.jobs.job("refine")
    steps = []
    job.progressed.connect(steps.append)
    qtbot.waitUntil(lambda: any(p.stage == "train" for p in steps), timeout=60000)
    with qtbot.waitSignal(job.cancelled, timeout=60000):
        window.job_controller.cancel()
    assert window.refined.student_path == first and window.project.get_setting("student_path").endswith(first.name)
    assert len(list(first.parent.glob("student-*.safetensors"))) == 1
    assert "previous student is kept" in window.statusBar().currentMessage()
    wait_idle(window)


def test_a_student_of_another_classifier_is_refused(make_window, demo_folder, slim_checkpoint, use_checkpoint,
                                                    qtbot, wait_idle, tmp_path):
    window = _window_with_model(make_window, demo_folder, slim_checkpoint, use_checkpoint, qtbot)
    _refine(window, qtbot)
    wait_idle(window)
    other = tmp_path / "other.safetensors"  # same architecture, other weights: another classifier
    from lrpseg.core.checkpoint import load_checkpoint, save_checkpoint

    model, meta = load_checkpoint(slim_checkpoint)
    with __import__("torch").no_grad():
        next(model.parameters()).add_(1.0)
    save_checkpoint(other, model, training=meta["training"])
    window.models.load(other, remember=True, title="Cannot load model")
    qtbot.waitUntil(lambda: window.handle is not None and window.handle.path == other, timeout=10000)
    assert window.refined.student is None and window.refined.source == "explanation"
    assert "trained for another classifier" in window.statusBar().currentMessage()
    assert not window.refined.source_combo.model().item(1).isEnabled()
    wait_idle(window)


def test_refine_passes_every_corrected_mask_as_an_exact_target_and_names_the_unusable_ones(
        make_window, demo_folder, slim_checkpoint, use_checkpoint, qtbot, wait_idle, monkeypatch):
    good_rel, torn_rel = sorted(rel for rel in labels_from_folders(demo_folder) if rel.startswith("damaged/"))[:2]
    good = np.zeros(read_image(demo_folder / good_rel).shape[:2], bool)
    good[: good.shape[0] // 2] = True
    with Project.open(demo_folder) as project:
        store = CorrectedMasks(project)
        store.save(good_rel, good)
        store.save(torn_rel, ~good)
        torn_file = store.folder / store.info(torn_rel).file
    torn_file.write_bytes(torn_file.read_bytes()[:40])
    torn = torn_file.read_bytes()
    seen = {}
    real = refine_ui.distil_to_file

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(refine_ui, "distil_to_file", spy)
    window = _window_with_model(make_window, demo_folder, slim_checkpoint, use_checkpoint, qtbot)
    _refine(window, qtbot)
    weight = DistilConfig().corrected_weight
    assert list(seen["exact"]) == [demo_folder / good_rel]
    mask, used_weight = seen["exact"][demo_folder / good_rel]
    assert np.array_equal(mask, good) and used_weight == weight
    assert "1 corrected masks as exact targets, 1 skipped" in window.statusBar().currentMessage()
    title, message = window.last_error
    assert title == "Corrected masks skipped" and torn_rel in message and str(torn_file) in message
    assert torn_file.read_bytes() == torn and window.mask_editor.store.rels() == {good_rel, torn_rel}
    summary = window.refined.student.training["corrected_masks"]
    assert summary["used"] == 1 and summary["images"] == [good_rel] and len(summary["skipped"]) == 1
    wait_idle(window)


def test_a_distillation_setting_edited_by_hand_is_named_and_nothing_starts(make_window, demo_folder, slim_checkpoint,
                                                                          use_checkpoint, qtbot, wait_idle):
    window = _window_with_model(make_window, demo_folder, slim_checkpoint, use_checkpoint, qtbot)
    window.project.set_setting("distil_config", {**TINY, "epochs": 0})
    assert not window.refined.start()
    assert window.jobs.job("refine") is None
    title, message = window.last_error
    assert title == "Cannot refine masks" and "epochs" in message and "0" in message
    wait_idle(window)
