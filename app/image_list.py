"""The image list: a table model over the project's images with lazy thumbnails, sorting and filtering.

Opening a folder of 10,000 images must take well under two seconds, so the model keeps only what a row needs
(relative path, label, probability, read error) in plain Python containers, rows have one fixed height (the
view never asks every row for its size), and thumbnails are decoded on demand by a small thread pool into a
bounded LRU cache: memory does not grow with the folder beyond the list itself. Sorting and filtering rebuild
an index list in Python (a few milliseconds for 10,000 rows) only when the user asks for it, so labelling an
image in "unlabelled first" order does not make rows jump under the cursor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from lrpseg.app.thumbnails import THUMB_SIZE, ThumbnailLoader
from lrpseg.app.workers import display_text
from lrpseg.core.labels import DAMAGED, UNDAMAGED, predicted_label
from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QObject,
    QSize,
    Qt,
)
from PySide6.QtGui import QColor, QFont
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableView

ROW_HEIGHT = THUMB_SIZE + 8

SORT_MODES = {
    "folder": "Folder order",
    "unlabelled": "Unlabelled first",
    "uncertain": "Most uncertain first",
    "disagree": "Label ≠ prediction first",
}
FILTERS = {
    "all": "All images",
    "unlabelled": "Unlabelled",
    "damaged": "Labelled damaged",
    "undamaged": "Labelled undamaged",
    "disagree": "Label ≠ prediction",
    "unreadable": "Unreadable",
    "corrected": "Corrected masks",
}
CORRECTED_MARK = "  ✎"
COLUMNS = ("Image", "Label", "Prediction")
COLUMN_TIPS = (
    "File name",
    "Your label (D / U / Backspace)",
    "The model's decision and its confidence max(P, 1 − P); ≠ where it disagrees with your label",
)
# The widest texts of the label and prediction columns: the columns are sized to show them whole.
LABEL_TEXTS = ("Label", UNDAMAGED)
PREDICTION_TEXTS = ("Prediction", f"≠ {UNDAMAGED} 100%", f"≠ {DAMAGED} 100%", "unreadable")
CELL_PADDING = 16
LABEL_COLOURS = {DAMAGED: QColor("#ff7b72"), UNDAMAGED: QColor("#7ee787"), None: QColor("#8b949e")}


class ImageListModel(QAbstractTableModel):
    """Rows = images of a project; columns = thumbnail + name, label, prediction, confidence.

    ``order`` maps view rows to positions in ``paths``; :meth:`apply_view` rebuilds it for a sort mode,
    filter and name search.
    """

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.paths: list[str] = []
        self._position: dict[str, int] = {}
        self.labels: dict[str, str] = {}
        self.probabilities: dict[str, float] = {}
        self.in_sample: frozenset[str] = frozenset()
        self.errors: dict[str, str] = {}
        self.corrected: set[str] = set()
        self.order: list[int] = []
        self._row_of: dict[int, int] = {}
        self.thumbnails: ThumbnailLoader | None = None
        self.sort_mode = "folder"
        self.filter_mode = "all"
        self.search = ""

    # ----------------------------------------------------------------- content
    def set_images(
        self,
        root: Path | None,
        paths: list[str],
        labels: dict[str, str],
        probabilities: dict[str, float] | None = None,
    ) -> None:
        """Replace the whole list (a new folder); thumbnails load lazily from ``root``."""
        self.beginResetModel()
        if self.thumbnails is not None:
            self.thumbnails.shutdown()
            self.thumbnails.deleteLater()
            self.thumbnails = None
        self.paths = list(paths)
        self._position = {rel: i for i, rel in enumerate(self.paths)}
        self.labels = dict(labels)
        self.probabilities = dict(probabilities or {})
        self.errors = {}
        self.corrected = set()
        if root is not None:
            self.thumbnails = ThumbnailLoader(root, parent=self)
            self.thumbnails.loaded.connect(self._thumbnail_ready)
            self.thumbnails.failed.connect(self.set_error)
        self._rebuild_order()
        self.endResetModel()

    def shutdown(self) -> None:
        """Stop thumbnail loading (window closing)."""
        if self.thumbnails is not None:
            self.thumbnails.shutdown()

    def _rebuild_order(self) -> None:
        self.order = self._compute_order()
        self._row_of = {pos: row for row, pos in enumerate(self.order)}

    def _compute_order(self) -> list[int]:
        keep = self._filter_predicate()
        needle = self.search.lower()
        rows = [i for i, rel in enumerate(self.paths) if keep(rel) and (not needle or needle in rel.lower())]
        key = self._sort_key()
        if key is not None:
            rows.sort(key=lambda i: key(self.paths[i]))  # stable: folder order breaks ties
        return rows

    def _predicted_label(self, rel: str) -> str | None:
        p = self.probabilities.get(rel)
        if p is None:
            return None
        return predicted_label(p)

    def disagrees(self, rel: str) -> bool:
        """Whether ``rel`` has a label and a prediction that differ."""
        label, predicted = self.labels.get(rel), self._predicted_label(rel)
        return label is not None and predicted is not None and label != predicted

    def _filter_predicate(self) -> Callable[[str], bool]:
        mode = self.filter_mode
        if mode == "unlabelled":
            return lambda rel: rel not in self.labels
        if mode == "damaged":
            return lambda rel: self.labels.get(rel) == DAMAGED
        if mode == "undamaged":
            return lambda rel: self.labels.get(rel) == UNDAMAGED
        if mode == "disagree":
            return self.disagrees
        if mode == "unreadable":
            return lambda rel: rel in self.errors
        if mode == "corrected":
            return lambda rel: rel in self.corrected
        return lambda rel: True

    def _sort_key(self) -> Callable[[str], object] | None:
        mode = self.sort_mode
        if mode == "unlabelled":
            return lambda rel: rel in self.labels
        if mode == "uncertain":
            return lambda rel: abs(self.probabilities[rel] - 0.5) if rel in self.probabilities else 1.0
        if mode == "disagree":
            return lambda rel: not self.disagrees(rel)
        return None

    def apply_view(
        self, sort_mode: str | None = None, filter_mode: str | None = None, search: str | None = None
    ) -> None:
        """Re-sort and re-filter (only on request, so rows never jump while the user labels)."""
        if sort_mode is not None:
            if sort_mode not in SORT_MODES:
                raise ValueError(f"unknown sort mode {sort_mode!r}")
            self.sort_mode = sort_mode
        if filter_mode is not None:
            if filter_mode not in FILTERS:
                raise ValueError(f"unknown filter {filter_mode!r}")
            self.filter_mode = filter_mode
        if search is not None:
            self.search = search.strip()
        self.layoutAboutToBeChanged.emit()
        old_order = self.order
        persistent = self.persistentIndexList()
        self._rebuild_order()
        new_indexes = []
        for index in persistent:
            row = self._row_of.get(old_order[index.row()]) if index.row() < len(old_order) else None
            new_indexes.append(self.index(row, index.column()) if row is not None else QModelIndex())
        self.changePersistentIndexList(persistent, new_indexes)
        self.layoutChanged.emit()

    # ----------------------------------------------------------------- updates
    def set_label(self, rel: str, label: str | None) -> None:
        """Show ``rel``'s new label (the project already stored it)."""
        if label is None:
            self.labels.pop(rel, None)
        else:
            self.labels[rel] = label
        self._row_changed(rel)

    def set_probabilities(self, probabilities: dict[str, float], replace: bool = False) -> None:
        """Merge (or replace) predictions and repaint the affected rows."""
        if replace:
            self.probabilities = dict(probabilities)
            if self.order:
                self.dataChanged.emit(self.index(0, 2), self.index(len(self.order) - 1, 2))
            return
        self.probabilities.update(probabilities)
        for rel in probabilities:
            self._row_changed(rel, first=2)

    def set_in_sample(self, rels) -> None:
        """Mark the predictions on these images (the model's training images) as in-sample."""
        self.in_sample = frozenset(rels)
        if self.order:
            self.dataChanged.emit(self.index(0, 2), self.index(len(self.order) - 1, 2))

    def set_corrected(self, rel: str, corrected: bool) -> None:
        """Mark ``rel`` as having (or no longer having) a hand-corrected mask."""
        if corrected:
            self.corrected.add(rel)
        else:
            self.corrected.discard(rel)
        self._row_changed(rel)

    def set_all_corrected(self, rels: Iterable[str]) -> None:
        """Replace the set of images with a corrected mask (a folder opened) and repaint the names."""
        self.corrected = set(rels)
        if self.order:
            self.dataChanged.emit(self.index(0, 0), self.index(len(self.order) - 1, 0))

    def set_error(self, rel: str, message: str) -> None:
        """Mark ``rel`` as unreadable with the reader's message."""
        self.errors[rel] = message
        self._row_changed(rel)

    def _row_changed(self, rel: str, first: int = 0) -> None:
        row = self.row_of(rel)
        if row is not None:
            self.dataChanged.emit(self.index(row, first), self.index(row, len(COLUMNS) - 1))

    def _thumbnail_ready(self, rel: str) -> None:
        if self.errors.pop(rel, None) is not None:  # unreadable before, fixed since (the loader retried)
            self._row_changed(rel)
            return
        row = self.row_of(rel)
        if row is not None:
            index = self.index(row, 0)
            self.dataChanged.emit(index, index, [Qt.ItemDataRole.DecorationRole])

    # ----------------------------------------------------------------- lookup
    def row_of(self, rel: str) -> int | None:
        """The view row showing ``rel`` (``None`` when filtered out)."""
        pos = self._position.get(rel)
        return None if pos is None else self._row_of.get(pos)

    def rel_at(self, row: int) -> str | None:
        """Relative path shown in view row ``row``."""
        if 0 <= row < len(self.order):
            return self.paths[self.order[row]]
        return None

    def visible_paths(self) -> list[str]:
        """Relative paths in view order."""
        return [self.paths[i] for i in self.order]

    def counts(self) -> dict[str, int]:
        """Numbers for the list header: total, shown, damaged, undamaged, unlabelled."""
        damaged = sum(1 for v in self.labels.values() if v == DAMAGED)
        undamaged = sum(1 for v in self.labels.values() if v == UNDAMAGED)
        return {
            "total": len(self.paths),
            "shown": len(self.order),
            "damaged": damaged,
            "undamaged": undamaged,
            "unlabelled": len(self.paths) - damaged - undamaged,
        }

    # ----------------------------------------------------------------- Qt model API
    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008 - Qt signature
        return 0 if parent.isValid() else len(self.order)

    def columnCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008 - Qt signature
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole):
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.ToolTipRole:
            return COLUMN_TIPS[section]
        return None

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        rel = self.paths[self.order[index.row()]]
        column = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self._display(rel, column)
        if role == Qt.ItemDataRole.DecorationRole and column == 0:
            return self.thumbnails.get(rel) if self.thumbnails is not None else None
        if role == Qt.ItemDataRole.ToolTipRole:
            if column == 2 and rel in self.in_sample and rel in self.probabilities:
                return "In-sample: the model was trained on this image, so this prediction says little"
            tip = display_text(self.errors.get(rel, rel))
            return f"{tip}\nmask corrected by hand" if rel in self.corrected else tip
        if role == Qt.ItemDataRole.FontRole and column == 2 and rel in self.in_sample:
            font = QFont()
            font.setItalic(True)
            return font
        if role == Qt.ItemDataRole.ForegroundRole:
            if column == 1:
                return LABEL_COLOURS[self.labels.get(rel)]
            if column == 2:
                if rel in self.errors:
                    return LABEL_COLOURS[DAMAGED]
                return LABEL_COLOURS[self._predicted_label(rel)]
        if role == Qt.ItemDataRole.UserRole:
            return rel
        return None

    def _display(self, rel: str, column: int) -> str:
        if column == 0:
            return display_text(Path(rel).name) + (CORRECTED_MARK if rel in self.corrected else "")
        if column == 1:
            return self.labels.get(rel, "—")
        if column == 2:
            if rel in self.errors:
                return "unreadable"
            predicted = self._predicted_label(rel)
            if predicted is None:
                return "—"
            p = self.probabilities[rel]
            return f"{'≠ ' if self.disagrees(rel) else ''}{predicted} {100 * max(p, 1 - p):.0f}%"
        return ""


class ImageListView(QTableView):
    """A table with one fixed row height and fixed column widths (no per-row size queries)."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setIconSize(QSize(THUMB_SIZE, THUMB_SIZE))
        self.setShowGrid(False)
        self.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.setWordWrap(False)
        self.setAlternatingRowColors(True)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.setTabKeyNavigation(False)
        vertical = self.verticalHeader()
        vertical.setVisible(False)
        vertical.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        vertical.setDefaultSectionSize(ROW_HEIGHT)
        vertical.setMinimumSectionSize(ROW_HEIGHT)
        header = self.horizontalHeader()
        header.setHighlightSections(False)
        header.setStretchLastSection(False)
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)

    def setModel(self, model) -> None:  # noqa: N802 - Qt override
        super().setModel(model)
        header = self.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        metrics = self.fontMetrics()
        for column, texts in ((1, LABEL_TEXTS), (2, PREDICTION_TEXTS)):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.Fixed)
            header.resizeSection(column, max(map(metrics.horizontalAdvance, texts)) + CELL_PADDING)

    def keyboardSearch(self, search: str) -> None:  # noqa: N802 - letters are labelling keys, not a search
        return

    def selected_paths(self) -> list[str]:
        """Relative paths of the selected rows, in view order."""
        model = self.model()
        rows = sorted({index.row() for index in self.selectionModel().selectedRows()})
        return [rel for rel in (model.rel_at(r) for r in rows) if rel is not None]


def iter_rows(model: ImageListModel, start: int, count: int) -> Iterable[str]:
    """The relative paths of up to ``count`` view rows from ``start`` (look-ahead order)."""
    for row in range(start, min(start + count, model.rowCount())):
        rel = model.rel_at(row)
        if rel is not None:
            yield rel
