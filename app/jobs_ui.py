"""Training and export as background jobs, with the status bar's progress bar and Cancel button.

A job gets everything it needs when it starts (labels, thresholds, the model handle), so the user can keep
labelling and browsing while it runs. Training writes its checkpoint only on success, so a cancelled or failed
run leaves the previous model in place; an export writes each file atomically, so a cancelled export leaves
complete masks only.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

from lrpseg.app import session
from lrpseg.app.export_dialog import ExportDialog
from lrpseg.app.workers import JobManager
from lrpseg.core.adoption import Verdict, record_model
from lrpseg.core.labels import DAMAGED, UNDAMAGED
from lrpseg.core.train import FEW_LABELS
from PySide6.QtCore import QObject, Qt
from PySide6.QtWidgets import QMessageBox, QProgressBar, QPushButton

LONG_JOBS = ("train", "export", "refine")


def new_model_path(folder: Path) -> Path:
    """``folder/model-<date>-<time>.safetensors``, with a counter when a model of that second exists."""
    stem = f"model-{dt.datetime.now():%Y%m%d-%H%M%S}"
    path, count = folder / f"{stem}.safetensors", 1
    while path.exists():
        count += 1
        path = folder / f"{stem}-{count}.safetensors"
    return path


def time_left_text(seconds: float) -> str:
    """A rounded duration for the status bar: "8 s", "40 s", "3 min", "1 h 5 min"."""
    if seconds < 60:
        return f"{round(seconds / 10) * 10 if seconds >= 10 else max(1, round(seconds))} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


def offer_use_anyway(parent, verdict: Verdict, has_current: bool, use: Callable[[], None]) -> QMessageBox:
    """Say why the new model was not adopted (both figures) and offer "Use anyway" (which calls ``use``).

    The box is window-modal but does not block the event loop, so labelling and browsing go on behind it.
    """
    box = QMessageBox(parent)
    box.setObjectName("NotAdoptedBox")
    box.setIcon(QMessageBox.Icon.Warning)
    box.setWindowTitle("New model not adopted")
    keep = "The current model stays in use." if has_current else "No model is in use yet."
    box.setText(f"The new model was not adopted: {verdict.reason}.\n\n{keep} The new model is kept in "
                "Model ▸ Model history, so you can switch to it later.")
    use_button = box.addButton("Use anyway", QMessageBox.ButtonRole.AcceptRole)
    box.addButton("Keep current" if has_current else "Don't use it", QMessageBox.ButtonRole.RejectRole)
    box.buttonClicked.connect(lambda button: use() if button is use_button else None)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.open()
    return box


class JobController(QObject):
    """Starts, follows and cancels the window's long jobs."""

    def __init__(self, window) -> None:
        super().__init__(window)
        self.window = window
        self.jobs = JobManager(self)
        self.progress = QProgressBar()
        self.progress.setFixedWidth(180)
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(True)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the running job (Esc); the model in use stays")
        self.cancel_button.clicked.connect(self.cancel)
        for widget in (self.progress, self.cancel_button):
            window.statusBar().addPermanentWidget(widget)
            widget.hide()

    def busy(self) -> bool:
        """Whether training or an export runs."""
        return any(self.jobs.is_running(name) for name in LONG_JOBS)

    # ----------------------------------------------------------------- training
    def start_training(self) -> bool:
        """Train a new model from the current labels in the background; return whether it started."""
        w = self.window
        if w.project is None:
            w.error("No folder open", "Open a folder of images first (Ctrl+O).")
            return False
        if self.busy():
            return False
        labels = {rel: lab for rel, lab in w.label_saver.queue.labels().items() if rel not in w.list_model.errors}
        problem = session.training_problem(labels)
        if problem:
            w.error("Not enough labels", problem)
            return False
        try:
            config = session.train_config(w.project, w.root, w.device)
        except ValueError as error:
            w.error("Training settings", f"The folder's stored training settings cannot be used: {error}.\n\n"
                    "Model → Training settings…, then OK, stores valid ones.")
            return False
        out = new_model_path(w.root / session.MODELS_DIR)
        rels = sorted(labels)
        paths, values, device = [w.root / rel for rel in rels], [labels[rel] for rel in rels], w.device
        current = w.handle.path if w.handle is not None else None
        project = w.project

        def work(progress, cancel):
            return session.train(paths, values, config, out, device, progress, cancel, current, names=rels)

        few = [f"{values.count(name)} {name}" for name in (DAMAGED, UNDAMAGED) if values.count(name) < FEW_LABELS]
        self._started(f"Training on {len(rels)} labelled images" + (f" (few: {', '.join(few)})…" if few else "…"))
        self.jobs.start(
            "train", work, on_progress=self._train_progress,
            on_success=lambda outcome: self._trained(outcome, project),
            on_failure=lambda msg: self._failed("Training failed", f"{msg}\n\n{self._model_kept()}"),
            on_cancel=lambda: self._ended(f"Training cancelled. {self._model_kept()}"),
        )
        return True

    def _model_kept(self) -> str:
        """What a failed or cancelled training leaves: the model in use, or none."""
        handle = self.window.handle
        return f"Still using {handle.name}." if handle is not None else "There is no model yet."

    def _train_progress(self, p) -> None:
        done = ((p.epoch - 1) * p.steps + p.step) / max(1, p.epochs * p.steps)
        self.progress.setValue(round(1000 * done))
        left = "" if p.seconds_left is None else f" · ≤{time_left_text(p.seconds_left)}"
        self.progress.setFormat(f"epoch {p.epoch}/{p.epochs}{left}")
        self.progress.setToolTip("Epochs done, and the time left at most (early stopping may end sooner)")
        text = f"Training: epoch {p.epoch}/{p.epochs}, step {p.step}/{p.steps}, loss {p.loss:.3f}"
        if p.val_balanced_accuracy is not None:
            text += f", validation balanced accuracy {p.val_balanced_accuracy:.2f}"
        self.window.show_status(text)

    def _trained(self, outcome: session.TrainOutcome, project) -> None:
        """Adopt the new model when it is better; otherwise keep the current one and offer "Use anyway"."""
        w, handle, verdict = self.window, outcome.handle, outcome.verdict
        if w.project is not project:  # another folder was opened meanwhile
            self._ended("Training finished for a folder that is no longer open.")
            return
        record_model(project, handle.path, handle.metadata.get("training", {}), adopted=verdict.adopt)
        if verdict.adopt:
            w.models.install(handle, remember=True)
            self._ended(f"New model in use: {verdict.reason}.")
            return
        self._ended(f"Kept the current model: {verdict.reason}." if w.handle else f"Model not used: {verdict.reason}.")

        def use_anyway() -> None:
            if w.project is project:
                w.models.install(handle, remember=True)
                w.show_status(f"Using the new model anyway ({handle.name}).", 8000)

        offer_use_anyway(w, verdict, w.handle is not None, use_anyway)

    # ----------------------------------------------------------------- export
    def choose_export(self, selection_only: bool) -> None:
        """Ask for an output folder, then export."""
        w = self.window
        if w.project is None or w.handle is None:
            w.error("No model", "Train a model (Ctrl+T) before exporting masks.")
            return
        count = len(w.list_view.selected_paths()) if selection_only else len(w.list_model.paths)
        last = w.project.get_setting("last_export_folder")
        suggested = Path(last) if last else session.suggested_export_folder(w.root)
        dialog = ExportDialog(w.root, count, suggested, w)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.accepted.connect(
            lambda: self.export_masks(dialog.folder, selection_only, overwrite=dialog.overwrite.isChecked()))
        dialog.open()

    def export_masks(self, out_dir: Path, selection_only: bool = False, overwrite: bool = False) -> bool:
        """Write masks (each image's own threshold) and a report to ``out_dir`` in the background; existing files
        are kept unless ``overwrite``."""
        w = self.window
        if w.project is None or w.handle is None or self.busy():
            return False
        w.thresholds.flush()
        if not w.mask_editor.flush():
            w.error("Corrected masks not stored yet", "Saving the corrected masks takes too long; try again.")
            return False
        rels = w.list_view.selected_paths() if selection_only else list(w.list_model.paths)
        if not rels:
            w.error("Nothing to export", "Select the images to export first.")
            return False
        cached = {k.rel: a for k, (a, _) in w.analyses.items() if k == w.key(k.rel)}
        student = w.refined.export_student()
        plan = session.ExportPlan(
            project=w.project, rels=rels, out_dir=Path(out_dir), handle=w.handle, rule_set=w.rule_set,
            segmenter=w.segmenter, cached=cached, overwrite=overwrite, student=student,
        )
        self._started(f"Exporting {len(rels)} masks…")
        self.jobs.start(
            "export", plan.run, on_progress=self._export_progress,
            on_success=lambda summary: self._exported(summary, Path(out_dir)),
            on_failure=lambda msg: self._failed("Export failed", msg),
            on_cancel=lambda: self._ended("Export cancelled; the masks written so far are complete."),
        )
        return True

    def _exported(self, summary: dict, out_dir: Path) -> None:
        w = self.window
        if w.project is not None:
            w.project.set_setting("last_export_folder", str(out_dir))
        self._ended(session.describe_export(summary, out_dir))
        w.update_hint()

    def _export_progress(self, p) -> None:
        done, total, rel = p
        self.progress.setValue(round(1000 * done / max(1, total)))
        self.progress.setFormat(f"export {done}/{total}")
        self.window.show_status(f"Exporting {rel}")

    # ----------------------------------------------------------------- common
    def cancel(self) -> None:
        """Cancel training or export (the job stops at its next step)."""
        for name in LONG_JOBS:
            if self.jobs.is_running(name):
                self.jobs.cancel(name)
                self.window.show_status(f"Cancelling {name}…")

    def _started(self, message: str) -> None:
        self.progress.setValue(0)
        self.progress.setFormat("%p%")
        self.progress.show()
        self.cancel_button.show()
        self.window.show_status(message)

    def _ended(self, message: str) -> None:
        self.progress.hide()
        self.cancel_button.hide()
        self.window.show_status(message, 15000)

    def _failed(self, title: str, message: str) -> None:
        self._ended(title)
        self.window.error(title, message)

    def shutdown(self) -> bool:
        """Cancel every job and wait for its thread."""
        return self.jobs.shutdown()
