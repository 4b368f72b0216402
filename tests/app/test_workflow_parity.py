"""The GUI and ``lrpseg segment --project`` run one workflow: after a slider drag, both export the same bytes."""

from __future__ import annotations

import json

import numpy as np
from lrpseg.core.cli import main as lrpseg_main


def _drag(slider, position: int) -> None:
    """Drag the slider's handle to ``position`` the way a mouse drag does (press, moves, release)."""
    slider.setSliderDown(True)
    start = slider.value()
    for step in np.linspace(start, position, 5).round().astype(int)[1:]:
        slider.setSliderPosition(int(step))
    slider.setSliderDown(False)


def test_cli_exports_the_same_pngs_as_the_gui(make_window, demo_folder, damaged_checkpoint, qtbot, tmp_path,
                                             wait_idle, use_checkpoint):
    use_checkpoint(demo_folder, damaged_checkpoint)
    window = make_window(demo_folder)
    qtbot.waitUntil(lambda: window.handle is not None, timeout=10000)
    qtbot.waitUntil(lambda: window.current_analysis() is not None, timeout=30000)
    rel, analysis = window.current, window.current_analysis()
    assert analysis.damaged
    slider = window.panel.slider
    default_mask = analysis.mask_at(analysis.threshold)
    position = next(p for p in range(50, 1000, 50) if not np.array_equal(analysis.mask_at(p / 1000), default_mask))
    _drag(slider, position)
    assert window.panel.threshold() == position / 1000

    gui_out = tmp_path / "gui"
    assert window.job_controller.export_masks(gui_out)  # saves the dragged threshold first
    with qtbot.waitSignal(window.jobs.job("export").succeeded, timeout=60000):
        pass
    cli_out = tmp_path / "cli"
    assert lrpseg_main(["segment", "--project", str(demo_folder), "--out", str(cli_out), "--device", "cpu"]) == 0

    gui_pngs = sorted(p.relative_to(gui_out) for p in gui_out.rglob("*.png"))
    cli_pngs = sorted(p.relative_to(cli_out) for p in cli_out.rglob("*.png"))
    assert gui_pngs == cli_pngs and len(gui_pngs) == 24  # 12 masks and 12 score maps
    for name in gui_pngs:
        assert (gui_out / name).read_bytes() == (cli_out / name).read_bytes(), name

    for out in (gui_out, cli_out):
        report = json.loads((out / "lrpseg-report.json").read_text())
        record = next(r for r in report["images"] if r["image"].endswith(rel))
        assert record["threshold"] == position / 1000  # the dragged threshold, not the segmenter's default
        masked = [r for r in report["images"] if r["damaged"]]
        assert len(masked) == 12
    provenance = json.loads((cli_out / "provenance.json").read_text())
    assert provenance["model_id"] == window.handle.model_id and provenance["tool"] == "lrpseg segment"
    wait_idle(window)


def test_suggested_export_folder_is_created_beside_the_images_not_inside(tmp_path):
    from lrpseg.app.session import holds_masks, suggested_export_folder

    root = tmp_path / "images"
    root.mkdir()
    folder = suggested_export_folder(root)
    assert folder == tmp_path / "images-masks" and folder.is_dir()
    assert not folder.is_relative_to(root)
    assert not holds_masks(folder)
    (folder / "a.png").write_bytes(b"mask")
    assert holds_masks(folder)
