"""The student segmenter in the window: the "Refine masks" job and the mask source switch.

"Refine masks" (Model menu) distils a student from the current classifier's explanations and the project's
image labels in the background (:func:`lrpseg.core.student.distil.distil_to_file`), with progress, time left
and Cancel in the status bar; the student file is written only on success, so a cancelled or failed run keeps
the previous student. The mask source switch (toolbar and Model menu) picks what the viewer, the threshold
slider, the histogram and the export show: the explanation's mask, or the refined (student) mask. The refined
analysis is the explanation's with the student's probability map as its score
(:func:`lrpseg.core.student.infer.refine`), computed on the analysis service's thread.

Every corrected mask of the project (:mod:`lrpseg.core.student.corrected`) is an exact target of the job,
weighted ``DistilConfig.corrected_weight``; the status text says how many were used, and a box names those
skipped (unreadable, or of another size than their image), whose files stay as they are.

The project remembers the student (setting ``student_path``); a student made for another classifier is
refused with the reason, and the source falls back to the explanation.
"""

from __future__ import annotations

import copy
import datetime as dt
import threading
import time
from dataclasses import fields
from pathlib import Path

from lrpseg.app import session
from lrpseg.core.labels import DAMAGED
from lrpseg.core.student.corrected import corrected_targets, merge_paths
from lrpseg.core.student.distil import DistilConfig, distil_to_file
from lrpseg.core.student.infer import refine
from lrpseg.core.student.store import Student, check_student_for, load_student_for
from lrpseg.core.workflow import student_source
from PySide6.QtCore import QObject
from PySide6.QtGui import QAction, QActionGroup
from PySide6.QtWidgets import QComboBox, QLabel, QToolBar

EXPLANATION, REFINED = "explanation", "refined"
SETTING_PATH, SETTING_CONFIG = "student_path", "distil_config"


def distil_config(project, device) -> DistilConfig:
    """:class:`DistilConfig` from the project setting ``distil_config`` (unknown keys ignored), on ``device``."""
    stored = project.get_setting(SETTING_CONFIG, {}) or {}
    known = {f.name for f in fields(DistilConfig)}
    config = DistilConfig(**{k: v for k, v in stored.items() if k in known})
    config.device = str(device)
    return config


def _clock(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


class RefineController(QObject):
    """Owns the window's student, its "Refine masks" job and the mask source switch (``window.refined``)."""

    def __init__(self, window) -> None:
        super().__init__(window)
        self.window = window
        self.student: Student | None = None
        self.student_path: Path | None = None
        self.source = EXPLANATION
        self.lock = threading.Lock()  # the student is used by the analysis service and export jobs
        self._started_at = 0.0
        self.refine_action = QAction("Re&fine masks (train student)", window)
        self.refine_action.setToolTip("Train a small segmenter on the explanation's masks and the image labels")
        self.refine_action.triggered.connect(self.start)
        self.source_combo = QComboBox()
        self.source_combo.addItems([EXPLANATION, REFINED])
        self.source_combo.setToolTip("Masks from the explanation (LRP + segmenter) or refined by the student")
        self.source_combo.currentTextChanged.connect(self.set_source)
        self.source_actions = QActionGroup(window)
        for name in (EXPLANATION, REFINED):
            action = QAction(f"Masks from the {name}" if name == EXPLANATION else "Refined masks (student)", window)
            action.setCheckable(True)
            action.setChecked(name == EXPLANATION)
            action.triggered.connect(lambda _=False, n=name: self.set_source(n))
            self.source_actions.addAction(action)
        self._install()

    def _install(self) -> None:
        w = self.window
        for action in w.menuBar().actions():
            if action.text().replace("&", "") == "Model" and action.menu() is not None:
                menu = action.menu()
                menu.addSeparator()
                menu.addAction(self.refine_action)
                for source_action in self.source_actions.actions():
                    menu.addAction(source_action)
        toolbar = w.findChild(QToolBar, "MainToolBar")
        if toolbar is not None:
            toolbar.addSeparator()
            toolbar.addWidget(QLabel(" Masks "))
            toolbar.addWidget(self.source_combo)
        w.jobs.changed.connect(self.update_actions)
        self.update_actions()

    # ----------------------------------------------------------------- state
    @property
    def refined(self) -> bool:
        """Whether the window shows the student's masks."""
        return self.source == REFINED and self.student is not None

    def source_key(self) -> str:
        """The mask source part of analysis keys: ``"explanation"`` or ``"student:<file stem>"``."""
        return student_source(self.student_path) if self.refined else EXPLANATION

    def update_actions(self) -> None:
        """Enable Refine with a model and no running job; the refined source once a student exists."""
        w = self.window
        self.refine_action.setEnabled(w.project is not None and w.handle is not None and not w.job_controller.busy())
        self.source_combo.model().item(1).setEnabled(self.student is not None)
        self.source_actions.actions()[1].setEnabled(self.student is not None)

    def set_source(self, source: str) -> None:
        """Show masks from ``source`` (``"explanation"`` or ``"refined"``)."""
        if source == REFINED and self.student is None:
            source = EXPLANATION
            self.window.show_status("No student yet: Model ▸ Refine masks trains one.", 8000)
        if source == self.source and self.source_combo.currentText() == source:
            return
        self.window.thresholds.flush()
        self.source = source
        self.source_combo.blockSignals(True)
        self.source_combo.setCurrentText(source)
        self.source_combo.blockSignals(False)
        self.source_actions.actions()[source == REFINED].setChecked(True)
        self.window.update_status()
        self.window.refresh_current()

    # ----------------------------------------------------------------- the student
    def project_opened(self) -> None:
        """Forget the previous folder's student; the open project's is loaded when its model is installed."""
        self.student, self.student_path, self.source = None, None, EXPLANATION
        self.source_combo.setCurrentText(EXPLANATION)
        self.update_actions()

    def model_installed(self, handle) -> None:
        """Keep (or load) the project's student if it was made for ``handle``'s classifier, else drop it."""
        w = self.window
        stored = w.project.get_setting(SETTING_PATH, None) if w.project is not None else None
        path = Path(stored) if stored else None
        if path is not None and not path.is_absolute():
            path = w.root / path
        student = self.student if self.student_path == path else None
        try:
            if student is None and path is not None and path.exists():
                student = load_student_for(path, handle.model, handle.path, w.device)
            elif student is not None:
                check_student_for(student, handle.model, handle.path, where=str(path))
        except Exception as error:  # not a student, or one of another classifier: said in the status bar
            w.show_status(f"Refined masks unavailable: {error}", 15000)
            student = None
        self.student, self.student_path = student, (path if student is not None else None)
        if student is None and self.source == REFINED:
            self.source = EXPLANATION
            self.source_combo.setCurrentText(EXPLANATION)
        self.update_actions()

    def refine(self, analysis, image):
        """The refined analysis of ``analysis`` (service or export thread)."""
        with self.lock:
            student = self.student
            if student is None:
                raise RuntimeError("no student is loaded")
            return refine(analysis, student, image)

    def export_student(self) -> tuple[Student, Path] | None:
        """(student, its file) when the export should write refined masks (the refined source is shown)."""
        return (self.student, self.student_path) if self.refined else None

    # ----------------------------------------------------------------- the job
    def start(self) -> bool:
        """Distil a student from the current model and labels in the background; return whether it started."""
        w = self.window
        jc = w.job_controller
        if w.project is None or w.handle is None or jc.busy():
            return False
        labels = {rel: lab for rel, lab in w.label_saver.queue.labels().items() if rel not in w.list_model.errors}
        if not any(label == DAMAGED for label in labels.values()):
            w.error("No damaged images", "Refining needs images labelled damaged: their explanations are the "
                    "targets. Press D on a few.")  # fmt: skip
            return False
        if not w.mask_editor.flush():
            w.error("Corrected masks not stored yet", "Saving the corrected masks takes too long; try again.")
            return False
        try:
            config = distil_config(w.project, w.device)
        except ValueError as error:  # a setting edited by hand in the project
            w.error("Cannot refine masks", str(error))
            return False
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        out = w.root / session.MODELS_DIR / f"student-{stamp}.safetensors"
        project, root, handle = w.project, w.root, w.handle
        usable = [rel for rel in w.list_model.paths if rel not in w.list_model.errors]
        with handle.lock:  # a private copy: the viewer keeps explaining with the shared model meanwhile
            model = copy.deepcopy(handle.model)

        def work(progress, cancel):
            corrected = corrected_targets(project, usable)  # on this thread: reads the mask files
            rels = merge_paths(labels, corrected)
            out.parent.mkdir(parents=True, exist_ok=True)
            student = distil_to_file(
                [root / rel for rel in rels], [labels.get(rel) for rel in rels], model, handle.path, config, out,
                exact=corrected.exact(root, config.corrected_weight),
                summary={"corrected_masks": corrected.summary(config.corrected_weight)}, progress=progress,
                cancel=cancel,
            )  # fmt: skip
            return out, student, corrected

        n_corrected = len(w.mask_editor.corrected)
        self._started_at = time.monotonic()
        jc._started(f"Refining masks: distilling a student from {len(labels)} labelled images and "
                    f"{n_corrected} corrected masks…")  # fmt: skip
        w.jobs.start(
            "refine", work, on_progress=self._progress, on_success=self._finished,
            on_failure=lambda msg: jc._failed("Refining failed", f"{msg}\n\nThe previous student is kept."),
            on_cancel=lambda: jc._ended("Refining cancelled; the previous student is kept."),
        )  # fmt: skip
        return True

    def _progress(self, p) -> None:
        jc = self.window.job_controller
        elapsed = time.monotonic() - self._started_at
        left = elapsed * (1 - p.fraction) / p.fraction if p.fraction > 0.01 else None
        jc.progress.setValue(round(1000 * p.fraction))
        jc.progress.setFormat(f"refine %p% · {_clock(left) + ' left' if left is not None else 'estimating'}")
        loss = f", loss {p.loss:.3f}" if p.loss is not None else ""
        self.window.show_status(f"Refining masks: {p.stage} {p.done}/{p.total}{loss}")

    def _finished(self, result) -> None:
        out, student, corrected = result
        w = self.window
        if w.project is None or w.root is None or not Path(out).is_relative_to(w.root):
            return  # another folder was opened meanwhile
        w.project.set_setting(SETTING_PATH, Path(out).relative_to(w.root).as_posix())
        with self.lock:
            self.student, self.student_path = student, Path(out)
        s = student.training
        if corrected.skipped:  # the box first, so the status line below stays the job's summary
            w.error("Corrected masks skipped", "The student was trained without these corrected masks (their "
                    "files are kept as they are):\n\n" + "\n".join(corrected.skipped))  # fmt: skip
        skipped = f", {len(corrected.skipped)} skipped" if corrected.skipped else ""
        w.job_controller._ended(
            f"Student ready ({s['seconds']:.0f} s, {len(corrected.masks)} corrected masks as exact targets"
            f"{skipped}, default threshold {student.threshold:.2f}); showing refined masks."
        )
        self.update_actions()
        self.source = EXPLANATION  # force the switch to refresh
        self.set_source(REFINED)
