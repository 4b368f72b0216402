"""A guard against the reference-count bugs of PySide6 6.12.0 (the version in our venv).

Measured here with PySide6-Essentials 6.12.0 on CPython 3.11 (6.11.3 does not have them):

- every ``SignalInstance.emit()`` called from Python takes one reference from ``True`` (its return value);
- every Python override of a ``void`` C++ virtual (``paintEvent``, pyqtgraph's ``paint``...) and every
  ``None`` returned from ``QAbstractItemModel.data`` takes one reference from ``None``.

CPython 3.11 frees an object whose count reaches zero, and freeing ``None`` or ``True`` aborts the process
("Fatal Python error: none_dealloc" / "bool_dealloc"), so an lrpseg window died after some thousands of paints
or signals. Python 3.12+ makes these objects immortal; on 3.11 the fix is another PySide6 version. Until then
:func:`install_refcount_guard` measures the leaks once and, only if they are there, tops the two counts up on a
timer so they never run out. Extra references on ``None`` and ``True`` cost nothing: they are never freed.
"""

from __future__ import annotations

import ctypes
import sys

from PySide6.QtCore import QCoreApplication, QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import QWidget

CHECK_INTERVAL_MS = 50
FLOOR = 1 << 24
TOP_UP = 1 << 26

_guard: RefcountGuard | None = None


class _Probe(QWidget):
    ping = Signal()

    def paintEvent(self, event) -> None:  # noqa: N802 - a void virtual, as every paint override
        pass


def measure_leaks(rounds: int = 64) -> dict[str, int]:
    """References lost from ``None`` and ``True`` over ``rounds`` repaints of a Python ``paintEvent`` and
    ``rounds`` signal emissions (needs a QApplication)."""
    probe = _Probe()
    probe.setAttribute(Qt.WidgetAttribute.WA_DontShowOnScreen)
    probe.resize(4, 4)
    probe.show()
    QCoreApplication.processEvents()
    none_before = sys.getrefcount(None)
    for _ in range(rounds):
        probe.repaint()
    none_lost = none_before - sys.getrefcount(None)
    true_before = sys.getrefcount(True)
    for _ in range(rounds):
        probe.ping.emit()
    true_lost = true_before - sys.getrefcount(True)
    probe.hide()
    probe.deleteLater()
    # A leak loses one reference per call; a fixed binding may gain or lose a few while warming up.
    return {"None": int(none_lost >= rounds // 2), "True": int(true_lost >= rounds // 2)}


def _add_references(obj: object, count: int) -> None:
    # CPython keeps the reference count in the first word of every object; we hold the GIL here, as every
    # other writer of that word does.
    ctypes.c_ssize_t.from_address(id(obj)).value += count


class RefcountGuard(QObject):
    """Keeps the reference counts of ``None`` and ``True`` far above zero while the app runs."""

    def __init__(self, objects: tuple[object, ...], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.objects = objects
        self.top_ups = 0
        self.check()
        self._timer = QTimer(self)
        self._timer.setInterval(CHECK_INTERVAL_MS)
        self._timer.timeout.connect(self.check)
        self._timer.start()

    def check(self) -> None:
        """Top a count up when it fell below :data:`FLOOR`."""
        for obj in self.objects:
            count = sys.getrefcount(obj)
            if count < FLOOR:
                _add_references(obj, TOP_UP - count)
                self.top_ups += 1


def install_refcount_guard() -> RefcountGuard | None:
    """Start the guard once per process if this PySide6 leaks references (needs a QApplication)."""
    global _guard
    if _guard is not None or sys.implementation.name != "cpython" or sys.version_info >= (3, 12):
        return _guard
    app = QCoreApplication.instance()
    if app is None:
        raise RuntimeError("install_refcount_guard needs a QApplication")
    leaks = measure_leaks()
    objects = tuple(obj for name, obj in (("None", None), ("True", True)) if leaks[name] > 0)
    if objects:
        _guard = RefcountGuard(objects, app)
    return _guard
