"""Model handling for the main window: load the project's saved model, pick another, install a new one.

:class:`ModelController` is owned by :class:`app.main_window.MainWindow` (``window.models``); it reads the
window's open project, analysis service, list and jobs, and changes only the window's model handle.
"""

from __future__ import annotations

from pathlib import Path

from lrpseg.app import session
from lrpseg.app.analysis import ModelHandle
from lrpseg.core.adoption import model_history
from PySide6.QtCore import QObject
from PySide6.QtWidgets import QFileDialog, QMenu


class ModelController(QObject):
    """Loading and installing classifiers for one window.

    Parameters
    ----------
    window
        The :class:`~app.main_window.MainWindow` whose model this controller manages.
    """

    def __init__(self, window) -> None:
        super().__init__(window)
        self.window = window

    def load_saved(self) -> None:
        """Load the open project's remembered model in the background (a missing file is only reported)."""
        path = self.window.project.model_path
        if path is None:
            return
        if not path.exists():
            self.window.show_status(f"Saved model {path} is missing; train a new one (Ctrl+T)", 10000)
            return
        self.load(path, remember=False, title="Cannot load the saved model")

    def choose(self) -> None:
        """Pick a checkpoint file and use it for this folder."""
        w = self.window
        if w.project is None:
            return
        path, _ = QFileDialog.getOpenFileName(w, "Load model", str(w.root / session.MODELS_DIR),
                                              "Models (*.safetensors)")
        if path:
            self.load(Path(path), remember=True, title="Cannot load model")

    def load(self, path: Path, remember: bool, title: str) -> None:
        """Load ``path`` on a worker and install it; a failure shows ``title`` with the reason."""
        w = self.window
        device, project = w.device, w.project
        if w.jobs.is_running("load-model"):
            return

        def loaded(handle: ModelHandle) -> None:
            if w.project is project:  # not if another folder was opened meanwhile
                self.install(handle, remember=remember)

        w.jobs.start("load-model", lambda progress, cancel: session.load_model(path, device),
                     on_success=loaded, on_failure=lambda msg: w.error(title, msg))

    def install(self, handle: ModelHandle, remember: bool = False) -> None:
        """Use ``handle`` from now on: drop old analyses, show its stored predictions, predict the rest."""
        w = self.window
        if w.project is None:
            return
        if remember and handle.path is not None:
            w.project.model_path = handle.path
        if not remember and handle.path is not None and w.project.model_path == handle.path:
            session.adopt_unkeyed_thresholds(w.project, handle.model_id)  # the project's own model
        if w.service is not None:
            w.service.cancel_model()
        w.handle = handle
        w.list_model.set_in_sample(handle.metadata.get("training", {}).get("trained_on", []))
        w.refined.model_installed(handle)
        w.analyses.clear()
        w.list_model.set_probabilities(w.project.predictions(handle.model_id), replace=True)
        known = w.list_model.probabilities
        todo = list(dict.fromkeys(r for r in w.list_model.visible_paths() + w.list_model.paths
                                  if r not in known))
        if todo and w.service is not None:
            w.service.predict(todo, handle)
        w.update_status()
        w.update_actions()
        if w.current is not None:
            w.show_current(w.current)

    def attach_history_menu(self, menu: QMenu) -> QMenu:
        """Add "Model history" to ``menu``: every trained model of the project, one click to switch to it."""
        history = menu.addMenu("Model &history")
        history.setToolTipsVisible(True)
        history.aboutToShow.connect(lambda: self._fill_history(history))
        return history

    def _fill_history(self, menu: QMenu) -> None:
        w = self.window
        menu.clear()
        records = list(reversed(model_history(w.project))) if w.project is not None else []
        if not records:
            menu.addAction("No trained models yet").setEnabled(False)
            return
        current = w.handle.path.resolve() if w.handle is not None and w.handle.path is not None else None
        for record in records:
            path = Path(record.path) if Path(record.path).is_absolute() else w.root / record.path
            action = menu.addAction(record.describe() + ("" if record.adopted else " · not adopted"))
            action.setCheckable(True)
            action.setChecked(current is not None and path.resolve() == current)
            action.setEnabled(path.exists())
            action.setToolTip(str(path) if path.exists() else f"{path} is missing")
            action.triggered.connect(lambda _=False, p=path: self.load(p, remember=True, title="Cannot load model"))

    def predicted(self, model_id: str, probabilities: dict) -> None:
        """Store and show probabilities the service computed for ``model_id`` (ignored for an older model)."""
        w = self.window
        if w.handle is None or model_id != w.handle.model_id or w.project is None:
            return
        try:
            for rel, p in probabilities.items():
                w.project.store_prediction(rel, model_id, p)
        except Exception as error:  # the list still shows them; only the project cache misses them
            w.show_status(f"Could not store predictions: {error}", 8000)
        w.list_model.set_probabilities(probabilities)
        if w.current in probabilities:
            w.update_info(w.current_analysis())
