"""The main window's model handling: load the project's saved model, pick another, install a new one.

A mixin of :class:`app.main_window.MainWindow` (it uses the window's project, service, list and jobs); kept apart
so each file stays one job.
"""

from __future__ import annotations

from pathlib import Path

from lrpseg.app import session
from lrpseg.app.analysis import ModelHandle
from PySide6.QtWidgets import QFileDialog


class ModelMixin:
    """Loading and installing classifiers."""

    def _load_saved_model(self) -> None:
        path = self.project.model_path
        if path is None:
            return
        if not path.exists():
            self.show_status(f"Saved model {path} is missing; train a new one (Ctrl+T)", 10000)
            return
        self._load_model(path, remember=False, title="Cannot load the saved model")

    def choose_model(self) -> None:
        """Pick a checkpoint file and use it for this folder."""
        if self.project is None:
            return
        path, _ = QFileDialog.getOpenFileName(self, "Load model", str(self.root / session.MODELS_DIR),
                                              "Models (*.safetensors)")
        if path:
            self._load_model(Path(path), remember=True, title="Cannot load model")

    def _load_model(self, path: Path, remember: bool, title: str) -> None:
        device, project = self.device, self.project
        if self.jobs.is_running("load-model"):
            return

        def loaded(handle: ModelHandle) -> None:
            if self.project is project:  # not if another folder was opened meanwhile
                self.install_model(handle, remember=remember)

        self.jobs.start("load-model", lambda progress, cancel: session.load_model(path, device),
                        on_success=loaded, on_failure=lambda msg: self.error(title, msg))

    def install_model(self, handle: ModelHandle, remember: bool = False) -> None:
        """Use ``handle`` from now on: drop old analyses, show its stored predictions, predict the rest."""
        if self.project is None:
            return
        if remember and handle.path is not None:
            self.project.model_path = handle.path
        if self.service is not None:
            self.service.cancel_model()
        self.handle = handle
        self.analyses.clear()
        self.list_model.set_probabilities(self.project.predictions(handle.model_id), replace=True)
        known = self.list_model.probabilities
        todo = list(dict.fromkeys(r for r in self.list_model.visible_paths() + self.list_model.paths
                                  if r not in known))
        if todo and self.service is not None:
            self.service.predict(todo, handle)
        self._update_status()
        self._update_actions()
        if self.current is not None:
            self._show_current(self.current)

    def _predicted(self, model_id: str, probabilities: dict) -> None:
        if self.handle is None or model_id != self.handle.model_id or self.project is None:
            return
        try:
            for rel, p in probabilities.items():
                self.project.store_prediction(rel, model_id, p)
        except Exception as error:  # the list still shows them; only the project cache misses them
            self.show_status(f"Could not store predictions: {error}", 8000)
        self.list_model.set_probabilities(probabilities)
        if self.current in probabilities:
            self._update_info(self.current_analysis())
