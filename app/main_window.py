"""The main window: image list | viewer | side panel, with menus, a toolbar and a status bar.

The window keeps the session state (open project, current image, loaded model, caches) and wires the pieces
together. Anything slower than a frame runs elsewhere: decoding, prediction and LRP on the
:class:`~app.analysis.AnalysisService` thread, training and export as jobs (:mod:`app.jobs_ui`), thumbnails on
a thread pool (:mod:`app.thumbnails`).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from lrpseg.app import session
from lrpseg.app.actions import build_actions
from lrpseg.app.analysis import AnalysisKey, AnalysisService, ByteLRU, ModelHandle
from lrpseg.app.hints import ProjectState, next_step
from lrpseg.app.image_list import iter_rows
from lrpseg.app.jobs_ui import JobController
from lrpseg.app.label_saver import LabelSaver
from lrpseg.app.list_panel import ListPanel
from lrpseg.app.mask_editor import MaskEditor
from lrpseg.app.recent import recent_folders, remember_folder
from lrpseg.app.refine_ui import RefineController
from lrpseg.app.side_panel import SidePanel
from lrpseg.app.train_dialog import TrainSettingsDialog
from lrpseg.app.viewer import ImageViewer
from lrpseg.app.window_model import ModelController
from lrpseg.app.window_threshold import ThresholdController
from lrpseg.app.workers import display_text
from lrpseg.core.device import describe_device, resolve_device
from lrpseg.core.labels import gets_mask
from lrpseg.core.project import Project
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QFileDialog,
    QLabel,
    QMainWindow,
    QMenu,
    QMessageBox,
    QScrollArea,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

log = logging.getLogger(__name__)

LOOKAHEAD = 3


class MainWindow(QMainWindow):
    """lrpseg's desktop window.

    It owns its parts: ``list_panel``, ``viewer``, ``panel`` (side panel), ``models`` (loading and installing
    classifiers), ``thresholds`` (explanation choices and per-image thresholds), ``job_controller`` (training
    and export) and ``commands`` (every menu/toolbar action by name, see :mod:`app.actions`).

    Parameters
    ----------
    folder
        Image folder (= project) to open once the event loop runs.
    device
        ``"auto"``, ``"cpu"`` or ``"cuda[:N]"``: where models train and explain.
    """

    analysis_shown = Signal(object)

    def __init__(self, folder: str | Path | None = None, device: str = "auto") -> None:
        super().__init__()
        self.setWindowTitle("lrpseg")
        self.resize(1280, 800)
        self.device = resolve_device(device)
        self.project: Project | None = None
        self.label_saver: LabelSaver | None = None  # the open project's label writes (off the GUI thread)
        self.root: Path | None = None
        self.handle: ModelHandle | None = None
        self.service: AnalysisService | None = None
        self.images = ByteLRU(384 << 20)
        self.analyses = ByteLRU(768 << 20)
        self.current: str | None = None
        self.rule_set = session.DEFAULT_RULE_SET
        self.segmenter = session.DEFAULT_SEGMENTER
        self.auto_advance = True
        self.advance_to_unlabelled = True
        self.show_undamaged_masks = False
        self.last_error: tuple[str, str] | None = None
        self.models = ModelController(self)
        self.thresholds = ThresholdController(self)

        self._build_widgets()
        self.job_controller = JobController(self)
        self.jobs = self.job_controller.jobs
        self.progress, self.cancel_button = self.job_controller.progress, self.job_controller.cancel_button
        self._build_status_fields()
        self.mask_editor = MaskEditor(self)
        self.commands = build_actions(self)
        model_menu = next(a.menu() for a in self.menuBar().actions() if a.text() == "&Model")
        self.models.attach_history_menu(model_menu)
        self.refined = RefineController(self)
        self._build_recent_menu()
        self.panel.heatmap_check.toggled.connect(self.commands["heatmap"].setChecked)
        self.panel.mask_check.toggled.connect(self.commands["mask"].setChecked)
        self.panel.mask_style.currentTextChanged.connect(
            lambda style: self.commands["outline"].setChecked(style == "outline"))
        self.jobs.changed.connect(self.update_actions)
        self.mask_editor.changed.emit()
        self.update_actions()
        self.update_status()
        self.viewer.show_message("Open a folder of images (Ctrl+O)")
        if folder is not None:
            QTimer.singleShot(0, lambda: self.open_folder(folder))

    # ================================================================= construction
    def _build_widgets(self) -> None:
        self.list_panel = ListPanel()
        self.list_panel.current_changed.connect(self._current_changed)
        lp = self.list_panel
        self.list_model, self.list_view = lp.model, lp.view
        self.sort_combo, self.filter_combo, self.search, self.count_label = (
            lp.sort_combo, lp.filter_combo, lp.search, lp.count_label)
        self.viewer = ImageViewer()
        self.viewer.hovered.connect(self._hovered)
        self.panel = SidePanel(session.rule_set_choices(), session.segmenter_choices())
        self.panel.set_choice(self.panel.rule_set, self.rule_set)
        self.panel.set_choice(self.panel.segmenter, self.segmenter)
        self.panel.rule_set_changed.connect(self.thresholds.set_rule_set)
        self.panel.segmenter_changed.connect(self.thresholds.set_segmenter)
        self.panel.threshold_changed.connect(self.thresholds.set_threshold)
        self.panel.threshold_reset.connect(self.thresholds.reset)
        self.panel.heatmap_toggled.connect(self.viewer.set_heatmap_visible)
        self.panel.heatmap_opacity_changed.connect(self.viewer.set_heatmap_opacity)
        self.panel.mask_toggled.connect(self.viewer.set_mask_visible)
        self.panel.mask_opacity_changed.connect(self.viewer.set_mask_opacity)
        self.panel.mask_style_changed.connect(self.viewer.set_mask_style)
        scroll = QScrollArea()
        scroll.setWidget(self.panel)
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setMinimumWidth(self.panel.minimumSizeHint().width() + 14)
        splitter = QSplitter()
        for widget, stretch in ((self.list_panel, 0), (self.viewer, 1), (scroll, 0)):
            splitter.addWidget(widget)
            splitter.setStretchFactor(splitter.count() - 1, stretch)
        splitter.setSizes([440, 510, 330])
        splitter.setChildrenCollapsible(False)
        self.hint = QLabel()
        self.hint.setObjectName("HintLine")
        self.hint.setToolTip("What to do next: label → train → inspect → export (F1 lists every key)")
        central = QWidget()
        column = QVBoxLayout(central)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)
        column.addWidget(self.hint)
        column.addWidget(splitter, 1)
        self.setCentralWidget(central)

    def _build_recent_menu(self) -> None:
        file_menu = next(o for o in self.commands["open"].associatedObjects() if isinstance(o, QMenu))
        self.recent_menu = QMenu("Open &recent", self)
        self.recent_menu.setToolTipsVisible(True)
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        file_menu.insertMenu(self.commands["export"], self.recent_menu)
        file_menu.insertSeparator(self.commands["export"])

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        folders = recent_folders()
        for folder in folders:
            action = self.recent_menu.addAction(folder.name or str(folder))
            action.setToolTip(str(folder))
            action.triggered.connect(lambda _checked=False, f=folder: self.open_folder(f))
        if not folders:
            self.recent_menu.addAction("No recent folders").setEnabled(False)

    def _build_status_fields(self) -> None:
        self.device_label, self.model_label = QLabel(), QLabel()
        self.rule_label, self.segmenter_label = QLabel(), QLabel()
        self.rule_label.setToolTip("LRP rule set in use (side panel: Rule set)")
        self.segmenter_label.setToolTip("Segmenter in use (side panel: Segmenter)")
        for widget in (self.device_label, self.model_label, self.rule_label, self.segmenter_label):
            widget.setObjectName("StatusField")
            self.statusBar().addPermanentWidget(widget)

    # ================================================================= folder
    def choose_folder(self) -> None:
        """Ask for a folder and open it."""
        folder = QFileDialog.getExistingDirectory(self, "Open image folder", str(self.root or Path.home()))
        if folder:
            self.open_folder(folder)

    def open_folder(self, folder: str | Path) -> bool:
        """Open ``folder`` as a project (``.lrpseg`` is created on first use); return whether it worked."""
        folder = Path(folder).expanduser().resolve()
        if self.job_controller.busy():
            self.error("A job is running", "Cancel the running job before opening another folder.")
            return False
        try:
            project = Project.open(folder)
        except Exception as error:  # shown as a dialog; the previous folder stays open
            self.error("Cannot open folder", f"{folder}\n\n{error}")
            return False
        self._close_project()
        self.project, self.root = project, folder
        self.label_saver = LabelSaver(project, lambda message: self.show_status(message), self)
        self.label_saver.written.connect(self._label_written)
        self.rule_set = session.setting(project, "rule_set", session.DEFAULT_RULE_SET,
                                        session.rule_set_choices())
        self.segmenter = session.setting(project, "segmenter", session.DEFAULT_SEGMENTER,
                                         session.segmenter_choices())
        self.panel.set_choice(self.panel.rule_set, self.rule_set)
        self.panel.set_choice(self.panel.segmenter, self.segmenter)
        self.service = AnalysisService(folder, postprocess=session.prepare_view, parent=self, cache=project)
        self.service.image_loaded.connect(self._image_loaded)
        self.service.analysed.connect(self._analysed)
        self.service.failed.connect(self._analysis_failed)
        self.service.unreadable.connect(self.list_model.set_error)
        self.service.predicted.connect(self.models.predicted)
        self.service.refiner = self.refined.refine
        self.refined.project_opened()
        model_id = session.known_model_id(project.model_path)
        probabilities = project.predictions(model_id) if model_id else {}
        self.setWindowTitle(f"lrpseg — {folder}")
        self.mask_editor.set_project(project)
        self.list_panel.set_images(folder, project.images(), project.labels(), probabilities)
        self.list_model.set_all_corrected(self.mask_editor.corrected)
        if not self.list_model.rowCount():
            self.viewer.set_image(None, "No images in this folder")
        if project.scan_problems:
            self.show_status(f"{len(project.scan_problems)} files skipped while scanning", 10000)
        last = project.get_setting("last_image")
        if isinstance(last, str) and last in self.list_model.paths:
            self.select(last)  # where the user left off
        remember_folder(folder)
        self.models.load_saved()
        self.update_actions()
        self.update_status()
        return True

    def _close_project(self) -> None:
        if self.label_saver is not None:
            self.label_saver.close()  # every label on disk (errors shown) before the project closes
            self.label_saver.deleteLater()
            self.label_saver = None
        self.thresholds.flush()
        if self.project is not None and self.current is not None:
            try:
                self.project.set_setting("last_image", self.current)
            except Exception as error:  # only the place in the list is lost
                log.warning("last image not saved: %s", error)
        self.mask_editor.set_project(None)  # stores pending corrections first
        if self.service is not None:
            self.service.shutdown()
            self.service.deleteLater()
            self.service = None
        self.list_panel.set_images(None, [], {}, {})
        self.images.clear()
        self.analyses.clear()
        self.handle = None
        self.current = None
        if self.project is not None:
            self.project.close()
            self.project = None

    # ================================================================= current image
    def select(self, rel: str) -> bool:
        """Make ``rel`` the current image (clearing a filter that hides it)."""
        return self.list_panel.select(rel)

    def step(self, delta: int) -> None:
        """Go ``delta`` rows down (or up) the list."""
        self.list_panel.step(delta)

    def key(self, rel: str | None) -> AnalysisKey | None:
        """The analysis key of ``rel`` under the current model and choices."""
        if self.handle is None or rel is None:
            return None
        return AnalysisKey(rel, self.handle.model_id, self.rule_set, self.segmenter,
                           source=self.refined.source_key())

    def current_analysis(self):
        """The :class:`core.pipeline.Analysis` of the current image, if computed."""
        key = self.key(self.current)
        cached = self.analyses.get(key) if key else None
        return cached[0] if cached else None

    def explained_for(self, key: AnalysisKey):
        """The in-memory explanation of ``key``'s image under its model, rule set and max-pool mode (from an
        analysis with any segmenter), or ``None``: with it a segmenter switch skips LRP."""
        for source in dict.fromkeys((key.source, "explanation")):
            for segmenter in session.segmenter_choices():
                cached = self.analyses.peek(dataclasses.replace(key, segmenter=segmenter, source=source))
                if cached is not None and cached[0].explained is not None:
                    return cached[0].explained
        return None

    def _current_changed(self, rel: str) -> None:
        if rel != self.current:
            self.show_current(rel)

    def show_current(self, rel: str) -> None:
        """Make ``rel`` the shown image: its pixels, its analysis (or a request for it), its info line."""
        self.thresholds.flush()
        self.current = rel
        self.update_info()
        error = self.list_model.errors.get(rel)
        if error:
            self.viewer.set_image(None, "Unreadable image")
            self.panel.set_distribution(note=error)
            self.panel.set_threshold_enabled(False)
            self._look_ahead()
            return
        rgb = self.images.get(rel)
        if rgb is None:
            self.viewer.set_image(None, "Loading…")
            self.service.load_image(rel)
        else:
            self.viewer.set_image(rgb)
        self._show_analysis_or_request(rel)
        self._look_ahead()

    def refresh_current(self) -> None:
        """Show the current image's analysis under the present choices (requesting it when not cached)."""
        if self.current is not None and self.current not in self.list_model.errors:
            self._show_analysis_or_request(self.current)
            self._look_ahead()

    def _show_analysis_or_request(self, rel: str) -> None:
        key = self.key(rel)
        self.panel.set_threshold_enabled(False)
        self.viewer.clear_overlays()
        if key is None:
            self.panel.set_distribution(note="No model yet: label a few images (D / U), then Train (Ctrl+T).")
            return
        cached = self.analyses.get(key)
        if cached is not None:
            self._show_analysis(key, *cached)
        else:
            explained = self.explained_for(key)
            self.panel.set_distribution(note="Segmenting…" if explained else "Explaining…")
            self.service.analyse(key, self.handle, explained)

    def _look_ahead(self) -> None:
        row = self.list_model.row_of(self.current) if self.current else None
        if self.service is None or row is None:
            return
        upcoming = [r for r in iter_rows(self.list_model, row + 1, LOOKAHEAD) if r not in self.list_model.errors]
        keys = [k for k in map(self.key, upcoming) if k is not None and k not in self.analyses]
        self.service.look_ahead([r for r in upcoming if r not in self.images], keys, self.handle,
                                {k: self.explained_for(k) for k in keys})

    def _image_loaded(self, rel: str, rgb) -> None:
        self.images.put(rel, rgb)
        if rel == self.current:
            self.viewer.set_image(rgb)
            cached = self.analyses.get(self.key(rel)) if self.handle else None
            if cached is not None:
                self._show_analysis(self.key(rel), *cached)

    def _analysed(self, key: AnalysisKey, analysis, view) -> None:
        self.analyses.put(key, (analysis, view))
        if (self.handle is not None and key.model_id == self.handle.model_id
                and key.rel not in self.list_model.probabilities):
            self.models.predicted(key.model_id, {key.rel: analysis.probability})
        if key == self.key(self.current):
            self._show_analysis(key, analysis, view)

    def _redraw_if_current(self, rel: str) -> None:
        """Draw the shown image's overlays again: its label decides whether it has a mask (:func:`gets_mask`)."""
        if rel != self.current or self.handle is None:
            return
        key = self.key(rel)
        cached = self.analyses.get(key)
        if cached is not None:
            self._show_analysis(key, *cached)

    def _analysis_failed(self, rel: str, message: str) -> None:
        if rel == self.current:
            self.viewer.clear_overlays()
            if rel in self.list_model.errors:
                self.viewer.set_image(None, "Unreadable image")
            self.panel.set_distribution(note=message)
            self.show_status(message, 10000)
            self.update_info()

    def _show_analysis(self, key: AnalysisKey, analysis, view: session.ViewData | None) -> None:
        if self.images.get(key.rel) is None:
            return  # drawn once the image itself arrives
        view = view or session.prepare_view(analysis)
        threshold, overridden = self.thresholds.threshold_for(key.rel, analysis)
        label = self.list_model.labels.get(key.rel)
        masked = gets_mask(analysis.probability, label)
        self.viewer.set_relevance(view.heatmap)
        self.viewer.set_score(view.score_index, threshold, enabled=masked or self.show_undamaged_masks)
        self.panel.set_threshold_enabled(True)
        self.panel.show_threshold(threshold, analysis.threshold, overridden)
        dist = view.distribution
        note = dist.note
        if not masked and not self.show_undamaged_masks:
            why = "Labelled" if label is not None else "Classified"
            note = f"{note} {why} undamaged: no mask (the View menu can show it).".strip()
        self.panel.set_distribution(dist.score_edges, dist.score_counts, dist.fit_edges, dist.fit_density,
                                    dist.curves, dist.domain, note, dist.note_detail)
        self.update_info(analysis)
        self.analysis_shown.emit(analysis)

    def update_info(self, analysis=None) -> None:
        """Refresh the side panel's title and info line (label, probability, size) of the current image."""
        rel = self.current
        if rel is None:
            self.panel.set_image_info("No image", "")
            return
        p = self.list_model.probabilities.get(rel)
        parts = [f"Label: <b>{self.list_model.labels.get(rel, 'unlabelled')}</b>"]
        if rel in self.list_model.errors:
            parts.append("<span style='color:#ff7b72'>unreadable</span>")
        elif p is not None:
            parts.append(f"P(damaged) {p:.3f}")
        elif self.handle is None:
            parts.append("no model yet")
        if analysis is not None:
            height, width = analysis.relevance.shape
            parts.append(f"{width}×{height} px, {analysis.mode}")
        self.panel.set_image_info(rel, " · ".join(parts))

    def _hovered(self, x: int, y: int) -> None:
        analysis = self.current_analysis()
        if x < 0:
            self.statusBar().clearMessage()
        elif analysis is None or analysis.relevance.shape[:2] != self.viewer.image_item.image.shape[:2]:
            self.show_status(f"x {x}  y {y}")
        else:
            self.show_status(f"x {x}  y {y}   relevance {analysis.relevance[y, x]:+.3g}   "
                                         f"score {analysis.segmentation.score[y, x]:.3f}")

    # ================================================================= labels
    def set_auto_advance(self, on: bool) -> None:
        """Move to the next image after labelling (or not)."""
        self.auto_advance = bool(on)

    def set_advance_to_unlabelled(self, on: bool) -> None:
        """After labelling, skip the images below that already have a label (or go to the very next row)."""
        self.advance_to_unlabelled = bool(on)

    def label_current(self, label: str | None) -> None:
        """Label the current image (``None`` clears it) and move on if auto-advance.

        The list shows the new label at once; the commit runs on the label writer's thread and a failure is
        shown when it arrives (:meth:`_label_written`)."""
        if self.label_saver is None or self.current is None:
            return
        rel = self.current
        if label is not None and rel in self.list_model.errors:
            self.show_status(f"Not labelled: {rel} cannot be read ({self.list_model.errors[rel]}), so it cannot "
                             "be trained on.", 10000)
            return
        try:
            self.label_saver.queue.set_label(rel, label)
        except Exception as error:  # not queued (closed project): say so, the list keeps the stored label
            self.error("Label not saved", f"{rel}: {error}")
            return
        changed = self._show_label(rel)
        self.update_info(self.current_analysis())
        self.update_hint()
        if self.auto_advance and not (self.advance_to_unlabelled and self.list_panel.step_to_unlabelled()):
            self.step(1)
        if changed:  # still shown when nothing moved on
            self._redraw_if_current(rel)

    def _show_label(self, rel: str) -> bool:
        """Show ``rel``'s label as the label queue now has it; whether that changed the list's label."""
        before = self.list_model.labels.get(rel)
        self.list_model.set_label(rel, self.label_saver.queue.label(rel))
        self.list_panel.update_counts()
        return self.list_model.labels.get(rel) != before

    def undo(self) -> None:
        """Undo the last label change and show the image it touched (Ctrl+Z); with the brush or eraser in
        hand, undo the current image's last stroke instead."""
        if self.mask_editor.tool is not None:
            self.mask_editor.undo()
        else:
            self._history("undo")

    def redo(self) -> None:
        """Redo the last undone label change (Ctrl+Shift+Z), or stroke with the brush or eraser in hand."""
        if self.mask_editor.tool is not None:
            self.mask_editor.redo()
        else:
            self._history("redo")

    def _history(self, name: str) -> None:
        if self.label_saver is not None:
            getattr(self.label_saver.queue, name)()  # queued behind the label writes; shown by _label_written

    def _label_written(self, write) -> None:
        """A label write finished (:class:`~lrpseg.core.label_queue.LabelWrite`): show its error or its result."""
        if write.error is not None:
            title = "Label not saved" if write.kind == "set" else f"{write.kind.capitalize()} failed"
            self.error(title, f"{write.rel}: {write.error}" if write.rel else str(write.error))
        elif write.kind != "set" and write.rel is None:
            self.show_status(f"Nothing to {write.kind}", 3000)
        if write.rel is None or self.label_saver is None:
            return
        changed = self._show_label(write.rel)  # the label now true
        if write.kind != "set" and write.error is None:
            self.select(write.rel)
        if changed:
            self._redraw_if_current(write.rel)
        self.update_info(self.current_analysis())
        self.update_hint()

    # ================================================================= settings and view
    def set_show_undamaged_masks(self, on: bool) -> None:
        """Also draw masks of images labelled or (unlabelled) classified undamaged (export still leaves them
        empty)."""
        self.show_undamaged_masks = bool(on)
        self.refresh_current()

    def edit_train_settings(self) -> None:
        """Edit the network and schedule of the next training (project setting ``train_config``)."""
        if self.project is None:
            return
        dialog = TrainSettingsDialog(session.folder_train_settings(self.project, self.root, self.device), self)
        if dialog.exec():
            self.project.set_setting("train_config", dialog.values())

    # ================================================================= status
    def update_actions(self) -> None:
        """Enable the commands that make sense now (folder open, model loaded, no long job running)."""
        busy = self.job_controller.busy()
        has_project, has_model = self.project is not None, self.handle is not None
        train = self.commands["train"]
        train.setEnabled(has_project and not busy)
        train.setText("Re&train model" if has_model else "&Train model")
        train.setIconText("Retrain" if has_model else "Train")
        for name in ("export", "export_selection"):
            self.commands[name].setEnabled(has_project and has_model and not busy)
        self.commands["cancel"].setEnabled(busy)
        self.commands["open"].setEnabled(not busy)
        for name in ("damaged", "undamaged", "clear", "undo", "redo", "load_model", "train_settings"):
            self.commands[name].setEnabled(has_project)
        self.update_hint()

    def update_hint(self) -> None:
        """Refresh the hint line (label → train → inspect → export) from the project's state."""
        counts = self.list_model.counts()
        project = self.project
        state = ProjectState(
            has_folder=project is not None, images=counts["total"], damaged=counts["damaged"],
            undamaged=counts["undamaged"], has_model=self.handle is not None,
            training=self.jobs.is_running("train"), exporting=self.jobs.is_running("export"),
            exported_to=project.get_setting("last_export_folder") if project is not None else None,
            min_per_class=session.MIN_PER_CLASS)
        self.hint.setText(next_step(state))

    def update_status(self) -> None:
        """Refresh the status bar's device, model, rule-set and segmenter fields."""
        self.device_label.setText(describe_device(self.device).upper())
        self.device_label.setToolTip("Where training and LRP run (--device to change)")
        handle = self.handle
        self.model_label.setText(handle.name if handle else "no model yet")
        self.model_label.setToolTip(
            f"The classifier in use: {handle.describe()}\n{handle.path or ''}".strip() if handle
            else "Label a few damaged and undamaged images (D / U), then Train (Ctrl+T)")
        # bare names: the status message needs the room, and the tooltips say what they are
        self.rule_label.setText(self.rule_set)
        self.segmenter_label.setText(self.segmenter)

    def show_status(self, message: str, timeout_ms: int = 0) -> None:
        """A message in the status bar (file names that are not UTF-8 shown with U+FFFD)."""
        self.statusBar().showMessage(display_text(message), timeout_ms)

    def error(self, title: str, message: str) -> None:
        """Show a readable error in a window-modal box (the event loop and the workers keep running)."""
        log.warning("%s: %s", title, message)
        self.last_error = (title, message)
        self.show_status(f"{title}: {message.splitlines()[0] if message else ''}", 15000)
        box = QMessageBox(QMessageBox.Icon.Warning, display_text(title), display_text(message),
                          QMessageBox.StandardButton.Ok, self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()

    # ================================================================= shutdown
    def shutdown(self) -> None:
        """Stop every background thread and close the project (safe to call twice)."""
        self.job_controller.shutdown()
        self.list_model.shutdown()
        self._close_project()

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt override
        if self.label_saver is not None and self.label_saver.flush():
            event.ignore()  # a label could not be saved: its error is shown; closing again quits without it
            return
        self.shutdown()
        super().closeEvent(event)
