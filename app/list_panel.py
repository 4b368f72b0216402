"""The left panel: sort and filter choices, a name filter, the image table and a line of counts."""

from __future__ import annotations

from pathlib import Path

from lrpseg.app.image_list import FILTERS, SORT_MODES, ImageListModel, ImageListView
from PySide6.QtCore import QItemSelectionModel, Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QLineEdit, QVBoxLayout, QWidget


class ListPanel(QWidget):
    """Owns the :class:`ImageListModel` and its view.

    Signals
    -------
    current_changed(rel)
        The user (or code) moved the current row to image ``rel``.
    """

    current_changed = Signal(object)  # not str: keeps the surrogate escapes of non-UTF-8 file names

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("ListPanel")
        self.model = ImageListModel(self)
        self.view = ImageListView()
        self.view.setModel(self.model)
        self.view.selectionModel().currentRowChanged.connect(self._row_changed)
        self.sort_combo = QComboBox()
        for key, text in SORT_MODES.items():
            self.sort_combo.addItem(text, key)
        self.sort_combo.setToolTip("Order of the list (applied when you change it, not while you label)")
        self.filter_combo = QComboBox()
        for key, text in FILTERS.items():
            self.filter_combo.addItem(text, key)
        self.filter_combo.setToolTip("Which images the list shows")
        self.search = QLineEdit()
        self.search.setPlaceholderText("Filter by name (Enter)…")
        self.search.setClearButtonEnabled(True)
        self.search.setToolTip("Show only images whose path contains this text (press Enter)")
        self.count_label = QLabel("")
        self.count_label.setObjectName("Muted")
        self.count_label.setToolTip("Images in the folder and your labels so far")
        self.sort_combo.currentIndexChanged.connect(self.apply_view)
        self.filter_combo.currentIndexChanged.connect(self.apply_view)
        self.search.returnPressed.connect(self.apply_view)
        self.search.textChanged.connect(lambda text: text or self.apply_view())

        box = QVBoxLayout(self)
        box.setContentsMargins(8, 8, 0, 8)
        row = QHBoxLayout()
        row.addWidget(self.sort_combo, 1)
        row.addWidget(self.filter_combo, 1)
        box.addLayout(row)
        box.addWidget(self.search)
        box.addWidget(self.view, 1)
        box.addWidget(self.count_label)

    def _row_changed(self, current, _previous) -> None:
        rel = self.model.rel_at(current.row()) if current.isValid() else None
        if rel is not None:
            self.current_changed.emit(rel)

    def current(self) -> str | None:
        """The image of the current row."""
        index = self.view.currentIndex()
        return self.model.rel_at(index.row()) if index.isValid() else None

    def set_images(self, root: Path | None, paths: list[str], labels: dict[str, str],
                   probabilities: dict[str, float] | None = None) -> None:
        """Show a new folder's images (thumbnails load lazily) and select the first row."""
        self.model.set_images(root, paths, labels, probabilities)
        self.apply_view()

    def apply_view(self, *_args) -> None:
        """Re-sort and re-filter; keep the current image selected when it is still shown."""
        current = self.current()
        self.model.apply_view(self.sort_combo.currentData(), self.filter_combo.currentData(),
                              self.search.text())
        row = self.model.row_of(current) if current else None
        if row is None and self.model.rowCount():
            row = 0
        if row is not None:
            self.view.setCurrentIndex(self.model.index(row, 0))
            self.view.scrollTo(self.model.index(row, 0))
        self.update_counts()

    def select(self, rel: str) -> bool:
        """Make ``rel`` the current row, clearing a filter or name search that hides it."""
        if self.model.row_of(rel) is None:
            self.search.blockSignals(True)
            self.search.clear()
            self.search.blockSignals(False)
            if self.filter_combo.currentIndex() != 0:
                self.filter_combo.setCurrentIndex(0)
            else:
                self.apply_view()
        row = self.model.row_of(rel)
        if row is None:
            return False
        self._go_to(row)
        return True

    def _go_to(self, row: int) -> None:
        # Select only this row: a plain setCurrentIndex adds to the selection while Ctrl is held (Ctrl+Z)
        index = self.model.index(row, 0)
        flags = QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows
        self.view.selectionModel().setCurrentIndex(index, flags)
        self.view.scrollTo(index)

    def step(self, delta: int) -> None:
        """Move the current row by ``delta`` (stops at either end)."""
        index = self.view.currentIndex()
        row = (index.row() if index.isValid() else -1) + delta
        if 0 <= row < self.model.rowCount():
            self._go_to(row)

    def step_to_unlabelled(self) -> bool:
        """Move to the next row below the current one whose image is unlabelled and readable; ``False`` (and
        no move) when there is none."""
        index = self.view.currentIndex()
        model = self.model
        for row in range((index.row() if index.isValid() else -1) + 1, model.rowCount()):
            rel = model.rel_at(row)
            if rel not in model.labels and rel not in model.errors:
                self._go_to(row)
                return True
        return False

    def update_counts(self) -> None:
        """Refresh the counts line under the table."""
        c = self.model.counts()
        shown = f"{c['shown']} of {c['total']}" if c["shown"] != c["total"] else f"{c['total']}"
        self.count_label.setText(f"{shown} images · {c['damaged']} damaged · {c['undamaged']} undamaged · "
                                 f"{c['unlabelled']} unlabelled")
