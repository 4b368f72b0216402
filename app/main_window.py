"""The main window: image list | viewer | side panel, with menus, a toolbar and a status bar.

The window wires the pieces together and keeps the session state (open project, current image, loaded model);
every piece of work that can take longer than a frame runs elsewhere: decoding and LRP on the
:class:`~app.analysis.AnalysisService` thread, training and export as :class:`~app.workers.Job` threads.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

from PySide6.QtCore import QModelIndex, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSplitter,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from app import session
from app.analysis import AnalysisKey, AnalysisService, ByteLRU, ModelHandle
from app.image_list import FILTERS, SORT_MODES, ImageListModel, ImageListView, iter_rows
from app.side_panel import SidePanel
from app.viewer import ImageViewer
from app.workers import JobManager
from core.device import describe_device, resolve_device
from core.labels import DAMAGED, UNDAMAGED
from core.project import Project

log = logging.getLogger(__name__)

LOOKAHEAD = 3
THRESHOLD_SAVE_DELAY_MS = 400


class MainWindow(QMainWindow):
    """lrpseg's desktop window.

    Parameters
    ----------
    folder
        Image folder (= project) to open at start.
    device
        ``"auto"``, ``"cpu"`` or ``"cuda"``: where models train and explain.
    """

    current_changed = Signal(str)
    analysis_shown = Signal(object)

    def __init__(self, folder: str | Path | None = None, device: str = "auto") -> None:
        super().__init__()
        self.setWindowTitle("lrpseg")
        self.resize(1280, 800)
        self.device = resolve_device(device)
        self.project: Project | None = None
        self.root: Path | None = None
        self.handle: ModelHandle | None = None
        self.service: AnalysisService | None = None
        self.jobs = JobManager(self)
        self.images = ByteLRU(384 << 20)
        self.analyses = ByteLRU(768 << 20)
        self.current: str | None = None
        self.rule_set = session.DEFAULT_RULE_SET
        self.segmenter = session.DEFAULT_SEGMENTER
        self.auto_advance = True
        self.show_undamaged_masks = False
        self.last_error: tuple[str, str] | None = None
        self._pending_threshold: tuple[str, str, float] | None = None
        self._threshold_timer = QTimer(self)
        self._threshold_timer.setSingleShot(True)
        self._threshold_timer.setInterval(THRESHOLD_SAVE_DELAY_MS)
        self._threshold_timer.timeout.connect(self.flush_threshold)

        self._build_widgets()
        self._build_actions()
        self._build_status_bar()
        self.jobs.changed.connect(self._update_actions)
        self._update_actions()
        self._update_status()
        if folder is not None:
            QTimer.singleShot(0, lambda: self.open_folder(folder))

    # ================================================================= construction
    def _build_widgets(self) -> None:
        self.list_model = ImageListModel(self)
        self.list_view = ImageListView()
        self.list_view.setModel(self.list_model)
        self.list_view.selectionModel().currentRowChanged.connect(self._row_changed)
        self.sort_combo = QComboBox()
        for key, text in SORT_MODES.items():
            self.sort_combo.addItem(text, key)
        self.sort_combo.setToolTip("Order of the list (re-applied when you change it, not while you label)")
        self.filter_combo = QComboBox()
        for key, text in FILTERS.items():
            self.filter_combo.addItem(text, key)
        self.search = QLineEdit()
        self.search.setPlaceholderText("Filter by name…")
        self.search.setClearButtonEnabled(True)
        self.count_label = QLabel("")
        self.count_label.setObjectName("Muted")
        self.sort_combo.currentIndexChanged.connect(self._apply_view)
        self.filter_combo.currentIndexChanged.connect(self._apply_view)
        self.search.returnPressed.connect(self._apply_view)
        self.search.textChanged.connect(lambda text: text or self._apply_view())

        left = QWidget()
        left.setObjectName("ListPanel")
        box = QVBoxLayout(left)
        box.setContentsMargins(8, 8, 0, 8)
        row = QHBoxLayout()
        row.addWidget(self.sort_combo, 1)
        row.addWidget(self.filter_combo, 1)
        box.addLayout(row)
        box.addWidget(self.search)
        box.addWidget(self.list_view, 1)
        box.addWidget(self.count_label)

        self.viewer = ImageViewer()
        self.viewer.hovered.connect(self._hovered)
        self.panel = SidePanel(session.rule_set_choices(), session.segmenter_choices())
        self.panel.set_choice(self.panel.rule_set, self.rule_set)
        self.panel.set_choice(self.panel.segmenter, self.segmenter)
        self.panel.rule_set_changed.connect(self.set_rule_set)
        self.panel.segmenter_changed.connect(self.set_segmenter)
        self.panel.threshold_changed.connect(self.set_threshold)
        self.panel.threshold_reset.connect(self.reset_threshold)
        self.panel.heatmap_toggled.connect(self.viewer.set_heatmap_visible)
        self.panel.heatmap_opacity_changed.connect(self.viewer.set_heatmap_opacity)
        self.panel.mask_toggled.connect(self.viewer.set_mask_visible)
        self.panel.mask_opacity_changed.connect(self.viewer.set_mask_opacity)
        self.panel.mask_style_changed.connect(self.viewer.set_mask_style)
        scroll = QScrollArea()
        scroll.setWidget(self.panel)
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setMinimumWidth(300)

        splitter = QSplitter()
        splitter.addWidget(left)
        splitter.addWidget(self.viewer)
        splitter.addWidget(scroll)
        splitter.setStretchFactor(0, 0)
        splitter.setStretchFactor(1, 1)
        splitter.setStretchFactor(2, 0)
        splitter.setSizes([390, 590, 300])
        splitter.setChildrenCollapsible(False)
        self.setCentralWidget(splitter)

    def _action(
        self,
        text: str,
        shortcut: str | QKeySequence | None,
        slot,
        tip: str = "",
        checkable: bool = False,
        checked: bool = False,
    ) -> QAction:
        action = QAction(text, self)
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        keys = action.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
        action.setToolTip(
            f"{tip or text.replace('…', '').replace('&', '')}" + (f"  ({keys})" if keys else "")
        )
        action.setStatusTip(tip)
        if checkable:
            action.setCheckable(True)
            action.setChecked(checked)
            action.toggled.connect(slot)
        else:
            action.triggered.connect(slot)
        self.addAction(action)
        return action

    def _build_actions(self) -> None:
        a = self._action
        self.open_action = a(
            "&Open folder…",
            QKeySequence.StandardKey.Open,
            self.choose_folder,
            "Open a folder of images (its project lives in <folder>/.lrpseg)",
        )
        self.export_action = a(
            "&Export masks (all)…",
            "Ctrl+E",
            lambda: self.choose_export(False),
            "Write a mask per image with each image's threshold",
        )
        self.export_selection_action = a(
            "Export masks (&selection)…",
            "Ctrl+Shift+E",
            lambda: self.choose_export(True),
            "Export the selected images only",
        )
        self.quit_action = a("&Quit", QKeySequence.StandardKey.Quit, self.close)
        self.undo_action = a("&Undo label", "Ctrl+Z", self.undo)
        self.redo_action = a("&Redo label", "Ctrl+Shift+Z", self.redo)
        self.damaged_action = a("Label &damaged", "D", lambda: self.label_current(DAMAGED))
        self.undamaged_action = a("Label &undamaged", "U", lambda: self.label_current(UNDAMAGED))
        self.clear_action = a("&Clear label", "Backspace", lambda: self.label_current(None))
        self.advance_action = a(
            "&Auto-advance after labelling",
            None,
            self._set_auto_advance,
            "Move to the next image after D / U / Backspace",
            checkable=True,
            checked=True,
        )
        self.next_action = a("&Next image", "J", lambda: self.step(1))
        self.previous_action = a("&Previous image", "K", lambda: self.step(-1))
        self.train_action = a(
            "&Train model",
            "Ctrl+T",
            self.start_training,
            "Train the classifier from the current labels in the background",
        )
        self.cancel_action = a(
            "&Cancel job", "Esc", self.cancel_job, "Stop training or export; keep the old model"
        )
        self.load_model_action = a("&Load model…", None, self.choose_model, "Use a saved .safetensors model")
        self.heatmap_action = a(
            "Relevance &heatmap", "H", self.panel.heatmap_check.setChecked, checkable=True, checked=True
        )
        self.mask_action = a(
            "&Mask overlay", "M", self.panel.mask_check.setChecked, checkable=True, checked=True
        )
        self.outline_action = a(
            "Mask as &outline",
            "O",
            lambda on: self.panel.mask_style.setCurrentText("outline" if on else "fill"),
            checkable=True,
        )
        self.undamaged_masks_action = a(
            "Show masks of images classified &undamaged", None, self._set_show_undamaged, checkable=True
        )
        self.fit_action = a("&Fit image", "F", self.viewer.fit)
        self.reset_action = a("&Reset threshold", "R", self.reset_threshold)
        self.lower_action = a("Threshold −0.01", "[", lambda: self.nudge_threshold(-0.01))
        self.raise_action = a("Threshold +0.01", "]", lambda: self.nudge_threshold(0.01))
        self.shortcuts_action = a("&Keyboard shortcuts", "F1", self.show_shortcuts)
        self.panel.heatmap_check.toggled.connect(self.heatmap_action.setChecked)
        self.panel.mask_check.toggled.connect(self.mask_action.setChecked)
        self.panel.mask_style.currentTextChanged.connect(
            lambda s: self.outline_action.setChecked(s == "outline")
        )

        menus = self.menuBar()
        for title, actions in (
            (
                "&File",
                [
                    self.open_action,
                    None,
                    self.export_action,
                    self.export_selection_action,
                    None,
                    self.quit_action,
                ],
            ),
            ("&Edit", [self.undo_action, self.redo_action]),
            (
                "&Label",
                [
                    self.damaged_action,
                    self.undamaged_action,
                    self.clear_action,
                    None,
                    self.advance_action,
                    None,
                    self.next_action,
                    self.previous_action,
                ],
            ),
            ("&Model", [self.train_action, self.cancel_action, None, self.load_model_action]),
            (
                "&View",
                [
                    self.heatmap_action,
                    self.mask_action,
                    self.outline_action,
                    self.undamaged_masks_action,
                    None,
                    self.reset_action,
                    self.lower_action,
                    self.raise_action,
                    None,
                    self.fit_action,
                ],
            ),
            ("&Help", [self.shortcuts_action]),
        ):
            menu = menus.addMenu(title)
            for action in actions:
                menu.addSeparator() if action is None else menu.addAction(action)

        toolbar = QToolBar("Main")
        toolbar.setObjectName("MainToolBar")
        toolbar.setMovable(False)
        toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        for action in (
            self.open_action,
            None,
            self.damaged_action,
            self.undamaged_action,
            self.clear_action,
            None,
            self.undo_action,
            self.redo_action,
            None,
            self.train_action,
            self.export_action,
        ):
            toolbar.addSeparator() if action is None else toolbar.addAction(action)
        self.addToolBar(toolbar)
        toolbar.widgetForAction(self.train_action).setObjectName("PrimaryButton")
        toolbar.widgetForAction(self.damaged_action).setObjectName("DamagedButton")
        toolbar.widgetForAction(self.undamaged_action).setObjectName("UndamagedButton")

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.progress = QProgressBar()
        self.progress.setFixedWidth(220)
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(True)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the running job (Esc); the previous model stays")
        self.cancel_button.clicked.connect(self.cancel_job)
        self.device_label = QLabel()
        self.model_label = QLabel()
        self.rule_label = QLabel()
        self.segmenter_label = QLabel()
        for widget in (self.progress, self.cancel_button):
            bar.addPermanentWidget(widget)
            widget.hide()
        for widget in (self.device_label, self.model_label, self.rule_label, self.segmenter_label):
            widget.setObjectName("StatusField")
            bar.addPermanentWidget(widget)

    # ================================================================= folder
    def choose_folder(self) -> None:
        """Ask for a folder and open it."""
        folder = QFileDialog.getExistingDirectory(self, "Open image folder", str(self.root or Path.home()))
        if folder:
            self.open_folder(folder)

    def open_folder(self, folder: str | Path) -> bool:
        """Open ``folder`` as a project (creating ``.lrpseg`` on first use); return whether it worked."""
        folder = Path(folder).expanduser().resolve()
        if self.jobs.running_names():
            self.error("A job is running", "Cancel the running job before opening another folder.")
            return False
        try:
            project = Project.open(folder)
        except Exception as error:  # any failure to open is shown, the old project stays open
            self.error("Cannot open folder", f"{folder}\n\n{error}")
            return False
        self._close_project()
        self.project, self.root = project, folder
        self.rule_set = session.setting(
            project, "rule_set", session.DEFAULT_RULE_SET, session.rule_set_choices()
        )
        self.segmenter = session.setting(
            project, "segmenter", session.DEFAULT_SEGMENTER, session.segmenter_choices()
        )
        self.panel.set_choice(self.panel.rule_set, self.rule_set)
        self.panel.set_choice(self.panel.segmenter, self.segmenter)
        self.service = AnalysisService(folder, postprocess=session.distribution, parent=self)
        self.service.image_loaded.connect(self._image_loaded)
        self.service.analysed.connect(self._analysed)
        self.service.failed.connect(self._analysis_failed)
        self.service.unreadable.connect(self.list_model.set_error)
        self.service.predicted.connect(self._predicted)
        model_id = session.model_id(session.model_path(project, folder))
        probabilities = project.predictions(model_id) if model_id else {}
        self.list_model.set_images(folder, project.images(), project.labels(), probabilities)
        self.setWindowTitle(f"lrpseg — {folder}")
        self._apply_view()
        if self.list_model.rowCount():
            self.list_view.setCurrentIndex(self.list_model.index(0, 0))
        else:
            self.viewer.set_image(None, "No images in this folder")
        self._load_saved_model()
        self._update_counts()
        self._update_actions()
        self._update_status()
        return True

    def _close_project(self) -> None:
        self.flush_threshold()
        if self.service is not None:
            self.service.shutdown()
            self.service.deleteLater()
            self.service = None
        self.list_model.set_images(None, [], {}, {})
        self.images.clear()
        self.analyses.clear()
        self.handle = None
        self.current = None
        if self.project is not None:
            self.project.close()
            self.project = None

    def _apply_view(self, *_args) -> None:
        current = self.current
        self.list_model.apply_view(
            self.sort_combo.currentData(), self.filter_combo.currentData(), self.search.text()
        )
        row = self.list_model.row_of(current) if current else None
        if row is None and self.list_model.rowCount():
            row = 0
        if row is not None:
            self.list_view.setCurrentIndex(self.list_model.index(row, 0))
            self.list_view.scrollTo(self.list_model.index(row, 0))
        self._update_counts()

    def _update_counts(self) -> None:
        c = self.list_model.counts()
        shown = f"{c['shown']} of {c['total']}" if c["shown"] != c["total"] else f"{c['total']}"
        self.count_label.setText(
            f"{shown} images · {c['damaged']} damaged · {c['undamaged']} undamaged · "
            f"{c['unlabelled']} unlabelled"
        )

    # ================================================================= model
    def _load_saved_model(self) -> None:
        path = session.model_path(self.project, self.root)
        if path is None:
            return
        if not path.exists():
            self.statusBar().showMessage(f"Saved model {path} is missing; train a new one (Ctrl+T)", 10000)
            return
        device = self.device
        self.jobs.start(
            "load-model",
            lambda progress, cancel: session.load_model(path, device),
            on_success=self.install_model,
            on_failure=lambda msg: self.error("Cannot load the saved model", msg),
        )

    def choose_model(self) -> None:
        """Pick a checkpoint file and use it for this folder."""
        if self.project is None:
            return
        start = str(self.root / session.MODELS_DIR) if self.root else ""
        path, _ = QFileDialog.getOpenFileName(self, "Load model", start, "Models (*.safetensors)")
        if not path:
            return
        device = self.device
        self.jobs.start(
            "load-model",
            lambda progress, cancel: session.load_model(Path(path), device),
            on_success=lambda handle: self.install_model(handle, remember=True),
            on_failure=lambda msg: self.error("Cannot load model", msg),
        )

    def install_model(self, handle: ModelHandle, remember: bool = False) -> None:
        """Use ``handle`` from now on: drop old analyses, load its stored predictions, predict the rest."""
        if self.project is None:
            return
        if remember and handle.path is not None:
            self.project.model_path = handle.path
        if self.service is not None:
            self.service.cancel_model()
        self.handle = handle
        self.analyses.clear()
        self.list_model.set_probabilities(self.project.predictions(handle.model_id), replace=True)
        self._request_predictions()
        self._update_status()
        self._update_actions()
        if self.current is not None:
            self._show_current(self.current)

    def _request_predictions(self) -> None:
        if self.service is None or self.handle is None:
            return
        known = self.list_model.probabilities
        todo = [rel for rel in self.list_model.visible_paths() if rel not in known]
        todo += [rel for rel in self.list_model.paths if rel not in known and rel not in set(todo)]
        if todo:
            self.service.predict(todo, self.handle)

    def _predicted(self, model_id: str, probabilities: dict) -> None:
        if self.handle is None or model_id != self.handle.model_id or self.project is None:
            return
        try:
            for rel, p in probabilities.items():
                self.project.store_prediction(rel, model_id, p)
        except Exception as error:  # the list still shows them; only the cache is lost
            self.statusBar().showMessage(f"Could not store predictions: {error}", 8000)
        self.list_model.set_probabilities(probabilities)

    # ================================================================= current image
    def _row_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        rel = self.list_model.rel_at(current.row()) if current.isValid() else None
        if rel is not None and rel != self.current:
            self._show_current(rel)

    def select(self, rel: str) -> bool:
        """Make ``rel`` the current image (clearing filters that hide it)."""
        row = self.list_model.row_of(rel)
        if row is None:
            self.filter_combo.setCurrentIndex(0)
            self.search.clear()
            row = self.list_model.row_of(rel)
        if row is None:
            return False
        index = self.list_model.index(row, 0)
        self.list_view.setCurrentIndex(index)
        self.list_view.scrollTo(index)
        return True

    def step(self, delta: int) -> None:
        """Go ``delta`` rows down (or up) the list."""
        index = self.list_view.currentIndex()
        row = (index.row() if index.isValid() else -1) + delta
        if 0 <= row < self.list_model.rowCount():
            self.list_view.setCurrentIndex(self.list_model.index(row, 0))

    def key(self, rel: str) -> AnalysisKey | None:
        """The analysis key of ``rel`` under the current model and choices."""
        if self.handle is None:
            return None
        return AnalysisKey(rel, self.handle.model_id, self.rule_set, self.segmenter)

    def _show_current(self, rel: str) -> None:
        self.flush_threshold()
        self.current = rel
        self.current_changed.emit(rel)
        self._update_info()
        error = self.list_model.errors.get(rel)
        if error:
            self.viewer.set_image(None, "Unreadable image")
            self.panel.set_distribution(note=error)
            self.panel.set_threshold_enabled(False)
            return
        rgb = self.images.get(rel)
        if rgb is None:
            self.viewer.set_image(None, "Loading…")
            self.service.load_image(rel)
        else:
            self.viewer.set_image(rgb)
        self._show_analysis_or_request(rel)
        self._look_ahead()

    def _show_analysis_or_request(self, rel: str) -> None:
        key = self.key(rel)
        self.panel.set_threshold_enabled(False)
        if key is None:
            self.viewer.clear_overlays()
            self.panel.set_distribution(note="No model yet: label a few images (D / U), then Train (Ctrl+T).")
            return
        cached = self.analyses.get(key)
        if cached is not None:
            self._show_analysis(key, *cached)
        else:
            self.viewer.clear_overlays()
            self.panel.set_distribution(note="Explaining…")
            self.service.analyse(key, self.handle)

    def _look_ahead(self) -> None:
        if self.service is None or self.current is None:
            return
        row = self.list_model.row_of(self.current)
        if row is None:
            return
        upcoming = [
            rel for rel in iter_rows(self.list_model, row + 1, LOOKAHEAD) if rel not in self.list_model.errors
        ]
        loads = [rel for rel in upcoming if rel not in self.images]
        keys = [k for k in (self.key(rel) for rel in upcoming) if k is not None and k not in self.analyses]
        self.service.look_ahead(loads, keys, self.handle)

    def _image_loaded(self, rel: str, rgb) -> None:
        self.images.put(rel, rgb)
        if rel == self.current:
            self.viewer.set_image(rgb)
            key = self.key(rel)
            if key is not None and key in self.analyses:
                self._show_analysis(key, *self.analyses.get(key))

    def _analysed(self, key: AnalysisKey, analysis, dist) -> None:
        self.analyses.put(key, (analysis, dist))
        if (
            self.handle is not None
            and key.model_id == self.handle.model_id
            and key.rel not in self.list_model.probabilities
            and analysis.mode == "crop"
        ):
            self._predicted(key.model_id, {key.rel: analysis.probability})
        if self.current is not None and key == self.key(self.current):
            self._show_analysis(key, analysis, dist)

    def _analysis_failed(self, rel: str, message: str) -> None:
        if rel == self.current:
            self.viewer.clear_overlays()
            if rel in self.list_model.errors:
                self.viewer.set_image(None, "Unreadable image")
            self.panel.set_distribution(note=message)
            self.statusBar().showMessage(message, 10000)
        self._update_info()

    def current_analysis(self):
        """The :class:`core.pipeline.Analysis` on screen, or ``None``."""
        key = self.key(self.current) if self.current else None
        cached = self.analyses.get(key) if key else None
        return cached[0] if cached else None

    def _show_analysis(self, key: AnalysisKey, analysis, dist: session.Distribution | None) -> None:
        if self.images.get(key.rel) is None:
            return  # shown once the image itself arrives
        threshold, overridden = self.threshold_for(key.rel, analysis)
        self.viewer.set_relevance(analysis.relevance, analysis.valid)
        self.viewer.set_score(
            analysis.segmentation.score, threshold, enabled=analysis.damaged or self.show_undamaged_masks
        )
        self.panel.set_threshold_enabled(True)
        self.panel.show_threshold(threshold, analysis.threshold, overridden)
        dist = dist or session.Distribution()
        note = dist.note
        if not analysis.damaged and not self.show_undamaged_masks:
            note = (note + " " if note else "") + "Classified undamaged: no mask (View menu shows it anyway)."
        self.panel.set_distribution(
            dist.score_edges,
            dist.score_counts,
            dist.fit_edges,
            dist.fit_density,
            dist.curves,
            dist.domain,
            note,
        )
        self._update_info(analysis)
        self.analysis_shown.emit(analysis)

    def _update_info(self, analysis=None) -> None:
        rel = self.current
        if rel is None:
            self.panel.set_image_info("No image", "")
            return
        label = self.list_model.labels.get(rel, "unlabelled")
        p = self.list_model.probabilities.get(rel)
        parts = [f"Label: <b>{label}</b>"]
        if rel in self.list_model.errors:
            parts.append("<span style='color:#ff7b72'>unreadable</span>")
        elif p is not None:
            parts.append(f"P(damaged) = {p:.3f}")
        elif self.handle is None:
            parts.append("no model yet")
        if analysis is not None:
            parts.append(f"{analysis.mode}, {analysis.relevance.shape[1]}×{analysis.relevance.shape[0]} px")
        self.panel.set_image_info(rel, " · ".join(parts))

    def _hovered(self, x: int, y: int) -> None:
        if x < 0 or self.current is None:
            self.statusBar().clearMessage()
            return
        analysis = self.current_analysis()
        if analysis is None:
            self.statusBar().showMessage(f"x {x}  y {y}")
        else:
            self.statusBar().showMessage(
                f"x {x}  y {y}   relevance {analysis.relevance[y, x]:+.3g}   "
                f"score {analysis.segmentation.score[y, x]:.3f}"
            )

    # ================================================================= labels
    def _set_auto_advance(self, on: bool) -> None:
        self.auto_advance = bool(on)

    def label_current(self, label: str | None) -> None:
        """Store ``label`` (or clear it) for the current image at once; move on when auto-advance is on."""
        if self.project is None or self.current is None:
            return
        rel = self.current
        try:
            self.project.set_label(rel, label)
        except Exception as error:
            self.error("Label not saved", f"{rel}: {error}")
            return
        self.list_model.set_label(rel, self.project.label(rel))
        self._update_counts()
        self._update_info()
        if self.auto_advance:
            self.step(1)

    def undo(self) -> None:
        """Undo the last label change and show the image it touched."""
        self._history(self.project.undo if self.project else None, "Nothing to undo")

    def redo(self) -> None:
        """Redo the last undone label change."""
        self._history(self.project.redo if self.project else None, "Nothing to redo")

    def _history(self, operation, empty: str) -> None:
        if operation is None:
            return
        try:
            rel = operation()
        except Exception as error:
            self.error("Undo/redo failed", str(error))
            return
        if rel is None:
            self.statusBar().showMessage(empty, 3000)
            return
        self.list_model.set_label(rel, self.project.label(rel))
        self._update_counts()
        self.select(rel)
        self._update_info()

    # ================================================================= choices and threshold
    def set_rule_set(self, name: str) -> None:
        """Explain with rule set ``name`` from now on."""
        self.rule_set = name
        self._choice_changed("rule_set", name)

    def set_segmenter(self, name: str) -> None:
        """Segment with ``name`` from now on."""
        self.segmenter = name
        self._choice_changed("segmenter", name)

    def _choice_changed(self, setting: str, value: str) -> None:
        self.flush_threshold()
        if self.project is not None:
            self.project.set_setting(setting, value)
        self._update_status()
        if self.current is not None and self.current not in self.list_model.errors:
            self._show_analysis_or_request(self.current)
            self._look_ahead()

    def override_key(self) -> str:
        """Name under which per-image thresholds are remembered: they belong to a rule set and segmenter."""
        return session.override_key(self.rule_set, self.segmenter)

    def threshold_for(self, rel: str, analysis) -> tuple[float, bool]:
        """The threshold in use for ``rel`` and whether it is a per-image override."""
        if self._pending_threshold and self._pending_threshold[:2] == (rel, self.override_key()):
            return self._pending_threshold[2], True
        value = self.project.threshold_override(rel, self.override_key()) if self.project else None
        if value is None:
            return float(analysis.threshold), False
        return float(value), True

    def set_threshold(self, value: float) -> None:
        """Move the mask threshold of the current image (saved shortly after the slider stops)."""
        self.viewer.set_threshold(value)
        if self.current is None:
            return
        self._pending_threshold = (self.current, self.override_key(), float(value))
        self._threshold_timer.start()

    def nudge_threshold(self, delta: float) -> None:
        """Move the threshold by ``delta`` (keys [ and ])."""
        if self.panel.slider.isEnabled():
            self.panel.slider.set_threshold(self.panel.threshold() + delta)

    def flush_threshold(self) -> None:
        """Write a pending per-image threshold to the project now."""
        self._threshold_timer.stop()
        pending, self._pending_threshold = self._pending_threshold, None
        if pending is None or self.project is None:
            return
        rel, key, value = pending
        try:
            self.project.set_threshold_override(rel, key, value)
        except Exception as error:
            self.statusBar().showMessage(f"Threshold for {rel} not saved: {error}", 8000)
        if rel == self.current:
            analysis = self.current_analysis()
            if analysis is not None:
                self.panel.show_threshold(value, analysis.threshold, True)

    def reset_threshold(self) -> None:
        """Forget the current image's threshold and use the segmenter's default."""
        if self.current is None or self.project is None:
            return
        self._threshold_timer.stop()
        self._pending_threshold = None
        self.project.set_threshold_override(self.current, self.override_key(), None)
        analysis = self.current_analysis()
        if analysis is not None:
            self.viewer.set_threshold(analysis.threshold)
            self.panel.show_threshold(analysis.threshold, analysis.threshold, False)

    def _set_show_undamaged(self, on: bool) -> None:
        self.show_undamaged_masks = bool(on)
        if self.current is not None:
            self._show_analysis_or_request(self.current)

    # ================================================================= jobs
    def start_training(self) -> bool:
        """Train a new model from the current labels in the background; return whether it started."""
        if self.project is None:
            self.error("No folder open", "Open a folder of images first (Ctrl+O).")
            return False
        if self.jobs.is_running("train") or self.jobs.is_running("export"):
            return False
        labels = {
            rel: label for rel, label in self.project.labels().items() if rel not in self.list_model.errors
        }
        problem = session.training_problem(labels)
        if problem:
            self.error("Not enough labels", problem)
            return False
        config = session.train_config(self.project, self.device)
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        out = self.root / session.MODELS_DIR / f"model-{stamp}.safetensors"
        rels = sorted(labels)
        paths = [self.root / rel for rel in rels]
        values = [labels[rel] for rel in rels]
        device = self.device
        self._job_started(f"Training on {len(rels)} images…")
        self.jobs.start(
            "train",
            lambda progress, cancel: session.train(paths, values, config, out, device, progress, cancel),
            on_progress=self._train_progress,
            on_success=self._trained,
            on_failure=lambda msg: self._job_failed(
                "Training failed", msg + "\n\nThe previous model is kept."
            ),
            on_cancel=lambda: self._job_ended("Training cancelled; the previous model is kept."),
        )
        return True

    def _train_progress(self, p) -> None:
        done = ((p.epoch - 1) * p.steps + p.step) / max(1, p.epochs * p.steps)
        self.progress.setValue(round(1000 * done))
        text = f"Training: epoch {p.epoch}/{p.epochs}, step {p.step}/{p.steps}, loss {p.loss:.3f}"
        if p.val_balanced_accuracy is not None:
            text += f", validation balanced accuracy {p.val_balanced_accuracy:.2f}"
        self.progress.setFormat(f"epoch {p.epoch}/{p.epochs} · %p%")
        self.statusBar().showMessage(text)

    def _trained(self, handle: ModelHandle) -> None:
        self.install_model(handle, remember=True)
        summary = handle.metadata.get("training", {})
        bacc = summary.get("val_balanced_accuracy")
        extra = f", validation balanced accuracy {bacc:.2f}" if isinstance(bacc, float) else ""
        self._job_ended(f"Trained {handle.model_id}{extra}.")

    def choose_export(self, selection_only: bool) -> None:
        """Ask for an output folder and export masks."""
        if self.project is None or self.handle is None:
            self.error("No model", "Train a model (Ctrl+T) before exporting masks.")
            return
        out = QFileDialog.getExistingDirectory(self, "Export masks to", str(self.root / "masks"))
        if out:
            self.export_masks(Path(out), selection_only)

    def export_masks(self, out_dir: Path, selection_only: bool = False, overwrite: bool = True) -> bool:
        """Write masks (each image's own threshold) and a report to ``out_dir`` in the background."""
        if (
            self.project is None
            or self.handle is None
            or self.jobs.is_running("export")
            or self.jobs.is_running("train")
        ):
            return False
        self.flush_threshold()
        rels = self.list_view.selected_paths() if selection_only else list(self.list_model.paths)
        if not rels:
            self.error("Nothing to export", "Select the images to export first.")
            return False
        key = self.override_key()
        thresholds = {rel: t for rel in rels if (t := self.project.threshold_override(rel, key)) is not None}
        cached = {k.rel: a for k, (a, _) in self.analyses.items() if k == self.key(k.rel)}
        plan = session.ExportPlan(
            root=self.root,
            rels=rels,
            out_dir=Path(out_dir),
            handle=self.handle,
            rule_set=self.rule_set,
            segmenter=self.segmenter,
            thresholds=thresholds,
            cached=cached,
            overwrite=overwrite,
        )
        self._job_started(f"Exporting {len(rels)} masks…")
        self.jobs.start(
            "export",
            plan.run,
            on_progress=self._export_progress,
            on_success=lambda summary: self._job_ended(session.describe_export(summary, out_dir)),
            on_failure=lambda msg: self._job_failed("Export failed", msg),
            on_cancel=lambda: self._job_ended("Export cancelled; masks written so far are kept."),
        )
        return True

    def _export_progress(self, p) -> None:
        done, total, rel = p
        self.progress.setValue(round(1000 * done / max(1, total)))
        self.progress.setFormat(f"export {done}/{total}")
        self.statusBar().showMessage(f"Exporting {rel}")

    def cancel_job(self) -> None:
        """Cancel training or export."""
        for name in ("train", "export"):
            if self.jobs.is_running(name):
                self.jobs.cancel(name)
                self.statusBar().showMessage(f"Cancelling {name}…")

    def _job_started(self, message: str) -> None:
        self.progress.setValue(0)
        self.progress.setFormat("%p%")
        self.progress.show()
        self.cancel_button.show()
        self.statusBar().showMessage(message)

    def _job_ended(self, message: str) -> None:
        self.progress.hide()
        self.cancel_button.hide()
        self.statusBar().showMessage(message, 15000)

    def _job_failed(self, title: str, message: str) -> None:
        self._job_ended(title)
        self.error(title, message)

    # ================================================================= status
    def _update_actions(self) -> None:
        busy = self.jobs.is_running("train") or self.jobs.is_running("export")
        has_project = self.project is not None
        self.train_action.setEnabled(has_project and not busy)
        self.export_action.setEnabled(has_project and self.handle is not None and not busy)
        self.export_selection_action.setEnabled(has_project and self.handle is not None and not busy)
        self.cancel_action.setEnabled(busy)
        self.open_action.setEnabled(not busy)
        for action in (
            self.damaged_action,
            self.undamaged_action,
            self.clear_action,
            self.undo_action,
            self.redo_action,
            self.load_model_action,
        ):
            action.setEnabled(has_project)
        self.train_action.setText("Retrain model" if self.handle is not None else "Train model")

    def _update_status(self) -> None:
        self.device_label.setText(f"device {describe_device(self.device)}")
        self.model_label.setText(
            f"model {self.handle.describe()}" if self.handle else "no model: label, then Train (Ctrl+T)"
        )
        self.rule_label.setText(f"rules {self.rule_set}")
        self.segmenter_label.setText(f"segmenter {self.segmenter}")

    def error(self, title: str, message: str) -> None:
        """Show a readable error without blocking background work (non-modal in tests, modal otherwise)."""
        log.warning("%s: %s", title, message)
        self.statusBar().showMessage(f"{title}: {message.splitlines()[0] if message else ''}", 15000)
        box = QMessageBox(QMessageBox.Icon.Warning, title, message, QMessageBox.StandardButton.Ok, self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.last_error = (title, message)
        box.open()

    def show_shortcuts(self) -> None:
        """List the keyboard shortcuts."""
        rows = [
            (a.text().replace("&", ""), a.shortcut().toString(QKeySequence.SequenceFormat.NativeText))
            for a in self.actions()
            if not a.shortcut().isEmpty()
        ]
        text = "<table>" + "".join(f"<tr><td><b>{k}</b>&nbsp;&nbsp;</td><td>{t}</td></tr>" for t, k in rows)
        QMessageBox.information(self, "Keyboard shortcuts", text + "</table>")

    # ================================================================= shutdown
    def shutdown(self) -> None:
        """Stop every background thread and close the project (idempotent)."""
        self.jobs.shutdown()
        self.list_model.shutdown()
        self._close_project()

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt override
        if self.jobs.running_names():
            self.statusBar().showMessage("Stopping background jobs…")
        self.shutdown()
        super().closeEvent(event)
