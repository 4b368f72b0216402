"""Training settings: the few :class:`core.train.TrainConfig` fields an inspector may want to change.

The values are stored in the project setting ``train_config`` (a dict), which the Train action reads; fields
not shown keep their defaults. Smaller widths and inputs train much faster on a CPU.
"""

from __future__ import annotations

from dataclasses import asdict

from lrpseg.core.models import HEADS
from lrpseg.core.train import TrainConfig
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

FIELDS = ("head", "width", "input_size", "epochs", "batch_size", "patience", "seed")


class TrainSettingsDialog(QDialog):
    """Edit the project's ``train_config``; :meth:`values` gives the dict to store."""

    def __init__(self, stored: dict | None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Training settings")
        config = asdict(TrainConfig())
        config.update({k: v for k, v in (stored or {}).items() if k in config})
        self.head = QComboBox()
        self.head.addItems(list(HEADS))
        self.head.setCurrentText(str(config["head"]))
        self.head.setToolTip("128n: FC 128 → FC 128 → 2; onefc: one linear layer (paper §3.2.1)")
        self.width = self._double(config["width"], 0.0625, 1.0, 0.0625, "Channel multiplier (1 = the paper's)")
        self.input_size = self._int(config["input_size"], 32, 1024, 32, "Side of the square network input")
        self.epochs = self._int(config["epochs"], 1, 1000, 1, "Upper limit; early stopping may end sooner, and a "
                                f"model still below validation balanced accuracy {config['good_enough']:g} at the last "
                                "epoch trains on, for up to twice as many")
        self.batch_size = self._int(config["batch_size"], 1, 512, 1, "Images per step")
        self.patience = self._int(config["patience"], 1, 1000, 1, "Epochs without a better validation score")
        self.seed = self._int(config["seed"], 0, 2**31 - 1, 1, "Seed of the split, the crops and the init")
        form = QFormLayout()
        for label, widget in (("Head", self.head), ("Width", self.width), ("Input size", self.input_size),
                              ("Epochs", self.epochs), ("Batch size", self.batch_size),
                              ("Patience", self.patience), ("Seed", self.seed)):
            form.addRow(label, widget)
        note = QLabel(
            "A new folder starts with what trains in minutes on this machine: on a CPU width 0.25 and an input "
            "of the images' typical size (at most 224); on a GPU the paper's width 1.0 and input 224. An input "
            "smaller than the images sees only their centre, so damage near the border is missed."
        )
        note.setObjectName("Muted")
        note.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
                                   | QDialogButtonBox.StandardButton.RestoreDefaults)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        buttons.button(QDialogButtonBox.StandardButton.RestoreDefaults).clicked.connect(self.restore_defaults)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(note)
        layout.addWidget(buttons)

    @staticmethod
    def _int(value: int, low: int, high: int, step: int, tip: str) -> QSpinBox:
        box = QSpinBox()
        box.setRange(low, high)
        box.setSingleStep(step)
        box.setValue(int(value))
        box.setToolTip(tip)
        return box

    @staticmethod
    def _double(value: float, low: float, high: float, step: float, tip: str) -> QDoubleSpinBox:
        box = QDoubleSpinBox()
        box.setRange(low, high)
        box.setSingleStep(step)
        box.setDecimals(4)
        box.setValue(float(value))
        box.setToolTip(tip)
        return box

    def restore_defaults(self) -> None:
        """Show :class:`TrainConfig`'s defaults."""
        defaults = TrainConfig()
        self.head.setCurrentText(defaults.head)
        for name in FIELDS[1:]:
            getattr(self, name).setValue(getattr(defaults, name))

    def values(self) -> dict:
        """The settings as a ``train_config`` dict."""
        out = {"head": self.head.currentText(), "width": self.width.value()}
        out.update({name: getattr(self, name).value() for name in FIELDS[2:]})
        return out
