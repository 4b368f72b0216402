"""The export dialog: one step to export masks into a new or existing folder.

Qt's folder picker cannot choose a folder that does not exist yet (its Choose button stays grey and a typed
new path gives "Directory not found"), so the dialog shows the destination as an editable path, prefilled with a
folder beside the images, and creates whatever folder is typed there on Export. Browse… opens the picker for
an existing folder.
"""

from __future__ import annotations

from pathlib import Path

from lrpseg.core.export_run import export_folder_problem
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)


def prepare_export_folder(text: str, root: Path) -> tuple[Path | None, str]:
    """Make the folder named by ``text`` (relative paths are relative to the image folder's parent).

    Returns
    -------
    (folder, "") when it exists or was created; (None, reason) when the path is empty, is a file or cannot be
    created.
    """
    text = text.strip()
    if not text:
        return None, "Type the folder to export to."
    folder = Path(text).expanduser()
    if not folder.is_absolute():
        folder = root.parent / folder
    if folder.exists() and not folder.is_dir():
        return None, f"{folder} is a file, not a folder."
    if problem := export_folder_problem(folder, root):
        return None, f"{problem}."
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        return None, f"Cannot create {folder}: {error.strerror or error}."
    return folder, ""


class ExportDialog(QDialog):
    """Destination folder, overwrite choice and what is exported; :attr:`folder` is set when accepted.

    Parameters
    ----------
    root
        The open image folder.
    count
        How many images will be exported (for the title line).
    suggested
        The folder to offer: the previous export's, else ``session.suggested_export_folder`` (beside the images).
    """

    def __init__(self, root: Path, count: int, suggested: Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export masks")
        self.root = root
        self.folder: Path | None = None
        intro = QLabel(f"Write a mask for each of the {count} images: a black-and-white PNG with the image's "
                       "name, in the same sub-folder as the image (white = damage), plus the score maps and a "
                       "report. A new folder is created.")
        intro.setWordWrap(True)
        self.path = QLineEdit(str(suggested))
        self.path.setToolTip("Folder for the masks; it is created if it does not exist")
        self.path.setMinimumWidth(420)
        browse = QPushButton("Browse…")
        browse.setToolTip("Pick an existing folder")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.path, 1)
        row.addWidget(browse)
        self.overwrite = QCheckBox("Replace masks already in that folder")
        self.overwrite.setToolTip("Off: files already there are kept and reported; on: they are replaced")
        self.problem = QLabel("")
        self.problem.setObjectName("Problem")
        self.problem.setWordWrap(True)
        self.problem.hide()
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.export_button = buttons.addButton("Export", QDialogButtonBox.ButtonRole.AcceptRole)
        self.export_button.setDefault(True)
        self.export_button.setToolTip("Create the folder if needed and export in the background")
        buttons.button(QDialogButtonBox.StandardButton.Cancel).setToolTip("Close without exporting")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(QLabel("Export to folder"))
        layout.addLayout(row)
        layout.addWidget(self.overwrite)
        layout.addWidget(self.problem)
        layout.addWidget(buttons)

    def _browse(self) -> None:
        start = Path(self.path.text()).expanduser()
        while not start.is_dir() and start != start.parent:
            start = start.parent
        chosen = QFileDialog.getExistingDirectory(self, "Export masks to", str(start))
        if chosen:
            self.path.setText(chosen)

    def accept(self) -> None:
        """Create the folder (or say why not) and close."""
        folder, problem = prepare_export_folder(self.path.text(), self.root)
        if folder is None:
            self.problem.setText(problem)
            self.problem.show()
            return
        self.folder = folder
        super().accept()
