"""Correcting a mask in the window: strokes land on image pixels at any zoom, undo/redo per stroke, the
correction is stored at once, listed, filtered, and survives a new model and a restart."""

from __future__ import annotations

import time

import numpy as np
from lrpseg.core.corrected_masks import CorrectedMasks
from lrpseg.core.mask_edit import MaskEdit
from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication

LEFT, NONE = Qt.MouseButton.LeftButton, Qt.MouseButton.NoButton


def _send(viewer, kind, point: QPoint, button, buttons) -> None:
    viewport = viewer.viewport()
    event = QMouseEvent(kind, QPointF(point), QPointF(viewport.mapToGlobal(point)), button, buttons,
                        Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(viewport, event)


def _viewport_point(viewer, x: float, y: float) -> QPoint:
    return viewer.mapFromScene(viewer.view.mapViewToScene(QPointF(x, y)))


def _image_point(viewer, point: QPoint) -> tuple[float, float]:
    """Where a viewport pixel lands in image coordinates (what the app sees of that mouse position)."""
    mapped = viewer.view.mapSceneToView(viewer.mapToScene(point))
    return mapped.x(), mapped.y()


def drag(viewer, points) -> list[tuple[float, float]]:
    """Press the left button at the first image point, move through the others, release; return the image
    coordinates the app received. Moves are 12 ms apart: pyqtgraph drops moves closer than 10 ms (its
    ``mouseRateLimit``), and the stroke then joins the moves it got with straight segments."""
    screen = [_viewport_point(viewer, x, y) for x, y in points]
    _send(viewer, QEvent.Type.MouseButtonPress, screen[0], LEFT, LEFT)
    for point in screen[1:]:
        time.sleep(0.012)
        _send(viewer, QEvent.Type.MouseMove, point, NONE, LEFT)
    _send(viewer, QEvent.Type.MouseButtonRelease, screen[-1], LEFT, NONE)
    return [_image_point(viewer, p) for p in screen]


def _expected(start: np.ndarray, received, value: bool, size: int) -> np.ndarray:
    edit = MaskEdit(start)
    edit.begin_stroke(value, size)
    for x, y in received:
        edit.add_point(x, y)
    edit.end_stroke()
    return edit.mask


def _open_on_first_image(make_window, folder, qtbot):
    window = make_window(folder)
    qtbot.waitUntil(lambda: window.viewer.image_shape() is not None, timeout=10000)
    return window


def test_strokes_land_on_image_pixels_at_any_zoom_and_undo_per_stroke(make_window, demo_folder, qtbot):
    window = _open_on_first_image(make_window, demo_folder, qtbot)
    viewer, editor = window.viewer, window.mask_editor
    shape = viewer.image_shape()
    window.commands["brush"].trigger()
    assert editor.tool == "brush" and window.commands["undo"].text() == "&Undo stroke"
    empty = np.zeros(shape, bool)
    states = [empty.tobytes()]
    masks = []
    # zoomed in (about 12 screen pixels per image pixel), then the whole image (about 6), then zoomed out
    paths = ([(12.5, 14.5), (20.2, 16.9), (24.7, 25.1), (15.0, 27.5)],
             [(40.3, 4.2), (55.9, 20.6), (42.1, 33.3)],
             [(10.0, 20.0), (60.2, 21.7)])
    for zoom, value, size, path in zip(((10, 30), None, (0, 200)), (True, True, False), (5, 3, 3), paths,
                                       strict=True):
        if zoom is None:
            viewer.fit()
        else:
            viewer.view.setRange(xRange=zoom, yRange=zoom, padding=0)
        if not value:
            window.commands["eraser"].trigger()
            assert editor.tool == "eraser" and not window.commands["brush"].isChecked()
        editor.set_size(size)
        QApplication.sendPostedEvents()  # the new view range reaches the scene before the drag maps points
        QApplication.processEvents()
        before = viewer.displayed_mask() if masks else empty
        received = drag(viewer, path)
        expected = _expected(before, received, value, size)
        assert viewer.manual_mask() is not None
        np.testing.assert_array_equal(viewer.displayed_mask(), expected)
        assert (expected != before).any()
        masks.append(expected)
        states.append(expected.tobytes())
    # a click paints one dab
    window.commands["brush"].trigger()
    editor.set_size(1)
    point = _viewport_point(viewer, 40.5, 41.5)
    _send(viewer, QEvent.Type.MouseButtonPress, point, LEFT, LEFT)
    _send(viewer, QEvent.Type.MouseButtonRelease, point, LEFT, NONE)
    after_click = viewer.displayed_mask()
    assert after_click[41, 40] and (after_click != masks[-1]).sum() == 1
    states.append(after_click.tobytes())
    # undo and redo per stroke, byte for byte (Ctrl+Z with a tool in hand undoes strokes, not labels)
    for expected in reversed(states[1:-1]):
        window.undo()
        assert viewer.displayed_mask().tobytes() == expected
    window.undo()  # back to before the first stroke: no correction, the automatic (here: no) mask again
    assert viewer.manual_mask() is None and not editor.has_correction()
    for expected in states[1:]:
        window.redo()
        assert viewer.displayed_mask().tobytes() == expected
    assert editor.flush()
    with_store = CorrectedMasks(window.project)
    np.testing.assert_array_equal(with_store.load(window.current), after_click)
    # with a tool in hand the middle button still pans (and the right button zooms): neither paints
    assert editor.tool == "brush"
    before = viewer.view.viewRange()
    middle = Qt.MouseButton.MiddleButton
    start, end = _viewport_point(viewer, 30, 30), _viewport_point(viewer, 10, 12)
    _send(viewer, QEvent.Type.MouseButtonPress, start, middle, middle)
    for step in range(1, 6):
        time.sleep(0.012)
        _send(viewer, QEvent.Type.MouseMove, start + (end - start) * step / 5, NONE, middle)
    _send(viewer, QEvent.Type.MouseButtonRelease, end, middle, NONE)
    assert viewer.view.viewRange() != before
    np.testing.assert_array_equal(viewer.displayed_mask(), after_click)


def test_fill_holes_clear_and_keys(make_window, demo_folder, qtbot):
    window = _open_on_first_image(make_window, demo_folder, qtbot)
    viewer, editor = window.viewer, window.mask_editor
    qtbot.keyClick(window, Qt.Key.Key_B)
    assert editor.tool == "brush"
    editor.set_size(9)
    qtbot.keyClick(window, Qt.Key.Key_Equal)
    assert editor.size == 11 and editor.layer.size == 11
    qtbot.keyClick(window, Qt.Key.Key_Minus)
    assert editor.size == 9
    editor.set_size(3)
    drag(viewer, [(10.5, 10.5), (40.5, 10.5), (40.5, 40.5), (10.5, 40.5), (10.5, 10.5)])  # a closed ring
    ring = viewer.displayed_mask()
    assert not ring[25, 25]
    qtbot.keyClick(window, Qt.Key.Key_G)
    filled = viewer.displayed_mask()
    expected = ring.copy()
    expected[12:40, 12:40] = True  # the ring of width 3 around 10..40 encloses rows and columns 12..39
    np.testing.assert_array_equal(filled, expected)
    qtbot.keyClick(window, Qt.Key.Key_Backspace, Qt.KeyboardModifier.ShiftModifier)
    assert not viewer.displayed_mask().any() and editor.has_correction()  # an empty correction is one too
    qtbot.keyClick(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    np.testing.assert_array_equal(viewer.displayed_mask(), filled)
    qtbot.keyClick(window, Qt.Key.Key_E)
    assert editor.tool == "eraser"
    qtbot.keyClick(window, Qt.Key.Key_E)  # the same key puts the tool down
    assert editor.tool is None and window.commands["undo"].text() == "&Undo label"


def test_correction_is_listed_filtered_and_survives_a_new_model_and_a_restart(
        make_window, demo_folder, slim_checkpoint, use_checkpoint, qtbot, wait_idle):
    window = _open_on_first_image(make_window, demo_folder, qtbot)
    rel = window.current
    window.commands["brush"].trigger()
    window.mask_editor.set_size(7)
    drag(window.viewer, [(5.5, 5.5), (30.5, 50.5)])
    corrected = window.viewer.displayed_mask()
    assert corrected.any() and window.mask_editor.flush()
    row = window.list_model.row_of(rel)
    assert window.list_model.data(window.list_model.index(row, 0)).endswith("✎")
    window.filter_combo.setCurrentIndex(window.filter_combo.findData("corrected"))
    assert window.list_model.visible_paths() == [rel]
    window.filter_combo.setCurrentIndex(0)
    info = CorrectedMasks(window.project).info(rel)
    assert info.author and info.model_id is None and info.threshold is None  # no model yet: started empty
    # a model arrives (as after training): the correction stays on screen and on disk
    use_checkpoint(demo_folder, slim_checkpoint)
    window.models.load_saved()
    qtbot.waitUntil(lambda: window.current_analysis() is not None, timeout=30000)
    wait_idle(window)
    np.testing.assert_array_equal(window.viewer.displayed_mask(), corrected)
    window.viewer.set_threshold(0.01)  # the slider moves the automatic threshold, not the correction
    np.testing.assert_array_equal(window.viewer.displayed_mask(), corrected)
    window.shutdown()
    # restart
    again = _open_on_first_image(make_window, demo_folder, qtbot)
    assert again.current == rel and rel in again.list_model.corrected
    np.testing.assert_array_equal(again.viewer.displayed_mask(), corrected)
    # start from the automatic mask: the correction becomes the automatic mask, recording model and threshold
    qtbot.waitUntil(lambda: again.current_analysis() is not None, timeout=30000)
    wait_idle(again)
    analysis = again.current_analysis()
    threshold, _ = again.thresholds.threshold_for(rel, analysis)
    again.commands["start_automatic"].trigger()
    automatic = analysis.segmentation.score >= threshold if analysis.damaged else np.zeros_like(corrected)
    np.testing.assert_array_equal(again.viewer.displayed_mask(), automatic)
    assert again.mask_editor.flush()
    info = CorrectedMasks(again.project).info(rel)
    assert info.model_id == again.handle.model_id and info.threshold == threshold
    np.testing.assert_array_equal(CorrectedMasks(again.project).load(rel), automatic)


def test_export_from_gui_and_cli_writes_the_corrected_mask(make_window, demo_folder, damaged_checkpoint,
                                                           use_checkpoint, qtbot, tmp_path, wait_idle):
    import json

    import cv2
    from lrpseg.core.cli import main as lrpseg_main

    use_checkpoint(demo_folder, damaged_checkpoint)
    window = _open_on_first_image(make_window, demo_folder, qtbot)
    qtbot.waitUntil(lambda: window.current_analysis() is not None, timeout=30000)
    wait_idle(window)
    rel = window.current
    automatic = window.viewer.displayed_mask()
    window.commands["eraser"].trigger()
    window.mask_editor.set_size(25)
    drag(window.viewer, [(20.5, 20.5), (45.5, 40.5)])
    window.commands["brush"].trigger()
    drag(window.viewer, [(2.5, 60.5), (60.5, 60.5)])
    corrected = window.viewer.displayed_mask()
    assert not np.array_equal(corrected, automatic)
    gui_out, cli_out = tmp_path / "gui", tmp_path / "cli"
    assert window.job_controller.export_masks(gui_out)  # stores the pending correction first
    with qtbot.waitSignal(window.jobs.job("export").succeeded, timeout=60000):
        pass
    assert lrpseg_main(["segment", "--project", str(demo_folder), "--out", str(cli_out), "--device", "cpu"]) == 0
    mask_name = rel.rsplit(".", 1)[0] + ".png"  # the export keeps the image folder's tree
    for out in (gui_out, cli_out):
        written = cv2.imread(str(out / mask_name), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(written, np.where(corrected, 255, 0))
        report = json.loads((out / "lrpseg-report.json").read_text())
        records = {r["image"].rsplit("/", 1)[-1]: r for r in report["images"]}
        mine = records[rel.rsplit("/", 1)[-1]]
        assert mine["mask"] == mask_name
        assert mine["mask_source"] == "corrected" and mine["threshold"] is None
        assert mine["correction"]["author"] and mine["correction"]["started_from_model"] == window.handle.model_id
        assert sum(r["mask_source"] == "corrected" for r in records.values()) == 1
        assert report["summary"]["corrected_masks"] == 1
        provenance = json.loads((out / "provenance.json").read_text())
        assert list(provenance["corrected_masks"]) == [rel]
    # a damaged corrected mask is reported, never replaced by the automatic one
    store = CorrectedMasks(window.project)
    (store.folder / store.info(rel).file).write_bytes(b"not a png")
    broken_out = tmp_path / "broken"
    assert lrpseg_main(["segment", "--project", str(demo_folder), "--out", str(broken_out), "--device",
                        "cpu"]) in (0, 1)
    assert not (broken_out / mask_name).exists()
    report = json.loads((broken_out / "lrpseg-report.json").read_text())
    error = next(r["error"] for r in report["images"] if r["image"].endswith(rel))
    assert "damaged" in error and rel in error


def test_outline_of_score_and_of_a_corrected_mask_match_the_morphological_definition(qtbot):
    """The per-tick outline (score vs its neighbourhood minimum) and the per-stroke patch of a corrected mask's
    outline both equal mask & ~erode(mask) recomputed from scratch."""
    import cv2
    from lrpseg.app.viewer import ImageViewer, OutlineRenderer, outline_width, threshold_index

    rng = np.random.default_rng(0)
    size = 900  # outline half-width 2
    yy, xx = np.mgrid[0:size, 0:size] / size
    index = (np.clip(0.5 + 0.5 * np.sin(9 * xx + 4 * yy) + 0.05 * rng.standard_normal((size, size)), 0, 1)
             * 255).round().astype(np.uint8)
    width = outline_width(index.shape)
    kernel = np.ones((2 * width + 1, 2 * width + 1), np.uint8)

    def reference(mask: np.ndarray) -> np.ndarray:
        mask = mask.astype(np.uint8)
        return mask & (1 - cv2.erode(mask, kernel))

    renderer = OutlineRenderer(index)
    for threshold in (0.0, 0.2, 0.5, 0.97, 1.0):
        first = threshold_index(threshold)
        np.testing.assert_array_equal(renderer.render(first), reference(index >= first))

    viewer = ImageViewer()
    qtbot.addWidget(viewer)
    viewer.set_image(np.zeros((size, size, 3), np.uint8))
    viewer.set_mask_style("outline")
    edit = MaskEdit(index >= 128)
    viewer.set_manual_mask(edit.mask)
    for value, points in ((False, [(100.5, 100.5), (400.2, 300.7)]), (True, [(0.5, 890.0), (899.0, 10.0)])):
        edit.begin_stroke(value, 31)
        for x, y in points:
            viewer.manual_mask_changed(edit.add_point(x, y))
        edit.end_stroke()
        np.testing.assert_array_equal(viewer.mask_item.image, reference(edit.mask))


def test_zoomed_out_mask_overlay_is_the_full_one_at_every_strideth_pixel_and_follows_the_zoom(qtbot):
    """Fitted into a small viewer, a 1600² mask overlay (outline or fill) is rendered only at the pixels a
    nearest-neighbour zoom-out shows, stretched over the whole image; zoomed in, at full resolution again."""
    from lrpseg.app.viewer import ImageViewer, OutlineRenderer, threshold_index

    size = 1600
    yy, xx = np.mgrid[0:size, 0:size] / size
    index = (np.clip(0.5 + 0.5 * np.sin(9 * xx + 4 * yy), 0, 1) * 255).round().astype(np.uint8)
    viewer = ImageViewer()
    qtbot.addWidget(viewer)
    viewer.resize(400, 400)
    viewer.show()
    qtbot.waitExposed(viewer)
    viewer.set_image(np.zeros((size, size, 3), np.uint8))
    viewer.set_score(index, 0.5)
    viewer.set_mask_style("outline")
    full = OutlineRenderer(index).render(threshold_index(0.5)).copy()
    stride = viewer._mask_stride
    assert stride >= 3  # 1600 pixels in at most 400 screen pixels
    np.testing.assert_array_equal(viewer.mask_item.image, full[::stride, ::stride])
    assert viewer.mask_item.mapRectToParent(viewer.mask_item.boundingRect()).getRect() == (0, 0, size, size)
    viewer.set_threshold(0.7)
    expected = OutlineRenderer(index).render(threshold_index(0.7))[::stride, ::stride]
    np.testing.assert_array_equal(viewer.mask_item.image, expected)

    viewer.set_mask_style("fill")  # the score itself at every stride-th pixel; a tick swaps the lookup table
    shown = viewer.mask_item.image
    np.testing.assert_array_equal(shown, index[::stride, ::stride])
    viewer.set_threshold(0.4)
    assert viewer.mask_item.image is shown
    np.testing.assert_array_equal(viewer.displayed_mask(), index >= threshold_index(0.4))
    viewer.set_mask_style("outline")

    viewer.view.setRange(xRange=(0, 100), yRange=(0, 100), padding=0)
    qtbot.waitUntil(lambda: viewer._mask_stride == 1)
    np.testing.assert_array_equal(viewer.mask_item.image, OutlineRenderer(index).render(threshold_index(0.4)))
    assert viewer.mask_item.mapRectToParent(viewer.mask_item.boundingRect()).getRect() == (0, 0, size, size)
    viewer.set_mask_style("fill")
    np.testing.assert_array_equal(viewer.mask_item.image, index)
