"""The window's label writes, off the GUI thread: a :class:`~lrpseg.core.label_queue.LabelQueue` with Qt delivery.

A label click returns at once; the fsync'ed commit (hundreds of milliseconds on a network share, see
``benchmarks/label_commit.py``) runs on the queue's writer thread. Finished writes come back to the GUI thread
as :attr:`LabelSaver.written`. Closing the window or switching folders calls :meth:`LabelSaver.flush` or
:meth:`LabelSaver.close`, which wait until every label is on disk, with "Saving labels…" in the status bar and
a busy cursor when that takes longer than a blink, and deliver the writes that finished meanwhile before they
return, so errors are shown while the project is still open.
"""

from __future__ import annotations

import collections
from collections.abc import Callable

from lrpseg.core.label_queue import LabelQueue, LabelWrite
from lrpseg.core.project import Project
from PySide6.QtCore import QEventLoop, QObject, Qt, Signal
from PySide6.QtWidgets import QApplication

__all__ = ["SAVING_MESSAGE", "LabelSaver"]

SAVING_MESSAGE = "Saving labels…"
#: Waits shorter than this show nothing.
QUIET_WAIT_S = 0.1


class LabelSaver(QObject):
    """Label writes of one open project.

    Parameters
    ----------
    project : Project
        The open project.
    status : callable
        Shows a status-bar message (used for "Saving labels…").
    """

    written = Signal(object)  # LabelWrite, on the GUI thread, once per finished write, in order
    _arrived = Signal()

    def __init__(self, project: Project, status: Callable[[str], None], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._status = status
        self._finished: collections.deque[LabelWrite] = collections.deque()
        self._failures = 0
        # Queued: emitted on the writer thread, delivered on this object's (the GUI) thread.
        self._arrived.connect(self._deliver, Qt.ConnectionType.QueuedConnection)
        self.queue = LabelQueue(project, self._on_done)

    def _on_done(self, write: LabelWrite) -> None:  # writer thread
        self._finished.append(write)
        self._arrived.emit()

    def _deliver(self) -> None:
        while self._finished:
            write = self._finished.popleft()
            self._failures += write.error is not None
            self.written.emit(write)

    def _wait(self, finish: Callable[[], object]) -> int:
        failures = self._failures
        if self.queue.wait(QUIET_WAIT_S):
            finish()
        else:
            self._status(SAVING_MESSAGE)
            QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
            # paint the message before blocking, without acting on clicks and keys in the middle of a close
            QApplication.processEvents(QEventLoop.ProcessEventsFlag.ExcludeUserInputEvents)
            try:
                finish()
            finally:
                QApplication.restoreOverrideCursor()
        self._deliver()
        return self._failures - failures

    def flush(self) -> int:
        """Wait until every queued label is on disk and deliver the writes not yet delivered; returns how many
        of those failed (each was delivered through :attr:`written`, with its error)."""
        return self._wait(self.queue.wait)

    def close(self) -> int:
        """:meth:`flush`, then stop the writer; later label changes raise (the project is being closed)."""
        return self._wait(self.queue.close)
